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
from latency.accuracy import accuracy
from latency.dataset import drift_corrected_ms, fit_drift_elasticity, read_records
from latency.predictor import LatencyPredictor, PredictorError, split_by_arch
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


# ------------------------------------------------------------------ drift correction in training


def drifting_dataset(path, n: int, elasticity: float, seed: int = 0) -> list[dict]:
    """`n` features-only records of the tiny space (10 features) measured on a drifting machine:
    latency = base(features) * (reference / 30) ** elasticity, the reference time drawn
    independently of the architecture; log(base) is linear in the features, so the linear and
    the quadratic model of the fit both hold it exactly. Returns the records, each with its
    `base` (which the file leaves out)."""
    rng = np.random.default_rng(seed)
    records = []
    with path.open("w") as out:
        for _ in range(n):
            features = rng.uniform(0.3, 1.0, size=10)
            base = 10.0 * float(np.exp(1.0 + 0.8 * features[0] + 0.5 * features[3]))
            reference = float(rng.uniform(20, 45))
            record = {
                "features": features.tolist(),
                "reference_ms": reference,
                "latency_ms": base * (reference / 30.0) ** elasticity,
            }
            out.write(json.dumps(record) + "\n")
            records.append({**record, "base": base})
    return records


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # a small MLP, few records
@pytest.mark.parametrize(
    ("n", "fitted"),
    [
        (200, 0.6),  # 160 training records: enough for the quadratic model (2 * 67)
        (40, 0.6),  # 32: too few for it, enough for the linear one (2 * 12): the fallback
        (16, 1.0),  # 13: too few for either: proportional correction
    ],
)
def test_predictor_train_corrects_a_known_drift(tmp_path, n, fitted):
    """`predictor train` with references: the elasticity fitted on the training records is the
    one the data was made with (the linear fallback too; 1.0 when too few records), the typical
    speed is their median reference, and the corrected labels are the drift-free base times
    one constant, which the predictor then learns."""
    from latency.dataset import record_key
    from mos_search.costs.predictors import label

    dataset = tmp_path / "lat.jsonl"
    records = drifting_dataset(dataset, n, elasticity=0.6)
    command = ["predictor", "train", "--dataset", str(dataset), "--space", TINY_SPACE]
    result = CliRunner().invoke(main, [*command, "--hidden", "16", "--members", "2"])
    assert result.exit_code == 0, result.output
    assert f"labels drift-corrected with elasticity {fitted:.2f}" in result.output
    meta = json.loads((tmp_path / "predictor.json").read_text())["meta"]
    train, test = split_by_arch(n, 0.2, 0, [record_key(r) for r in records])
    assert meta["n_train"] == len(train) and meta["drift_corrected"]
    assert meta["drift_elasticity"] == pytest.approx(fitted, abs=1e-6)
    typical = float(np.median([records[i]["reference_ms"] for i in train]))
    assert meta["reference_ms"] == pytest.approx(typical, rel=1e-12)
    base = np.array([r["base"] for r in records])
    raw = np.array([r["latency_ms"] for r in records])
    corrected = label(records, records, True, meta["drift_elasticity"], typical).labels_ms
    if fitted == 0.6:  # the drift is divided out: one factor, the typical speed over 30 ms
        at_typical = base * (typical / 30.0) ** 0.6
        assert corrected == pytest.approx(at_typical, rel=1e-9)
        assert np.ptp(raw / base) > 0.4  # which the raw times were far from
        predictor = LatencyPredictor.load(tmp_path / "predictor.json")
        predicted = predictor.predict_ms(np.array([records[i]["features"] for i in test]))
        assert accuracy(predicted, at_typical[test]).mape < 1.0  # raw times: 12%
    else:  # proportional: raw * typical / reference
        refs = np.array([r["reference_ms"] for r in records])
        assert corrected == pytest.approx(raw * typical / refs, rel=1e-12)


