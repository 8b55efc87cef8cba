"""`mos-search size-quality` (fidelity/size_quality.py): architectures spread over the size range,
validation loss against parameter count and predicted latency, Spearman rho with an interval."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from mos_search.cli import main

from conftest import assert_one_line_error, tree_digests


def test_spearman_is_the_correlation_of_ranks():
    from mos_search.fidelity.size_quality import spearman

    x = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    y = np.array([10.0, 30.0, 20.0, 1.0, 2.0])  # perfectly reversed ranks
    assert spearman(x, y) == pytest.approx(-1.0)
    ranks_x, ranks_y = np.argsort(np.argsort(x)), np.argsort(np.argsort(-x + [0, 0, 1.5, 0, 0]))
    expected = np.corrcoef(ranks_x, ranks_y)[0, 1]
    assert spearman(x, -x + np.array([0, 0, 1.5, 0, 0])) == pytest.approx(expected)
    assert math.isnan(spearman(x, np.ones(5)))  # a constant side: undefined


def test_the_archs_spread_over_the_size_range(cpu_space):
    from mos_search.fidelity.size_quality import spread_by_size
    from mos_search.models.build import count_arch_parameters

    def count(arch):
        return count_arch_parameters(cpu_space, arch, 8000)

    archs = spread_by_size(cpu_space, count, 12, seed=0)
    sizes = [count(a) for a in archs]
    assert len(set(archs)) == 12
    assert sizes == sorted(sizes)
    assert archs[0] == cpu_space.smallest() and archs[-1] == cpu_space.largest()
    steps = np.diff(sizes) / (sizes[-1] - sizes[0])
    assert steps.max() < 0.25  # no big hole: evenly spread, not clustered at the median size
    assert spread_by_size(cpu_space, count, 12, seed=0) == archs  # seeded


def test_size_quality_scores_and_correlates_with_params_and_latency(tiny_run, tmp_path):
    from test_search_budgets import SPACE, log_linear_predictor

    from mos_search.fidelity.size_quality import spearman
    from mos_search.oracle.scoring import Oracle

    predictor = log_linear_predictor(5.0, {"encoder_embed_dim": 1.0, "decoder_layers": 0.5})
    path = tmp_path / "predictor.json"
    predictor.save(path)
    out = tmp_path / "sq"
    args = ["size-quality", "--ckpt", str(tiny_run), "--archs", "6", "--threads", "1"]
    result = CliRunner().invoke(main, [*args, "--predictor", f"dev={path}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| params |" in result.output and "| latency:dev |" in result.output
    report = json.loads((out / "size_quality.json").read_text())
    rows = report["archs"]
    assert len(rows) == 6 and [r["params"] for r in rows] == sorted(r["params"] for r in rows)
    oracle = Oracle(tiny_run, split="valid", cache_path=None)
    first = SPACE.arch_from_dict(rows[0]["arch"])
    assert rows[0]["valid_loss"] == pytest.approx(oracle.loss(first), abs=1e-6)
    loss = np.array([r["valid_loss"] for r in rows])
    archs = [SPACE.arch_from_dict(r["arch"]) for r in rows]
    expected_ms = [float(predictor.predict_ms(SPACE.features(a))[0]) for a in archs]
    assert [r["predicted_ms"]["dev"] for r in rows] == pytest.approx(expected_ms)
    rho = report["spearman"]
    params = np.array([r["params"] for r in rows], dtype=float)
    assert rho["params"]["value"] == pytest.approx(spearman(loss, params))
    assert rho["latency:dev"]["value"] == pytest.approx(spearman(loss, np.array(expected_ms)))
    for entry in rho.values():
        assert entry["low"] <= entry["value"] <= entry["high"]
    again = CliRunner().invoke(main, [*args, "--out", str(out)])  # cached: a rerun resumes
    assert again.exit_code == 0
    rerun = json.loads((out / "size_quality.json").read_text())["archs"]
    assert [(r["arch"], r["valid_loss"]) for r in rerun] == [
        (r["arch"], r["valid_loss"]) for r in rows
    ]


def test_a_malformed_predictor_option_is_refused_with_one_line(tiny_run, tmp_path):
    before = tree_digests(tmp_path)
    args = ["size-quality", "--ckpt", str(tiny_run), "--predictor", "nopath"]
    args += ["--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert_one_line_error(result, "DEVICE=PATH")
    assert tree_digests(tmp_path) == before
