"""Search paths no other test takes: `--quality bleu` (higher is better), `--max-latency-ms
DEVICE=X` through the CLI, HAT's evolution with the real oracle, and the hypervolume box."""

from __future__ import annotations

import functools
import json

import pytest
from click.testing import CliRunner
from test_search_budgets import (
    DEC,
    DEC_BASE_MS,
    DEC_SLOPES,
    NARROW_DEEP,
    SPACE,
    SPLIT_MS,
    WIDE_SHALLOW,
    install_stub_oracle,
    log_linear_predictor,
    save_predictors,
    search,
    stub_score,
)

from mos_search.cli import main
from mos_search.models.build import load_model
from mos_search.search.algorithms import make_algorithm
from mos_search.search.config import Budget, SearchConfig
from mos_search.search.objectives import search_evaluator
from mos_search.search.options import search_config
from mos_search.search.problem import ArchEvaluator
from mos_search.search.run import hypervolume, hypervolume_box

from conftest import assert_one_line_error


@pytest.fixture
def stub_oracle(monkeypatch):
    """`install(space=SPACE, task="mt")` puts a `StubOracle` in as every search's oracle."""
    return functools.partial(install_stub_oracle, monkeypatch)


@pytest.fixture
def predictor_files(tmp_path):
    return save_predictors(tmp_path / "predictors")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ --quality bleu


