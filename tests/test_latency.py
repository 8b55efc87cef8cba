"""Latency: export parity, measuring protocol, resumable profiling, predictors."""

from __future__ import annotations

import json
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from devices import Device, load_profile
from latency.dataset import drift_corrected_ms, fit_drift_elasticity, read_records
from latency.predictor import LatencyPredictor, PredictorError, accuracy, split_by_arch
from latency.protocol import measure, relative_iqr, robust_statistic, trimmed_mean
from mos_search.cli import main
from mos_search.costs.profiling import ArchModels, run_profile, sample_archs
from mos_search.models.onnx import EncoderGraph, export_onnx
from mos_search.space import load_space

from conftest import TINY_SPACE


def test_export_parity_with_pytorch(tmp_path):
    space = load_space("cpu-small")
    model = ArchModels(space, vocab_size=300).model(space.sample(random.Random(2)))
    enc_path, dec_path = export_onnx(model, tmp_path)
    onnx.checker.check_model(str(enc_path))
    onnx.checker.check_model(str(dec_path))
    encoder = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    src = torch.randint(4, 300, (3, 11))
    src[1, 6:] = 0  # padded row
    got = encoder.run(None, {"src_tokens": src.numpy()})
    with torch.no_grad():
        want = EncoderGraph(model)(src)
    assert len(got) == len(want) == 1 + 2 * model.arch.decoder_layers
    assert np.array_equal(got[0], want[0].numpy())
    assert max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got[1:], want[1:])) < 1e-4


def test_export_leaves_model_in_eval_mode(tmp_path):
    space = load_space(TINY_SPACE)
    model = ArchModels(space, vocab_size=40).model(space.smallest())
    export_onnx(model, tmp_path)
    assert not model.training and not any(m.training for m in model.modules())


def test_statistics():
    samples = [1.0, 2.0, 3.0, 4.0, 100.0]
    assert robust_statistic(samples, "median") == 3.0
    assert trimmed_mean(samples * 2, 0.1) == pytest.approx(sum(sorted(samples * 2)[1:9]) / 8)
    assert relative_iqr([1.0, 1.0, 1.0, 1.0]) == 0.0


def test_unknown_statistic_is_refused():
    samples = [1.0, 2.0, 3.0, 4.0, 100.0]
    assert robust_statistic(samples, "trimmed_mean", 0.2) == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"statistic: expected one of median, trimmed_mean"):
        robust_statistic(samples, "mean")


class FakeDevice(Device):
    """Returns scripted times: checks the protocol without a clock."""

    name = "fake"

    def __init__(self, profile, times):
        super().__init__(profile)
        self.times = list(times)

    def time(self, work):
        work()
        return self.times.pop(0)

    put = fetch = zeros = argmax = repeat_batch = _load_graph = _run = None


def test_noisy_measurement_is_retried_then_flagged():
    profile = load_profile("onnxruntime-cpu").__class__(
        name="t", backend="fake", warmups=0, repeats=4, retries=1, max_spread=0.1
    )
    steady = FakeDevice(profile, [1.0, 1.0, 1.01, 0.99])
    result = measure(steady, lambda: None, profile)
    assert (result.attempts, result.flagged, result.seconds) == (1, False, 1.0)
    noisy = FakeDevice(profile, [1.0, 2.0, 3.0, 4.0] * 2)
    result = measure(noisy, lambda: None, profile)
    assert (result.attempts, result.flagged) == (2, True)
    ref = FakeDevice(profile, [0.5] * 4)
    result = measure(FakeDevice(profile, [1.0] * 4), lambda: None, profile, (ref, lambda: None))
    assert result.reference_seconds == 0.5


def test_drift_correction_divides_out_the_reference():
    records = [
        {"latency_ms": 10.0, "reference_ms": 1.0},
        {"latency_ms": 20.0, "reference_ms": 2.0},
        {"latency_ms": 15.0, "reference_ms": 1.5},
    ]
    assert drift_corrected_ms(records) == pytest.approx([15.0, 15.0, 15.0])
    half = drift_corrected_ms(records, elasticity=0.5, typical_ms=1.0)
    assert half == pytest.approx([10.0, 20.0 / 2**0.5, 15.0 / 1.5**0.5])


def test_drift_elasticity_is_recovered_from_a_dataset():
    rng = np.random.default_rng(0)
    records = []
    for _ in range(200):
        features = rng.uniform(0.3, 1.0, size=3)
        reference = rng.uniform(20, 45)
        base = 5.0 + 30 * features[0] + 10 * features[1] * features[2]
        records.append(
            {
                "features": features.tolist(),
                "reference_ms": reference,
                "latency_ms": base * reference**0.6 * rng.lognormal(0, 0.01),
            }
        )
    assert fit_drift_elasticity(records) == pytest.approx(0.6, abs=0.05)
    assert fit_drift_elasticity(records[:5]) == 1.0  # too few to fit: proportional


