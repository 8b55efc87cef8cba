"""`mos-search fidelity` (issue 20): supernet vs standalone gaps and Kendall tau with bootstrap
intervals over architectures, checked against hand-computed values and end to end."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from scipy.stats import kendalltau

from mos_search.cli import main
from mos_search.fidelity import bootstrap, gap_change, gap_row, kendall_tau, table_lines
from mos_search.models.checkpoint import resolve_checkpoint

from conftest import TINY_SPACE, assert_one_line_error


def test_gap_row_against_hand_computed_values():
    inherited, standalone = [1.0, 2.0, 3.0, 4.0, 6.0], [0.5, 2.0, 2.5, 5.0, 5.0]
    row = gap_row(inherited, standalone, resamples=500)
    # diffs (inherited - standalone): 0.5, 0, 0.5, -1, 1
    assert row["mean_abs"]["value"] == pytest.approx(0.6)
    assert row["mean_signed"]["value"] == pytest.approx(0.2)
    assert row["kendall_tau"]["value"] == pytest.approx(kendalltau(inherited, standalone)[0])
    for entry in row.values():
        assert entry["low"] <= entry["value"] <= entry["high"]
    assert 0 <= row["mean_abs"]["low"] < 0.6 < row["mean_abs"]["high"] <= 1.0
    assert gap_row(inherited, standalone, resamples=500) == row  # seeded: reproducible


def test_undefined_resamples_are_left_out_and_counted():
    """K = 3 in the same order: every resample with two distinct architectures still ranks them
    alike (tau 1); those of one repeated architecture (3 in 27) have no tau and are left out,
    not counted as 0 (which would put the interval's low end at 0)."""
    interval = bootstrap(kendall_tau, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], resamples=900)
    assert (interval.value, interval.low, interval.high) == pytest.approx((1.0, 1.0, 1.0))
    assert 60 < interval.undefined < 150  # about 900 * 3 / 27 = 100
    constant = bootstrap(kendall_tau, [1.0, 1.0, 1.0], [1.0, 2.0, 3.0], resamples=200)
    assert constant.to_dict() == {"value": None, "low": None, "high": None, "undefined": 0}
    one = gap_row([2.0], [1.5], resamples=200)
    assert one["mean_abs"] == {"value": 0.5, "low": None, "high": None, "undefined": 0}


def test_gap_change_is_paired_and_negative_when_closer():
    standalone = [1.0, 2.0, 3.0, 4.0]
    closer = [1.1, 2.2, 3.1, 4.3]  # |gap| 0.1, 0.2, 0.1, 0.3
    reference = [2.0, 2.5, 4.5, 4.8]  # |gap| 1.0, 0.5, 1.5, 0.8
    change = gap_change(closer, reference, standalone, resamples=500)
    assert change["value"] == pytest.approx(0.175 - 0.95)
    assert change["low"] <= change["value"] <= change["high"] < 0
    assert gap_change(reference, closer, standalone, resamples=500)["low"] > 0


def test_table_lines_show_what_has_no_interval():
    result = {
        "archs": [{}],
        "confidence": 0.95,
        "resamples": 200,
        "table": {"shared": {"loss": gap_row([2.0], [1.5], resamples=200)}},
        "reference": "shared",
        "gap_change": {},
    }
    (line,) = table_lines(result)[1:]
    assert line.startswith("shared        loss       |gap| 0.500 [n/a, n/a]")


def test_bootstrap_of_a_constant_is_that_constant():
    interval = bootstrap(lambda d: float(sum(d) / len(d)), [0.3, 0.3, 0.3, 0.3], resamples=200)
    assert (interval.low, interval.value, interval.high) == pytest.approx((0.3, 0.3, 0.3))


def test_fidelity_trains_standalones_and_reports(tiny_run, tmp_path):
    """Three architectures trained alone, scored beside the tiny supernet: the JSON holds every
    score, the table reproduces the scores' gaps, and the given runs give the same result."""
    out = tmp_path / "fid"
    args = ["fidelity", "--ckpt", str(tiny_run), "--train-standalone", "3", "--steps", "4"]
    args += ["--space", str(TINY_SPACE)]
    args += ["--max-tokens", "512", "--warmup", "2", "--bleu-limit", "5", "--resamples", "200"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "fidelity.json").read_text())
    assert saved["metrics"] == ["loss", "bleu"] and len(saved["archs"]) == 3
    label = tiny_run.name
    inherited, alone = saved["inherited"][label]["loss"], saved["standalone"]["loss"]
    gap = sum(abs(a - b) for a, b in zip(inherited, alone)) / 3
    assert saved["table"][label]["loss"]["mean_abs"]["value"] == pytest.approx(gap)
    assert f"{label:<14}loss" in result.output and "tau" in result.output
    assert (out / "fidelity.png").stat().st_size > 10_000
    assert saved["reference"] == label and saved["gap_change"] == {}

    # the same --out with another recipe: its standalones are not this one's
    result = CliRunner().invoke(main, [*args, "--lr", "0.005", "--out", str(out)])
    assert_one_line_error(result, "was trained otherwise")

    again = tmp_path / "again"
    runs = [x for i in range(3) for x in ("--standalone", str(out / f"standalone-{i}"))]
    args = ["fidelity", "--ckpt", str(tiny_run), *runs, "--bleu-limit", "5", "--resamples", "200"]
    result = CliRunner().invoke(main, [*args, "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert json.loads((again / "fidelity.json").read_text())["table"] == saved["table"]


def test_fidelity_refuses_what_it_cannot_compare(tiny_run, tmp_path):
    base = ["fidelity", "--ckpt", str(tiny_run), "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(main, base)
    assert_one_line_error(result, "--standalone")
    result = CliRunner().invoke(main, [*base, "--standalone", str(tiny_run)])
    assert_one_line_error(result, "is a supernet")

    other = tmp_path / "other"  # the tiny supernet's checkpoint, saved as of another space
    shutil.copytree(resolve_checkpoint(tiny_run), other)
    state = json.loads((other / "state.json").read_text())
    choices = state["model"]["supernet"]["space"]["choices"]
    name = next(k for k, v in choices.items() if len(v) > 1)
    choices[name] = choices[name][:1]
    (other / "state.json").write_text(json.dumps(state))
    result = CliRunner().invoke(main, [*base, "--ckpt", str(other), "--standalone", str(tiny_run)])
    assert_one_line_error(result, "compare supernets of one space")
    assert not (tmp_path / "x" / "fidelity.json").exists()