def test_cli_quality_bleu_searches_for_higher_bleu_and_reports_it_positive(
    tmp_path, stub_oracle, predictor_files
):
    """The oracle is asked for BLEU at --beam; the front holds the highest BLEU scored, each
    member non-dominated with higher BLEU better, and reports BLEU as scored (positive)."""
    oracle = stub_oracle()
    out = tmp_path / "search"
    args = ["search", "--ckpt", "stub", "--predictor", predictor_files["dec"]]
    args += ["--quality", "bleu", "--beam", "3", "--generations", "3", "--population", "10"]
    args += ["--no-verify", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert oracle.asked and set(oracle.asked) == {("bleu", 3)}
    front = json.loads((out / "front.json").read_text())
    assert front and all(set(p) == {"arch", "bleu", "costs", "params", "bounds"} for p in front)
    for p in front:
        assert p["bleu"] == pytest.approx(
            stub_score(SPACE, SPACE.arch_from_dict(p["arch"]), "bleu")
        )
        assert p["bleu"] > 30
    scored = [e for e in read_jsonl(out / "evaluations.jsonl") if e["quality"] is not None]
    assert max(p["bleu"] for p in front) == max(e["quality"] for e in scored)
    device = "onnxruntime-cpu"
    for p in front:  # nothing scored has higher (or equal) BLEU at lower (or equal) latency
        assert not any(
            e["quality"] >= p["bleu"]
            and e["costs"][device] <= p["costs"][device]
            and (e["quality"], e["costs"][device]) != (p["bleu"], p["costs"][device])
            for e in scored
        )
    history = json.loads((out / "state.json").read_text())["history"]
    assert all(h["best_quality"] > 30 for h in history)
    assert f"best bleu {history[-1]['best_quality']:.3f}" in result.output


def test_hat_evo_under_quality_bleu_keeps_the_highest_bleu_as_parents(tmp_path, stub_oracle):
    """HAT's evolution ranks on signed quality: with BLEU the parents of the next generation
    are the population's highest BLEU, not its lowest."""
    stub_oracle()
    predictor = tmp_path / "dec.json"
    DEC.save(predictor)
    config = search_config(
        checkpoint="stub",
        predictors=(str(predictor),),
        quality="bleu",
        max_latency_ms=["1000"],
        algorithm="hat-evo",
        population=10,
    )
    evaluator = search_evaluator(config, tmp_path)
    algorithm = make_algorithm("hat-evo", evaluator, config.population, seed=0)
    first = algorithm.step()
    second = algorithm.step()
    parents = config.population // 5
    best = sorted(first, key=lambda e: -e.quality)[:parents]
    assert [e.arch for e in second[:parents]] == [e.arch for e in best]
    assert best[0].quality > min(e.quality for e in first)  # a real choice was made


# ------------------------------------------------------------------ --max-latency-ms DEVICE=X


def test_cli_latency_budgets_per_device(tmp_path, stub_oracle, predictor_files):
    """`DEVICE=X` limits that device, a bare `X` the first --device: with `dec=15` and `30`, a
    wide encoder with one decoder layer meets both budgets, a narrow one with two misses "dec"'s
    only; the front meets both."""
    stub_oracle()
    out = tmp_path / "search"
    args = ["search", "--ckpt", "stub", "--device", "enc", "--predictor", predictor_files["enc"]]
    args += ["--device", "dec", "--predictor", predictor_files["dec"]]
    args += ["--max-latency-ms", f"dec={SPLIT_MS}", "--max-latency-ms", "30"]
    args += ["--generations", "3", "--population", "10", "--no-verify", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = SearchConfig.from_dict(json.loads((out / "search.json").read_text()))
    assert set(saved.budgets) == {Budget.latency_ms(SPLIT_MS, "dec"), Budget.latency_ms(30, "enc")}
    front = json.loads((out / "front.json").read_text())
    assert front and all(p["costs"]["dec"] <= SPLIT_MS for p in front)
    assert all(p["costs"]["enc"] <= 30 for p in front)
    evaluator = search_evaluator(saved, tmp_path)
    names = [b.name for b in saved.budgets]

    def unmet(arch) -> set[str]:
        violations = evaluator.constraints(arch).violations
        return {name for name, v in zip(names, violations) if v > 0}

    assert unmet(WIDE_SHALLOW) == set() and unmet(NARROW_DEEP) == {"latency[dec]"}


@pytest.mark.parametrize(
    "value, message",
    [
        ("cpu=5", "--max-latency-ms cpu=5: 'cpu' is not a --device"),
        ("dec=fast", "--max-latency-ms dec=fast: expected milliseconds"),
        ("dec=", "--max-latency-ms dec=: expected milliseconds"),
        ("dec:5", "--max-latency-ms dec:5: expected milliseconds"),
        ("dec=0", "--max-latency-ms 0: must be positive"),
        ("dec=-3", "--max-latency-ms -3: must be positive"),
        ("dec=nan", "--max-latency-ms nan: must be positive"),
        ("dec=inf", "--max-latency-ms inf: must be positive"),
        ("=5", "--max-latency-ms =5: expected X or DEVICE=X"),
    ],
)
def test_cli_refuses_a_bad_latency_budget_in_one_line(tmp_path, value, message):
    """Refused before anything is loaded or written (the checkpoint does not even exist)."""
    out = tmp_path / "search"
    args = ["search", "--ckpt", str(tmp_path / "none"), "--device", "enc", "--device", "dec"]
    args += ["--max-latency-ms", value, "--out", str(out)]
    assert_one_line_error(CliRunner().invoke(main, args), message)
    assert not out.exists()


def test_cli_refuses_two_budgets_on_one_device(tmp_path):
    """`20` (the first device's) and `enc=30` name one device twice: refused, not the last kept."""
    out = tmp_path / "search"
    args = ["search", "--ckpt", str(tmp_path / "none"), "--device", "enc", "--device", "dec"]
    args += ["--max-latency-ms", "20", "--max-latency-ms", "enc=30", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert_one_line_error(result, "--max-latency-ms enc=30: enc already has a budget (20 ms")
    assert not out.exists()


# ------------------------------------------------------------------ HAT's evolution, real oracle


def test_cli_hat_evo_with_the_real_oracle_meets_its_budget(tiny_run, tmp_path):
    """A tiny `--algorithm hat-evo` run scoring with the trained supernet: a front of models
    with one decoder layer (the only ones within 15 ms on this predictor); every architecture
    it scored met the budget except the largest, scored for the hypervolume box only."""
    from mos_search.oracle.scoring import Oracle

    predictor = tmp_path / "dec.json"
    vocab = load_model(tiny_run).vocab_size
    log_linear_predictor(DEC_BASE_MS, DEC_SLOPES, vocab=vocab).save(predictor)
    out = tmp_path / "search"
    args = ["search", "--ckpt", str(tiny_run), "--predictor", str(predictor)]
    args += ["--algorithm", "hat-evo", "--max-latency-ms", str(SPLIT_MS)]
    args += ["--generations", "2", "--population", "5", "--limit", "10", "--threads", "1"]
    args += ["--no-verify", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "gen   2/2" in result.output
    front = json.loads((out / "front.json").read_text())
    assert front and all(p["arch"]["decoder_layers"] == 1 for p in front)
    assert all(p["costs"]["onnxruntime-cpu"] <= SPLIT_MS for p in front)
    evaluations = read_jsonl(out / "evaluations.jsonl")
    largest = SPACE.largest().to_dict()
    assert [e["arch"] for e in evaluations if max(e["violations"]) > 0] == [largest]
    assert largest not in [p["arch"] for p in front]
    oracle = Oracle(tiny_run, split="valid", limit=10)
    arch = SPACE.arch_from_dict(front[0]["arch"])
    assert front[0]["loss"] == pytest.approx(oracle.loss(arch)) and front[0]["loss"] > 0


# ------------------------------------------------------------------ the hypervolume box


def box_evaluator(quality: dict[str, float], metric: str = "loss", budgets=()) -> ArchEvaluator:
    """An evaluator whose largest member scores `quality["largest"]` and costs 10 ms, the
    smallest `quality["smallest"]` and 2 ms."""
    largest = SPACE.largest()
    return ArchEvaluator(
        SPACE,
        quality=lambda a: quality["largest" if a == largest else "smallest"],
        metric=metric,
        costs={"dev": lambda a: 10.0 if a == largest else 2.0},
        params=lambda a: 1,
        budgets=budgets,
    )


def test_hypervolume_box_spans_the_largest_and_smallest_members():
    """Quality widened by 10% of its span each way, cost from 0.9x the smallest's to 1.1x the
    largest's; both corners scored even where a budget excludes the largest."""
    evaluator = box_evaluator(
        {"largest": 2.0, "smallest": 4.0}, budgets=[Budget.latency_ms(5, "dev")]
    )
    box = hypervolume_box(evaluator)
    assert box["utopia"] == pytest.approx([1.8, 1.8])  # 2 - 0.2, 0.9 * 2 ms
    assert box["reference"] == pytest.approx([4.2, 11.0])  # 4 + 0.2, 1.1 * 10 ms
    largest = evaluator.lookup(SPACE.largest())
    assert not largest.feasible and largest.quality == 2.0 and evaluator.oracle_calls == 2
    assert [e.arch for e in evaluator.scored()] == [SPACE.smallest().to_dict()]
    # scaled by the box: (2.4, 6.4) -> (0.25, 0.5) and (3.0, 4.1) -> (0.5, 0.25); the area they
    # dominate up to (1, 1) is 0.75 * 0.5 + 0.5 * 0.25 = 0.5
    assert hypervolume([[2.4, 6.4], [3.0, 4.1]], box) == pytest.approx(0.5)
    assert hypervolume([box["utopia"]], box) == pytest.approx(1.0)
    assert hypervolume([[0.0, 0.0]], box) == pytest.approx(1.0)  # beyond the utopia: clipped
    assert hypervolume([box["reference"]], box) == 0.0
    assert hypervolume([[3.0, 12.0]], box) == 0.0  # outside the box in one objective


@pytest.mark.parametrize(
    "metric, largest, smallest, low, high",
    [
        ("bleu", 30.0, 10.0, -32.0, -8.0),  # minimised -BLEU: -30 and -10, span 20
        ("loss", 5.0, 5.0, 4.95, 5.05),  # no span: 10% of the value
        ("loss", 0.0, 0.0, -0.1, 0.1),  # nor a value: 1
    ],
)
def test_hypervolume_box_quality_range(metric, largest, smallest, low, high):
    evaluator = box_evaluator({"largest": largest, "smallest": smallest}, metric)
    box = hypervolume_box(evaluator)
    assert (box["utopia"][0], box["reference"][0]) == pytest.approx((low, high))


def test_a_search_measures_its_hypervolume_in_that_box(tmp_path, stub_oracle, predictor_files):
    stub_oracle()
    options = dict(predictors=(predictor_files["dec"],), max_latency_ms=[str(SPLIT_MS)])
    result = search(tmp_path / "search", **options)
    state = json.loads((result.out / "state.json").read_text())
    fresh = search_evaluator(search_config(checkpoint="stub", **options), tmp_path)
    box = hypervolume_box(fresh)
    assert state["box"] == box
    points = [fresh.objectives(e) for e in result.front]
    assert result.history[-1]["hypervolume"] == pytest.approx(hypervolume(points, box))
    assert 0 < result.history[-1]["hypervolume"] < 1