def test_drift_fit_falls_back_from_quadratic_to_linear_to_proportional():
    """With 10 features the quadratic model (66 columns and the slope) needs 134 records and
    the linear one (11 and the slope) 24; below that the fit gives the documented 1.0. In
    `product`, log(base) holds x0 * x1, which the reference follows: the quadratic model holds
    it and finds the elasticity exactly; the linear one cannot, and its slope takes part of the
    product (what shows which model was fitted). In `plain` the linear model is exact."""
    rng = np.random.default_rng(1)
    product, plain = [], []
    for _ in range(200):
        x = rng.uniform(0.3, 1.0, size=10)
        reference = 20.0 * np.exp(0.8 * x[0] * x[1] + rng.uniform(0, 0.3))
        drift = reference**0.6
        record = {"features": x.tolist(), "reference_ms": reference}
        product.append({**record, "latency_ms": np.exp(2 + 0.5 * x[2] + 1.5 * x[0] * x[1]) * drift})
        plain.append({**record, "latency_ms": np.exp(2 + 0.5 * x[2]) * drift})
    assert fit_drift_elasticity(product[:134]) == pytest.approx(0.6, abs=1e-9)  # quadratic
    assert abs(fit_drift_elasticity(product[:133]) - 0.6) > 0.2  # linear: the product leaks
    assert fit_drift_elasticity(plain[:133]) == pytest.approx(0.6, abs=1e-9)  # linear
    assert fit_drift_elasticity(plain[:24]) == pytest.approx(0.6, abs=1e-9)
    assert fit_drift_elasticity(plain[:23]) == 1.0  # too few for either


def _write_dataset_lines(path, lines: list[str], end: str = "\n") -> None:
    path.write_text("\n".join(lines) + end)


def _dataset_record(features, latency_ms=10.0, **extra) -> str:
    return json.dumps({"features": features, "latency_ms": latency_ms, **extra})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"features": [1.0, 2.0], "latency', "not JSON"),
        ("[1.0, 2.0]", "expected a JSON object, found list"),
        ('{"latency_ms": 3.0}', "no 'features'"),
        ('{"features": [1.0, "x"], "latency_ms": 3.0}', "'features' must be a list of finite"),
        ('{"features": [1.0, 2.0]}', "no 'latency_ms'"),
        ('{"features": [1.0, 2.0], "latency_ms": -1.0}', "'latency_ms' must be a positive"),
        ('{"features": [1.0, 2.0], "latency_ms": NaN}', "'latency_ms' must be a positive"),
        ('{"features": [1.0, 2.0], "latency_ms": 3.0, "reference_ms": 0}', "'reference_ms' must"),
        ('{"features": [1.0, 2.0], "latency_ms": 3.0, "arch": [1]}', "'arch' must be a JSON obj"),
    ],
)
def test_dataset_bad_middle_line_raises_with_its_line_number(tmp_path, bad, message):
    from latency.dataset import DatasetError

    dataset = tmp_path / "lat.jsonl"
    good = _dataset_record([1.0, 2.0])
    _write_dataset_lines(dataset, [good, "", good, bad, good])
    with pytest.raises(DatasetError, match=rf"lat\.jsonl:4: {message}") as caught:
        read_records(dataset)
    assert caught.value.line == 4 and isinstance(caught.value, ValueError)