def test_profile_appends_and_resumes(tmp_path):
    dataset = tmp_path / "lat.jsonl"
    fast = tmp_path / "fast.toml"
    fast.write_text(
        'backend = "onnxruntime-cpu"\nwarmups = 0\nrepeats = 3\ndecoder_steps = 3\nretries = 0\n'
    )
    first = run_profile(
        str(fast), TINY_SPACE, 3, vocab_size=40, dataset=str(dataset), progress=False
    )
    assert (first.measured, first.skipped) == (3, 0)
    again = run_profile(
        str(fast), TINY_SPACE, 5, vocab_size=40, dataset=str(dataset), progress=False
    )
    assert (again.measured, again.skipped) == (2, 3)
    records = read_records(dataset)
    assert len(records) == 5 and len({json.dumps(r["arch"], sort_keys=True) for r in records}) == 5
    first_record = records[0]
    space = load_space(TINY_SPACE)
    assert first_record["arch"] == space.largest().to_dict()
    assert first_record["reference_ms"] > 0 and first_record["latency_ms"] > 0
    from mos_search.models.transformer import parameter_bytes

    assert first_record["param_bytes_fp32"] == parameter_bytes(space.largest(), 40, space.qkv_dim)
    assert first_record["env"]["cores"] >= 1 and "onnxruntime" in first_record["env"]["versions"]
    with dataset.open("a") as f:
        f.write('{"cut short')  # a crash mid-line loses only that record
    assert len(read_records(dataset)) == 5


def test_sample_archs_distinct_with_extremes():
    space = load_space("cpu-small")
    archs = sample_archs(space, 50, seed=1)
    assert archs[:2] == [space.largest(), space.smallest()] and len(set(archs)) == 50


def synthetic_latency(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.3, 1.0, size=(n, 10))
    return x, 20 + 100 * x[:, 5] * x[:, 6] + 30 * x[:, 4]


def test_predictor_fits_saves_and_refuses_other_schemas(tmp_path):
    x, y = synthetic_latency(300)
    train, test = split_by_arch(300, 0.2, 0)
    names = list(load_space("cpu-small").feature_names)
    predictor = LatencyPredictor.fit(
        x[train], y[train], names, hidden=(64, 64), meta={"space": "cpu-small"}
    )
    acc = accuracy(predictor.predict_ms(x[test]), y[test])
    assert acc.mape < 5 and acc.kendall_tau > 0.9
    path = tmp_path / "p.json"
    predictor.save(path)
    loaded = LatencyPredictor.load(path, names, "cpu-small")
    assert np.allclose(loaded.predict_ms(x[test]), predictor.predict_ms(x[test]))
    with pytest.raises(PredictorError, match="trained for space 'cpu-small', not 'hat-wmt14'"):
        LatencyPredictor.load(path, names, "hat-wmt14")
    with pytest.raises(PredictorError, match="trained on features"):
        LatencyPredictor.load(path, [*names[:-1], "other"], "cpu-small")
    with pytest.raises(PredictorError, match="expects 10 features"):
        loaded.predict_ms(np.zeros((1, 9)))
    assert b"pickle" not in path.read_bytes()


def test_split_is_by_arch_and_disjoint():
    train, test = split_by_arch(100, 0.2, 3)
    assert len(test) == 20 and not set(train) & set(test) and len(set(train) | set(test)) == 100


def test_cli_profile_and_predictor(tmp_path):
    fast = tmp_path / "fast.toml"
    fast.write_text(
        'backend = "onnxruntime-cpu"\nwarmups = 0\nrepeats = 2\ndecoder_steps = 2\nretries = 0\n'
    )
    dataset = tmp_path / "lat.jsonl"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "profile",
            "--device",
            str(fast),
            "--space",
            TINY_SPACE,
            "-n",
            "12",
            "--vocab-size",
            "40",
            "--out",
            str(dataset),
            "--no-reference",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "measured 12, already there 0" in result.output
    result = runner.invoke(
        main,
        ["predictor", "train", "--dataset", str(dataset), "--space", TINY_SPACE, "--hidden", "16"],
    )
    assert result.exit_code == 0, result.output
    assert "test" in result.output and (tmp_path / "predictor.json").is_file()
    result = runner.invoke(
        main,
        [
            "predictor",
            "eval",
            "--predictor",
            str(tmp_path / "predictor.json"),
            "--dataset",
            str(dataset),
            "--space",
            "cpu-small",
        ],
    )
    assert result.exit_code == 2 and "trained for space 'tiny', not 'cpu-small'" in result.output
