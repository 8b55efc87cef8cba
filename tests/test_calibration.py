"""The day's calibration (issue 29): `predictor calibrate` on today's records, and a search that
measures N architectures first (`--calibrate N`), then searches, verifies and picks with the
calibrated predictor; together with a peak-memory budget measured in verification.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from test_search import tiny_predictor

from latency.memory_model import MemoryModel
from latency.predictor import LatencyPredictor
from mos_search.cli import main
from mos_search.search.pick import pick_decision

from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
TODAY = ROOT / "bench" / "results" / "drift" / "20261207T1321.jsonl"  # a committed occasion
SHIPPED = ROOT / "mos_search" / "shipped" / "onnxruntime-cpu" / "predictor.json"


def test_predictor_calibrate_brings_a_stale_predictor_to_today(tmp_path):
    """The shipped predictor misses a committed occasion of the drift panel by far (another
    machine); calibrated on 20 of its records it fits them."""
    records = TODAY.read_text().splitlines()[::2]  # 20 of the 40, spread over the sizes
    dataset = tmp_path / "today.jsonl"
    dataset.write_text("\n".join(records) + "\n")
    out = tmp_path / "calibrated.json"
    args = ["predictor", "calibrate", "--predictor", str(SHIPPED), "--dataset", str(dataset)]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[2:]}
    mape = {name: float(rows[name][3].rstrip("%")) for name in ("before", "in-sample")}
    assert mape["before"] > 20 and mape["in-sample"] < 5, result.output
    assert LatencyPredictor.load(out).meta["n_train"] == 20


def test_calibrate_needs_three_architectures_and_a_translation_search(tmp_path):
    result = CliRunner().invoke(
        main, ["search", "--ckpt", "x", "--calibrate", "2", "--out", str(tmp_path / "s")]
    )
    assert_one_line_error(result, "--calibrate")
    result = CliRunner().invoke(
        main,
        ["search", "--task", "bert", "--ckpt", "x", "--calibrate", "5", "--out", str(tmp_path)],
    )
    assert_one_line_error(result, "--calibrate 5: for --task mt")
    result = CliRunner().invoke(
        main, ["search", "--ckpt", "x", "--calibrate", "8", "--out", str(tmp_path / "s")]
    )
    assert_one_line_error(result, "--calibrate 8", "at least 9 architectures")


def test_a_calibrated_search_with_a_memory_budget_end_to_end(tiny_run, tmp_path):
    """--calibrate 9 (the fewest a 90% bound allows) measures 9 architectures first and searches
    with the calibrated predictor; verification measures latency and peak memory, and the pick
    judges both."""
    from mos_search.models.build import load_model

    vocab = load_model(tiny_run).vocab_size
    predictor = tmp_path / "tiny-predictor.json"
    tiny_predictor(vocab=vocab).save(predictor)
    memory = tmp_path / "memory.json"
    names = ["embedding_mib", "matmul_mib"]
    MemoryModel([1.0, 2.0], 30.0, [0.5] * 40, names, {"vocab_size": vocab}).save(memory)
    out = tmp_path / "search"
    args = ["search", "--ckpt", str(tiny_run), "--predictor", str(predictor), "--calibrate", "9"]
    args += ["--max-latency-ms", "1000", "--max-params", "10000000", "--max-memory-mib", "500"]
    args += ["--memory-model", str(memory), "--generations", "2", "--population", "6"]
    args += ["--limit", "10", "--verify-limit", "6", "--verify-beam", "1", "--verify-max", "2"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "calibrated onnxruntime-cpu on 9 architectures" in result.output
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["devices"]["onnxruntime-cpu"]["records"] == 9
    calibrated = LatencyPredictor.load(out / "calibrated-onnxruntime-cpu.json")
    assert calibrated.meta["n_train"] == 9
    verified = json.loads((out / "verified.json").read_text())["archs"]
    assert len(verified) == 2
    for row in verified:
        assert 0 < row["measured_peak_memory_mib"] < 500
        assert row["predicted_peak_memory_mib"] > 30.0
    assert "peak memory" in result.output
    decision = pick_decision(out, "best")
    assert decision.arch in [row["arch"] for row in verified]


def test_intervals_with_the_occasion_component_cover_another_occasion(tmp_path):
    """A predictor whose residuals describe one occasion; another occasion moves every latency
    by a log ratio drawn from the same spread as the measured between-occasion ratios. Without
    the component the 80% interval covers far less; with it, about 80%. It survives saving."""
    import numpy as np
    from test_search import tiny_predictor

    rng = np.random.default_rng(0)
    base = tiny_predictor()
    base.residuals = rng.normal(0, 0.02, 200)  # the profiling occasion: 2% error
    ratios = rng.normal(0, 0.08, 120)  # between occasions: 8%
    widened = base.with_occasions(ratios)
    x = np.zeros((4000, len(base.feature_names)))
    truth = np.log(base.predict_ms(x)) + rng.normal(0, 0.02, 4000) + rng.normal(0, 0.08, 4000)
    measured = np.exp(truth)
    for predictor, low_end in ((base, 0.0), (widened, 0.75)):
        low, high = predictor.interval_ms(x, 0.8)
        covered = np.mean((low <= measured) & (measured <= high))
        assert low_end <= covered <= (0.4 if predictor is base else 0.86)
    widened.save(tmp_path / "p.json")
    again = LatencyPredictor.load(tmp_path / "p.json")
    np.testing.assert_allclose(again.upper_ms(x[:1], 0.9), widened.upper_ms(x[:1], 0.9))


def test_the_card_records_the_runs_calibration(tmp_path):
    from mos_search.search.pick import PickDecision

    model, run = tmp_path / "model", tmp_path / "run"
    model.mkdir()
    run.mkdir()
    (model / "card.json").write_text(json.dumps({"params": 5}))
    (run / "calibration.json").write_text(json.dumps({"architectures": 20}))
    PickDecision({"n": 1}, "best").write_into_card(model, run)
    card = json.loads((model / "card.json").read_text())
    assert card["calibration"] == {"architectures": 20} and card["pick"]["rule"] == "best"
    PickDecision({"n": 1}, "rank").write_into_card(model, tmp_path / "elsewhere")
    assert json.loads((model / "card.json").read_text())["pick"]["rule"] == "rank"