def test_dataset_torn_last_line_is_skipped_and_the_next_append_does_not_glue(tmp_path):
    import warnings

    from latency.dataset import append_record

    dataset = tmp_path / "lat.jsonl"
    _write_dataset_lines(
        dataset, [_dataset_record([1.0]), _dataset_record([2.0]), '{"features": [3.0], "lat'], ""
    )
    with pytest.warns(UserWarning, match=r"lat\.jsonl:3: skipped a torn last line"):
        assert [r["features"] for r in read_records(dataset)] == [[1.0], [2.0]]
    with pytest.warns(UserWarning, match="truncated a torn last line"):
        append_record(dataset, {"features": [4.0], "latency_ms": 4.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["features"] for r in read_records(dataset)] == [[1.0], [2.0], [4.0]]
        # a complete last line that only lacks its newline is kept, then terminated
        dataset.write_text(dataset.read_text() + _dataset_record([5.0]))
        append_record(dataset, {"features": [6.0], "latency_ms": 6.0})
        assert [r["features"][0] for r in read_records(dataset)] == [1.0, 2.0, 4.0, 5.0, 6.0]
    assert dataset.read_text().endswith("\n")


def test_dataset_features_only_records_load_deduplicate_and_drift_correct(tmp_path):
    from latency.dataset import append_record, measured_keys, record_key

    dataset = tmp_path / "exported.jsonl"
    for features, latency, reference in [
        ([1, 2], 10.0, 20.0),
        ([1.0, 2.0], 12.0, 24.0),  # the same architecture again, floats this time
        ([3.0, 1.0], 30.0, None),
    ]:
        record = {"features": features, "latency_ms": latency, "profile_digest": "p"}
        if reference is not None:
            record["reference_ms"] = reference
        append_record(dataset, record)
    records = read_records(dataset, feature_names=["a", "b"])
    assert len(records) == 3 and not any("arch" in r for r in records)
    assert record_key(records[0]) == record_key(records[1]) != record_key(records[2])
    assert len(measured_keys(dataset, "p")) == 2 and measured_keys(dataset, "other") == set()
    assert record_key({"arch": {"layers": 2}, "features": [1.0]}) == '{"layers":2}'
    corrected = drift_corrected_ms(records, typical_ms=20.0)
    assert corrected == pytest.approx([10.0, 10.0, 30.0])  # no reference: left raw
    assert fit_drift_elasticity(records) == 1.0  # too few records to fit
    assert fit_drift_elasticity([records[2]]) == 1.0  # none has a reference


def test_dataset_repeated_measurements_recover_a_known_elasticity():
    from latency.dataset import fit_drift_elasticity_repeated

    rng = np.random.default_rng(3)
    records = []
    for i in range(30):
        base = rng.uniform(5, 50)
        arch = {"layers": i} if i % 2 else None  # half of them features-only
        for _ in range(3):  # three passes on a drifting machine
            reference = rng.uniform(20, 45)
            record = {
                "features": [float(i), base],
                "latency_ms": base * reference**0.6 * rng.lognormal(0, 0.01),
                "reference_ms": reference,
            }
            if arch is not None:
                record["arch"] = arch
            records.append(record)
    assert fit_drift_elasticity_repeated(records) == pytest.approx(0.6, abs=0.03)
    assert fit_drift_elasticity_repeated(records[:12]) is None  # 4 repeated archs: too few
    single = [r for i, r in enumerate(records) if i % 3 == 0]  # one measurement per arch
    assert fit_drift_elasticity_repeated(single) is None
    steady = [{**r, "reference_ms": 30.0} for r in records]  # the reference never moved
    assert fit_drift_elasticity_repeated(steady) is None


def test_dataset_wrong_feature_count_raises(tmp_path):
    from latency.dataset import DatasetError

    dataset = tmp_path / "lat.jsonl"
    _write_dataset_lines(dataset, [_dataset_record([1.0, 2.0, 3.0]), _dataset_record([1.0, 2.0])])
    with pytest.raises(DatasetError, match=r"lat\.jsonl:1: expected 2 features .*schema.*found 3"):
        read_records(dataset, feature_names=["a", "b"])
    with pytest.raises(DatasetError, match=r"lat\.jsonl:2: expected 3 features \(as line 1\)"):
        read_records(dataset)
    assert len(read_records(dataset.with_name("missing.jsonl"), ["a"])) == 0


# ------------------------------------------------------------------ intervals and paired runs


def test_median_interval_ranks_match_the_binomial():
    from scipy.stats import binom

    from latency.protocol import median_coverage, median_interval

    samples = [float(x) for x in range(1, 21)]  # x(i) = i
    interval = median_interval(samples, 0.95)
    assert (interval.low, interval.high) == (6.0, 15.0)  # [x(6), x(15)] for n = 20
    assert interval.coverage == pytest.approx(1 - 2 * binom.cdf(5, 20, 0.5))
    assert median_coverage(20, 7) < 0.95 <= median_coverage(20, 6)
    assert median_interval(samples[:10], 0.95).coverage == pytest.approx(1 - 2 * 11 / 1024)
    few = median_interval([3.0, 1.0, 2.0], 0.95)  # too few for 0.95: [min, max] at 75%
    assert (few.low, few.high, few.coverage) == (1.0, 3.0, pytest.approx(0.75))
    with pytest.raises(ValueError, match=r"confidence: expected a value in \(0, 1\)"):
        median_interval(samples, 1.0)


def test_median_interval_contains_the_median_and_narrows_with_more_samples():
    from statistics import median

    from latency.protocol import median_interval

    rng = np.random.default_rng(3)
    widths = []
    for n in (10, 40, 160, 640):
        samples = list(rng.lognormal(0.0, 0.3, size=n))
        interval = median_interval(samples, 0.95)
        assert interval.low <= median(samples) <= interval.high
        widths.append(interval.high - interval.low)
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 3


def test_median_interval_covers_the_true_median_at_its_nominal_rate():
    """2,000 sets of 20 lognormal repeats: coverage of the true median (1.0) near 95%."""
    from latency.protocol import median_interval

    rng = np.random.default_rng(0)
    sets = rng.lognormal(0.0, 0.5, size=(2000, 20))
    covered = [(i := median_interval(list(s), 0.95)).low <= 1.0 <= i.high for s in sets]
    assert abs(np.mean(covered) - 0.95) < 0.03
    assert abs(np.mean(covered) - median_interval(list(sets[0]), 0.95).coverage) < 0.02


def test_bootstrap_interval_of_the_trimmed_mean():
    """Reproducible (fixed seed), contains the statistic, and near-nominal coverage."""
    from scipy import stats

    from latency.protocol import bootstrap_trimmed_mean_interval

    rng = np.random.default_rng(1)
    sets = rng.lognormal(0.0, 0.5, size=(400, 20))
    first = bootstrap_trimmed_mean_interval(list(sets[0]), 0.1, 0.95)
    assert first == bootstrap_trimmed_mean_interval(list(sets[0]), 0.1, 0.95)
    assert first.low <= trimmed_mean(list(sets[0]), 0.1) <= first.high
    dist = stats.lognorm(0.5)
    q10, q90 = dist.ppf([0.1, 0.9])
    truth = dist.expect(lambda x: x, lb=q10, ub=q90, conditional=True)
    covered = [
        (i := bootstrap_trimmed_mean_interval(list(s), 0.1, 0.95)).low <= truth <= i.high
        for s in sets
    ]
    assert abs(np.mean(covered) - 0.95) < 0.05


def test_measurement_carries_the_interval_of_its_statistic():
    profile = load_profile("onnxruntime-cpu").__class__(
        name="t", backend="fake", warmups=0, repeats=10, retries=0, max_spread=10.0
    )
    times = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8, 1.02, 0.98, 1.5]
    result = measure(FakeDevice(profile, times), lambda: None, profile)
    ordered = sorted(times)
    assert (result.low_seconds, result.high_seconds) == (ordered[1], ordered[8])
    assert result.low_seconds <= result.seconds <= result.high_seconds
    assert result.coverage == pytest.approx(1 - 2 * 11 / 1024)
    trimmed = profile.__class__(**{**profile.to_dict(), "statistic": "trimmed_mean"})
    result = measure(FakeDevice(trimmed, times), lambda: None, trimmed)
    assert result.low_seconds <= result.seconds <= result.high_seconds
    assert result.coverage == 0.95


class LoggingDevice(FakeDevice):
    """Scripted times that also log which device ran, in order."""

    def __init__(self, profile, label, times, log):
        super().__init__(profile, times)
        self.label, self.log = label, log

    def time(self, work):
        self.log.append(self.label)
        return super().time(work)


def test_measure_pair_alternates_run_by_run_and_pairs_the_ratio():
    from latency.protocol import measure_pair

    profile = load_profile("onnxruntime-cpu").__class__(
        name="t", backend="fake", warmups=2, repeats=5, retries=0, max_spread=10.0
    )
    log: list[str] = []
    a = LoggingDevice(profile, "a", [1.0, 2.0, 1.0, 1.0, 4.0], log)
    b = LoggingDevice(profile, "b", [2.0, 4.2, 1.9, 2.1, 8.0], log)
    ref = LoggingDevice(profile, "r", [0.5, 1.0, 0.5, 0.5, 2.0], log)
    warm: list[str] = []
    pair = measure_pair(
        a,
        lambda: warm.append("a"),
        b,
        lambda: warm.append("b"),
        profile,
        (ref, lambda: warm.append("r")),
    )
    assert warm[:6] == ["a", "b", "r"] * 2  # warm-ups alternate too
    assert log == ["a", "b", "r", "b", "a", "r"] * 2 + ["a", "b", "r"]  # ABBA: neither leads
    assert pair.ratios == pytest.approx([2.0, 2.1, 1.9, 2.1, 2.0])
    assert pair.ratio == pytest.approx(2.0)  # median of paired ratios, not 2.1 / 1.0
    assert pair.ratio_low <= pair.ratio <= pair.ratio_high
    assert pair.a.reference_seconds == pair.b.reference_seconds == 0.5
    assert (pair.a.seconds, pair.b.seconds) == (1.0, 2.1)
    # per-round ratios over the reference: b 4, 4.2, 3.8, 4.2, 4 -> 4.0 (median/median gives 4.2)
    assert (pair.a.reference_ratio, pair.b.reference_ratio) == pytest.approx((2.0, 4.0))


def test_profile_confidence_is_checked_and_leaves_the_digest_alone():
    from devices import ProfileError

    profile = load_profile("onnxruntime-cpu")
    assert profile.confidence == 0.95
    other = profile.__class__(**{**profile.to_dict(), "confidence": 0.8})
    assert other.digest() == profile.digest()  # same runs timed: recorded datasets stay valid
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ProfileError, match=r"confidence must be in \(0, 1\)"):
            profile.__class__(**{**profile.to_dict(), "confidence": bad})


def test_profiling_records_intervals_and_passes_resume(tmp_path):
    from mos_search.costs.profiling import measure_archs

    fast = tmp_path / "fast.toml"
    fast.write_text(
        'backend = "onnxruntime-cpu"\nwarmups = 0\nrepeats = 3\ndecoder_steps = 2\nretries = 0\n'
    )
    profile = load_profile(fast)
    models = ArchModels(load_space(TINY_SPACE), vocab_size=40)
    archs = sample_archs(models.space, 2, seed=0)
    dataset = tmp_path / "measured.jsonl"
    run = measure_archs(profile, archs, models, dataset, progress=False, passes=2)
    assert (run.measured, run.skipped) == (4, 0)
    records = read_records(dataset)
    assert [r["pass"] for r in records] == [0, 0, 1, 1]  # pass after pass, not arch by arch
    for r in records:
        assert r["low_ms"] <= r["latency_ms"] <= r["high_ms"] and r["reference_ms"] > 0
        assert r["interval_coverage"] == pytest.approx(0.75)  # 3 repeats: [min, max]
    again = measure_archs(profile, archs, models, dataset, progress=False, passes=3)
    assert (again.measured, again.skipped) == (2, 4)
    assert [r["pass"] for r in read_records(dataset)] == [0, 0, 1, 1, 2, 2]


# ------------------------------------------------------------------ predictor intervals


def noisy_latency(n: int, seed: int, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    x, y = synthetic_latency(n, seed)
    return x, y * np.exp(np.random.default_rng(seed + 100).normal(0, noise, n))


def test_predictor_intervals_are_calibrated_on_held_out_archs():
    """Conformal out-of-bag intervals hold about their nominal share of new measurements."""
    names = list(load_space("cpu-small").feature_names)
    x, y = noisy_latency(400, 0)
    predictor = LatencyPredictor.fit(x, y, names, members=8)
    x_new, y_new = noisy_latency(1000, 1)
    for level in (0.8, 0.95):
        low, high = predictor.interval_ms(x_new, level)
        inside = np.mean((low <= y_new) & (y_new <= high))
        assert abs(inside - level) < 0.05, (level, inside)
    upper = predictor.upper_ms(x_new, 0.9)
    assert abs(np.mean(y_new <= upper) - 0.9) < 0.05
    assert np.all(upper < predictor.interval_ms(x_new, 0.99)[1])
    acc = accuracy(predictor.predict_ms(x_new), y_new, {0.8: predictor.interval_ms(x_new, 0.8)})
    assert 75 <= acc.coverage_80 <= 85 and np.isnan(acc.coverage_95)
    low, high = predictor.interval_ms(x_new, 0.8)
    width = np.mean((high - low) / predictor.predict_ms(x_new)) * 100
    assert acc.width_80 == pytest.approx(width) and acc.width_80 > 0 and np.isnan(acc.width_95)
    wider = accuracy(predictor.predict_ms(x_new), y_new, {0.8: (low * 0.5, high * 2)})
    assert wider.coverage_80 > acc.coverage_80 and wider.width_80 > 2 * acc.width_80


def test_predictor_files_need_no_pickle_and_are_checked(tmp_path):
    names = list(load_space("cpu-small").feature_names)
    x, y = noisy_latency(60, 2)
    predictor = LatencyPredictor.fit(x, y, names, members=3, meta={"space": "cpu-small"})
    path = tmp_path / "p.json"
    arrays = predictor.save(path)
    assert arrays == tmp_path / "p.npz" and path.stat().st_size < 2000
    loaded = LatencyPredictor.load(path)
    assert np.array_equal(loaded.predict_ms(x), predictor.predict_ms(x))
    assert np.array_equal(loaded.upper_ms(x, 0.9), predictor.upper_ms(x, 0.9))
    with np.load(arrays, allow_pickle=False) as data:  # plain arrays only
        assert all(data[name].dtype != object for name in data.files)
    arrays.write_bytes(arrays.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(PredictorError, match="does not match its header"):
        LatencyPredictor.load(path)
    path.write_text('{"format": "mos-search-latency-mlp/1"}')
    with pytest.raises(PredictorError, match="retrain it"):
        LatencyPredictor.load(path)


def test_transfer_maps_a_predictor_to_a_related_device():
    """A device 1.7x slower with a fixed overhead: 30 measurements and the source predictor
    predict it better than a predictor fitted on those 30 alone."""
    names = list(load_space("cpu-small").feature_names)
    x, y = noisy_latency(400, 3, noise=0.02)
    source = LatencyPredictor.fit(x, y, names, members=4)
    x_new, y_new = noisy_latency(300, 4, noise=0.02)
    y_target = 1.7 * y_new**0.95 + 5.0
    transferred = LatencyPredictor.transfer(source, x_new[:30], y_target[:30])
    scratch = LatencyPredictor.fit(x_new[:30], y_target[:30], names, members=4)
    transfer_mape = accuracy(transferred.predict_ms(x_new[30:]), y_target[30:]).mape
    scratch_mape = accuracy(scratch.predict_ms(x_new[30:]), y_target[30:]).mape
    assert transfer_mape < 5 and transfer_mape < scratch_mape
    low, high = transferred.interval_ms(x_new[30:], 0.9)
    assert 0.75 < np.mean((low <= y_target[30:]) & (y_target[30:] <= high)) <= 1.0


def test_verification_records_flow_back_into_the_dataset(tmp_path):
    """A search's verification measurements are appended (marked, once) to the dataset the
    predictor was trained on, and `update` refits on it by default; shipped data is left alone."""
    from mos_search.costs.predictors import (
        append_verification,
        shipped_path,
        train_latency_predictor,
        update_predictor,
    )

    space = load_space("cpu-small")
    shipped = read_records(shipped_path("onnxruntime-cpu", "latency.jsonl"))
    dataset, measured = tmp_path / "latency.jsonl", tmp_path / "measured.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in shipped[:60]))
    verified = [{**r, "pass": p} for r in shipped[60:64] for p in range(3)]
    measured.write_text("".join(json.dumps(r) + "\n" for r in verified))
    predictor = tmp_path / "predictor.json"
    train_latency_predictor(dataset, predictor, space.name, curve_sizes=(), members=2)
    assert append_verification(predictor, measured, "runs/s") == (dataset, 12)
    assert append_verification(predictor, measured, "runs/s") == (dataset, 0)  # once only
    records = read_records(dataset)
    assert len(records) == 72 and {r["source"] for r in records[60:]} == {"verification"}
    report = update_predictor(predictor)
    assert report.path == predictor and report.n_train + report.test.n == 72
    assert append_verification(shipped_path("onnxruntime-cpu"), measured, "r") == (None, 0)


def test_active_profiling_picks_members_whose_interval_holds_the_budget():
    from mos_search.costs.predictors import shipped_path
    from mos_search.costs.profiling import run_profile, straddling_archs
    from mos_search.errors import ConfigError

    space = load_space("cpu-small")
    path = shipped_path("onnxruntime-cpu")
    predictor = LatencyPredictor.load(path)
    chosen = straddling_archs(space, str(path), 60.0, 15, seed=1)
    assert len(chosen) == 15 and len(set(chosen)) == 15
    features = [space.features(a) for a in chosen]
    low, high = predictor.interval_ms(features, 0.9)
    assert np.all(low <= 60.0) and np.all(high >= 60.0)
    distance = np.abs(predictor.predict_ms(features) - 60.0)
    assert np.all(np.diff(distance) >= 0)  # closest to the budget first
    with pytest.raises(ConfigError, match="go together"):
        run_profile("onnxruntime-cpu", "cpu-small", 2, near_budget_ms=60.0)


def test_repeated_measurements_of_one_arch_stay_on_one_side_of_the_split():
    keys = [f"a{i // 3}" for i in range(30)] + [f"b{i}" for i in range(20)]  # 10 archs x 3 passes
    train, test = split_by_arch(len(keys), 0.2, 0, keys)
    assert sorted([*train, *test]) == list(range(50))
    assert not {keys[i] for i in train} & {keys[i] for i in test}
    assert len({keys[i] for i in test}) == round(30 * 0.2)  # 30 archs, 20% of them held out
    plain = split_by_arch(50, 0.2, 0)
    same = split_by_arch(50, 0.2, 0, [str(i) for i in range(50)])
    assert all(np.array_equal(a, b) for a, b in zip(plain, same))


def test_active_profiling_measures_new_members_each_time(tmp_path):
    from latency.dataset import record_key
    from mos_search.costs.predictors import shipped_path
    from mos_search.costs.profiling import run_profile

    dataset = tmp_path / "latency.jsonl"
    options = {
        "near_budget_ms": 60.0,
        "predictor": str(shipped_path("onnxruntime-cpu")),
        "dataset": str(dataset),
        "progress": False,
    }
    first = run_profile("onnxruntime-cpu-quick", "cpu-small", 1, **options)
    second = run_profile("onnxruntime-cpu-quick", "cpu-small", 1, **options)
    assert (first.measured, second.measured) == (1, 1)
    records = read_records(dataset)
    assert len({record_key(r) for r in records}) == 2
