"""Search: gene repair, cached evaluator, NSGA-II and HAT-evo, budgets, resume, report."""

from __future__ import annotations

import json
import math
import random
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from latency.predictor import LatencyPredictor
from mos_search.cli import main
from mos_search.errors import ConfigError
from mos_search.models.transformer import count_parameters
from mos_search.search.config import Budget, SearchConfig
from mos_search.search.hypervolume import hypervolume
from mos_search.search.problem import ArchEvaluator, non_dominated
from mos_search.search.report import write_report
from mos_search.search.run import open_run, run_search
from mos_search.space import load_space

from conftest import TINY_SPACE

SPACE = load_space(TINY_SPACE)
VOCAB = 64


def tiny_predictor(space=SPACE, vocab: int = VOCAB) -> LatencyPredictor:
    """An MLP fitted to a made-up latency that grows with every dimension of the model."""
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(80)]
    features = np.array([space.features(a) for a in archs])
    latency = 2.0 + features @ np.linspace(1.0, 3.0, features.shape[1])
    meta = {"space": space.name, "vocab_size": vocab, "reference_ms": None}
    return LatencyPredictor.fit(features, latency, list(space.feature_names), (16,), 0, meta)


ROOT = Path(__file__).resolve().parents[1]
PREDICTOR = tiny_predictor()


def latency_of(arch) -> float:
    return float(PREDICTOR.predict_ms(SPACE.features(arch))[0])


def synthetic_loss(arch) -> float:
    """A deterministic 'oracle': bigger models score lower loss, plus a fixed per-arch wobble."""
    params = count_parameters(arch, VOCAB, SPACE.qkv_dim)
    wobble = (zlib.crc32(arch.to_json().encode()) % 1000) / 1e5
    return 6.0 - 0.4 * math.log(params) + wobble


class CountingOracle:
    def __init__(self):
        self.calls = 0

    def __call__(self, arch):
        self.calls += 1
        return synthetic_loss(arch)


def make_evaluator(tmp_path, budget=None, oracle=None):
    return ArchEvaluator(
        SPACE,
        quality=oracle or CountingOracle(),
        metric="loss",
        costs={"dev": lambda a: float(PREDICTOR.predict_ms(SPACE.features(a))[0])},
        params=lambda a: count_parameters(a, VOCAB, SPACE.qkv_dim),
        budgets=budget or (),
        log_path=tmp_path / "evaluations.jsonl",
    )


def run(tmp_path, name, algorithm="nsga2", generations=4, population=12, budget=None, **kw):
    out = tmp_path / name
    config = SearchConfig(
        algorithm=algorithm,
        generations=generations,
        population=population,
        seed=3,
        devices=("dev",),
        budgets=tuple(budget or ()),
    )
    out, state = open_run(out, config, resume=kw.pop("resume", False))
    evaluator = make_evaluator(out, budget)
    return run_search(config, evaluator, out, state, **kw), evaluator


# ------------------------------------------------------------------ gene repair


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-2, 6, allow_nan=False), min_size=16, max_size=16))
def test_canonical_gene_is_a_member_and_idempotent(values):
    gene = SPACE.canonical_gene(values)
    arch = SPACE.from_gene(gene)  # raises if out of bounds
    assert SPACE.contains(arch)
    assert np.array_equal(SPACE.canonical_gene(gene), gene)
    assert np.array_equal(SPACE.canonical_gene(SPACE.to_gene(arch)), gene)


def test_canonical_gene_is_the_same_for_the_same_arch():
    rng = random.Random(0)
    for _ in range(50):
        arch = SPACE.sample(rng)
        a, b = SPACE._filled_gene(arch, rng), SPACE._filled_gene(arch, rng)
        assert np.array_equal(SPACE.canonical_gene(a), SPACE.canonical_gene(b))


# ------------------------------------------------------------------ evaluator


def test_evaluator_scores_once_and_skips_the_oracle_for_infeasible(tmp_path):
    oracle = CountingOracle()
    small_ms = PREDICTOR.predict_ms(SPACE.features(SPACE.smallest()))[0]
    evaluator = make_evaluator(tmp_path, [Budget.latency_ms(small_ms + 0.01, "dev")], oracle)
    first = evaluator.evaluate(SPACE.smallest())
    again = evaluator.evaluate(SPACE.smallest())
    assert first == again and oracle.calls == 1 and evaluator.cache_hits == 1
    big = evaluator.evaluate(SPACE.largest())
    assert not big.feasible and big.quality is None and oracle.calls == 1
    reloaded = make_evaluator(tmp_path, [Budget.latency_ms(small_ms + 0.01, "dev")], oracle)
    assert reloaded.evaluate(SPACE.smallest()).quality == first.quality
    assert oracle.calls == 1  # the score came from the log, not the oracle


def test_non_dominated():
    points = [[1, 5], [2, 2], [3, 3], [5, 1], [2, 2.5]]
    assert non_dominated(points) == [0, 1, 3]


def test_hypervolume_box_scaling():
    box = {"utopia": [0.0, 0.0], "reference": [2.0, 2.0]}
    assert hypervolume([[1.0, 1.0]], box) == pytest.approx(0.25)
    assert hypervolume([[3.0, 0.5]], box) == 0.0


# ------------------------------------------------------------------ algorithms


@pytest.mark.parametrize(
    "algorithm,population", [("nsga2", 12), ("hat-evo", 15), ("nsga2-assisted", 12)]
)
def test_search_is_deterministic_and_honours_budgets(tmp_path, algorithm, population):
    mid = float(
        np.median(
            [
                PREDICTOR.predict_ms(SPACE.features(SPACE.sample(random.Random(i))))
                for i in range(40)
            ]
        )
    )
    # a parameter budget that binds where the latency budget does not: half the members that
    # meet the latency budget are over it
    rng = random.Random(1)
    fast = [a for a in (SPACE.sample(rng) for _ in range(200)) if latency_of(a) <= mid]
    limit = int(np.median([count_parameters(a, VOCAB, 16) for a in fast]))
    assert any(count_parameters(a, VOCAB, 16) > limit for a in fast)
    budget = [Budget.latency_ms(mid, "dev"), Budget.params(limit)]
    a, _ = run(tmp_path, "a", algorithm, population=population, budget=budget)
    b, _ = run(tmp_path, "b", algorithm, population=population, budget=budget)
    assert [e.arch for e in a.front] == [e.arch for e in b.front]
    assert [h["hypervolume"] for h in a.history] == [h["hypervolume"] for h in b.history]
    assert a.front and all(e.costs["dev"] <= mid for e in a.front)
    assert all(e.params <= budget[1].limit for e in a.front)
    hv = [h["hypervolume"] for h in a.history]
    assert hv == sorted(hv) and hv[-1] > 0  # the archive's front never loses ground
    assert all(h["distinct"] <= h["population"] for h in a.history)
    front = json.loads((tmp_path / "a" / "front.json").read_text())
    assert len(front) == len(a.front)


def test_nsga2_improves_on_its_first_generation(tmp_path):
    result, evaluator = run(tmp_path, "r", generations=6, population=12)
    assert result.history[-1]["hypervolume"] > result.history[0]["hypervolume"]
    # every architecture reached the oracle once: calls equal the distinct scored archs
    scored_once = [e for e in evaluator.known.values() if e.quality is not None]
    assert evaluator.oracle_calls == len(scored_once) < evaluator.requests


def test_assisted_nsga2_screens_with_a_surrogate_and_records_it(tmp_path):
    """After the first generation only a quarter of the population reaches the oracle; each
    generation records the surrogate's prospective accuracy, and the state keeps what it sent
    and what it screened out. On this objective (loss falls with size) the screening finds
    as much hypervolume as plain NSGA-II with fewer oracle calls."""
    assisted, a_eval = run(tmp_path, "a", "nsga2-assisted", generations=6, population=12)
    plain, p_eval = run(tmp_path, "p", "nsga2", generations=6, population=12)
    calls = [h["oracle_calls"] for h in assisted.history]
    assert all(np.diff(calls[1:]) <= 3)  # 12 // 4 per generation after the first
    assert a_eval.oracle_calls < p_eval.oracle_calls
    later = assisted.history[1:]
    assert all(h["sent"] <= 3 and h["surrogate"]["n_train"] >= 4 for h in later)
    assert all(h["surrogate"]["mae"] >= 0 for h in later)
    state = json.loads((tmp_path / "a" / "state.json").read_text())["algorithm"]
    assert len(state["log"]) == 6 and any(g["screened"] for g in state["log"][1:])
    for generation in state["log"][1:]:
        assert len(generation["predicted"]) == generation["sent"]
    assert assisted.history[-1]["hypervolume"] >= 0.9 * plain.history[-1]["hypervolume"]


def median_latency() -> float:
    rng = random.Random(0)
    return float(
        np.median([PREDICTOR.predict_ms(SPACE.features(SPACE.sample(rng)))[0] for _ in range(40)])
    )


@pytest.mark.parametrize(
    "algorithm,population,tight",
    [
        ("nsga2", 10, False),
        ("nsga2", 10, True),
        ("hat-evo", 10, True),
        ("nsga2-assisted", 10, False),
        ("nsga2-assisted", 10, True),
        ("random", 10, True),
    ],
)
def test_resume_gives_the_uninterrupted_front(tmp_path, algorithm, population, tight):
    # a tight budget leaves infeasible members (no rank, no crowding) in NSGA-II's population
    budget = [Budget.latency_ms(median_latency() if tight else 1e9, "dev")]
    whole, whole_eval = run(tmp_path, "whole", algorithm, 5, population, budget)
    part, _ = run(tmp_path, "part", algorithm, 5, population, budget, stop_after=2)
    assert part.interrupted and part.generations_done == 2
    # a crash in generation 3: some of its scores reached the log, its state did not
    log = tmp_path / "part" / "evaluations.jsonl"
    extra = [
        line
        for line in (tmp_path / "whole" / "evaluations.jsonl").read_text().splitlines()
        if line not in log.read_text()
    ][:3]
    log.write_text(log.read_text() + "".join(x + "\n" for x in extra) + '{"arch": {"trunc')
    resumed, resumed_eval = run(tmp_path, "part", algorithm, 5, population, budget, resume=True)
    assert not resumed.interrupted
    assert [e.arch for e in resumed.front] == [e.arch for e in whole.front]
    assert resumed.history == [
        {**h, "seconds": r["seconds"]} for h, r in zip(whole.history, resumed.history)
    ]
    assert resumed_eval.counters() == whole_eval.counters()


def test_resume_refuses_changed_settings(tmp_path):
    run(tmp_path, "r", generations=1, population=6)
    config = SearchConfig(population=8, generations=1, devices=("dev",), seed=3)
    with pytest.raises(ConfigError, match="population"):
        open_run(tmp_path / "r", config, resume=True)
    with pytest.raises(ConfigError, match="already holds a search"):
        open_run(tmp_path / "r", config, resume=False)


def test_infeasible_budget_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot be met.*best of 2,049 members tried predicted"):
        run(tmp_path, "r", budget=[Budget.latency_ms(0.001, "dev")])
    with pytest.raises(ConfigError, match=r"hat-evo optimises quality under a budget"):
        run(tmp_path, "h", "hat-evo", population=10)


def test_a_budget_only_a_non_smallest_member_meets_is_searched(tmp_path):
    """The smallest member is not the fastest here: latency falls with the decoder's embed
    width. A budget only wider members meet is searched, not refused."""

    def latency(arch) -> float:
        return 100.0 - arch.decoder_embed_dim / 10 + arch.encoder_layers + arch.decoder_layers

    smallest = latency(SPACE.smallest())
    evaluator = ArchEvaluator(
        SPACE,
        quality=CountingOracle(),
        metric="loss",
        costs={"dev": latency},
        params=lambda a: count_parameters(a, VOCAB, SPACE.qkv_dim),
        budgets=[Budget.latency_ms(smallest - 0.5, "dev")],
        log_path=tmp_path / "evaluations.jsonl",
    )
    config = SearchConfig(generations=3, population=16, devices=("dev",))
    result = run_search(config, evaluator, tmp_path)
    assert result.front and all(e.costs["dev"] < smallest for e in result.front)


def test_budgets_constrain_the_upper_bound_when_there_is_one(tmp_path):
    """With bounds (the interval's upper end), a budget between mean and bound is unmet."""
    arch = SPACE.smallest()
    evaluator = ArchEvaluator(
        SPACE,
        quality=CountingOracle(),
        metric="loss",
        costs={"dev": lambda a: 10.0},
        params=lambda a: 1,
        budgets=[Budget.latency_ms(11.0, "dev")],
        bounds={"dev": lambda a: 12.0},
    )
    result = evaluator.evaluate(arch)
    assert result.costs == {"dev": 10.0} and result.bounds == {"dev": 12.0}
    assert not result.feasible and result.violations == [1.0] and result.quality is None


def test_report_files_and_self_contained_html(tmp_path):
    result, _ = run(tmp_path, "r", generations=3, population=8)
    baseline, _ = run(tmp_path, "b", "hat-evo", 2, 10, [Budget.latency_ms(1e9, "dev")])
    page = write_report(result.out, baseline.out)
    names = {p.name for p in page.parent.iterdir()}
    for stem in ("front", "hypervolume"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert {"index.html", "front.json", "front.csv"} <= names
    text = page.read_text()
    assert "<svg" in text and "hat-evo" in text
    assert 'src="http' not in text and 'href="http' not in text and "<link" not in text
    rows = json.loads((page.parent / "front.json").read_text())
    assert len(rows) == len(result.front)


# ------------------------------------------------------------------ end to end


def test_cli_search_on_a_tiny_supernet(tiny_run, tmp_path):
    from mos_search.models.build import load_model

    predictor = tmp_path / "tiny-predictor.json"
    tiny_predictor(vocab=load_model(tiny_run).vocab_size).save(predictor)
    out = tmp_path / "search"
    args = [
        "search",
        "--ckpt",
        str(tiny_run),
        "--device",
        "onnxruntime-cpu",
        "--predictor",
        str(predictor),
        "--generations",
        "2",
        "--population",
        "6",
        "--limit",
        "10",
        "--verify-limit",
        "6",
        "--verify-beam",
        "1",
        "--verify-max",
        "2",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "gen   2/2" in result.output and "verified: test BLEU" in result.output
    verified = json.loads((out / "verified.json").read_text())
    assert len(verified["archs"]) == 2
    for row in verified["archs"]:
        assert row["measured_latency_ms"]["onnxruntime-cpu"] > 0
    assert (out / "report" / "verified.svg").exists()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already holds a search" in again.output


def test_cli_search_refuses_a_predictor_of_another_vocabulary(tiny_run, tmp_path):
    predictor = tmp_path / "p.json"
    tiny_predictor(vocab=8000).save(predictor)
    result = CliRunner().invoke(
        main,
        [
            "search",
            "--ckpt",
            str(tiny_run),
            "--predictor",
            str(predictor),
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 2
    assert "8000-token vocabulary" in result.output


def test_cli_report_on_a_missing_run(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a finished search run" in result.output


def test_parallel_scoring_equals_sequential(tiny_run, tmp_path, monkeypatch):
    """A generation's candidates scored by 2 worker processes: the very same run."""
    from mos_search.models.build import load_model
    from mos_search.oracle.pool import ScoringPool

    pooled: list[int] = []
    compute = ScoringPool.compute

    def counting(self, archs, metric, beam):
        pooled.append(len(archs))
        return compute(self, archs, metric, beam)

    monkeypatch.setattr(ScoringPool, "compute", counting)

    predictor = tmp_path / "tiny-predictor.json"
    tiny_predictor(vocab=load_model(tiny_run).vocab_size).save(predictor)
    runs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"search-{workers}"
        supernet = tmp_path / f"supernet-{workers}"  # each run with its own score cache
        shutil.copytree(tiny_run, supernet, ignore=shutil.ignore_patterns("score_cache*"))
        args = [
            "search", "--ckpt", str(supernet), "--predictor", str(predictor),
            "--generations", "2", "--population", "8", "--limit", "12", "--threads", "1",
            "--workers", workers, "--no-verify", "--out", str(out),
        ]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        runs[workers] = out
    assert len(pooled) == 2 and all(n > 1 for n in pooled)  # both generations went to the pool
    for name in ("evaluations.jsonl", "front.json"):
        assert (runs["1"] / name).read_text() == (runs["2"] / name).read_text()
    sequential = json.loads((runs["1"] / "state.json").read_text())["history"]
    parallel = json.loads((runs["2"] / "state.json").read_text())["history"]
    for a, b in zip(sequential, parallel):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }


# ------------------------------------------------------------------ typed settings


def test_budgets_carry_their_units():
    assert Budget.latency_ms(80, "cpu") == Budget("latency", "ms", 80.0, "cpu")
    assert Budget.memory_mib(12).unit == "MiB" and Budget.params(5).unit == "count"
    assert Budget.memory_mib(12).cost_key == "params-fp32" and Budget.params(5).cost_key is None
    with pytest.raises(ConfigError, match="a latency budget is in ms, found unit 'MiB'"):
        Budget("latency", "MiB", 12.0, "cpu")
    with pytest.raises(ConfigError, match="--max-memory-mib -1: must be positive"):
        Budget.memory_mib(-1)
    with pytest.raises(ConfigError, match="names its device"):
        Budget("latency", "ms", 80.0)
    with pytest.raises(ConfigError, match="budget metric"):
        Budget("energy", "J", 1.0)


def test_search_config_defaults_follow_the_options():
    from mos_search.search.options import search_config

    mt = search_config(checkpoint="run", max_latency_ms=["80"], max_params=10**6)
    assert mt.quality == "loss" and mt.population == 40 and mt.objective == "bleu-latency"
    assert mt.budgets == (Budget.latency_ms(80, "onnxruntime-cpu"), Budget.params(10**6))
    assert [c.unit for c in mt.costs] == ["ms"]
    assert search_config(checkpoint="run", algorithm="hat-evo").population == 125
    bert = search_config(task="bert", checkpoint="run", max_memory_mib=12)
    assert bert.quality == "perplexity" and bert.devices == ()
    assert [(c.key, c.unit) for c in bert.costs] == [("params-fp32", "MiB")]
    assert bert.budgets == (Budget.memory_mib(12),)
    two = search_config(checkpoint="run", devices=("a", "b"), max_latency_ms=["b=30", "20"])
    assert set(two.budgets) == {Budget.latency_ms(30, "b"), Budget.latency_ms(20, "a")}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"task": "bert", "objective": "bleu-latency"}, "not an objective of --task bert"),
        ({"task": "mt", "quality": "perplexity"}, "not a metric of --task mt"),
        ({"task": "bert", "max_latency_ms": ["5"]}, "use --max-memory-mib"),
        ({"task": "bert", "memory_model": "m.json"}, "--memory-model is for --task mt"),
        ({"devices": ("board",), "max_memory_mib": 3.0}, "no memory model ships for board"),
        ({"max_latency_ms": ["other=5"]}, "'other' is not a --device"),
        ({"max_latency_ms": ["fast"]}, "expected milliseconds"),
        ({"predictors": ("a.json", "b.json")}, "2 --predictor files for 1 --device"),
        ({"workers": 0}, "--workers: expected at least 1"),
    ],
)
def test_search_config_refuses_what_does_not_fit(options, message):
    from mos_search.search.options import search_config

    with pytest.raises(ConfigError, match=message):
        search_config(checkpoint="run", **options)


def test_search_settings_round_trip_and_refuse_old_runs():
    from mos_search.search.options import search_config

    config = search_config(checkpoint="run", max_latency_ms=["80"], workers=2)
    assert SearchConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    more = search_config(checkpoint="run", max_latency_ms=["80"], workers=1, generations=40)
    assert more.resume_changes(config) == []  # generations and workers may change
    other = search_config(checkpoint="run", max_latency_ms=["70"])
    assert other.resume_changes(config) == ["budgets"]
    with pytest.raises(ConfigError, match="unknown"):
        SearchConfig.from_dict({**config.to_dict(), "dropout": 0.3})
    damaged = {**config.to_dict(), "budgets": [{"metric": "latency", "limit": 80.0}]}
    with pytest.raises(ConfigError, match="budget: missing key"):
        SearchConfig.from_dict(damaged)
    with pytest.raises(ConfigError, match=r"oracle settings: missing key.*checkpoint"):
        SearchConfig.from_dict({**config.to_dict(), "oracle": {"data": None}})


@pytest.mark.parametrize("name", ["search-cpu-small", "search-bert"])
def test_settings_of_mos_search_0_1_runs_are_read(name):
    """search.json as mos-search 0.1 wrote it (kept in bench/results): untyped `extra`, MiB
    under `max_latency_ms` for BERT."""
    old = json.loads((ROOT / "bench" / "results" / name / "search.json").read_text())
    config = SearchConfig.from_dict(old)
    assert (
        config.oracle.checkpoint == old["extra"]["checkpoint"] and config.quality == old["metric"]
    )
    assert config.task == old["extra"]["task"] and config.oracle.limit == old["extra"]["limit"]
    if name == "search-bert":
        assert config.devices == () and config.costs[0].unit == "MiB"
        old["max_latency_ms"] = {"params-fp32": 12.0}  # a BERT budget: MiB under the cost's name
        assert SearchConfig.from_dict(old).budgets == (Budget.memory_mib(12.0),)
    else:
        ((device, limit),) = old["max_latency_ms"].items()
        assert config.budgets == (Budget.latency_ms(limit, device),)


# ------------------------------------------------------------------ verification in passes


def test_measured_latency_scales_each_pass_with_its_own_reference():
    from mos_search.search.verify import measured_latency

    by_pass = {
        0: {"latency_ms": 10.0, "reference_ms": 1.0, "flagged": False},
        1: {"latency_ms": 30.0, "reference_ms": 2.0, "flagged": True},
        2: {"latency_ms": 12.0, "reference_ms": 1.0},
    }
    m = measured_latency(by_pass, reference_ms=1.0, elasticity=1.0, confidence=0.95)
    assert m["passes_raw_ms"] == [10.0, 30.0, 12.0] and m["raw_ms"] == 12.0
    assert m["passes_ms"] == [10.0, 15.0, 12.0] and m["scaled_ms"] == 12.0
    assert m["interval_ms"] == [10.0, 15.0] and m["interval_coverage"] == 0.75
    assert m["flagged_passes"] == 1
    raw = measured_latency(by_pass, reference_ms=1.0, elasticity=None, confidence=0.95)
    assert raw["passes_ms"] == raw["passes_raw_ms"]  # a predictor of raw times: no scaling


def test_verify_front_measures_in_passes_and_resumes(tiny_run, tmp_path):
    from latency.dataset import read_records
    from mos_search.models.build import load_model
    from mos_search.search.verify import verify_front

    fast = tmp_path / "fast.toml"
    fast.write_text(
        'backend = "onnxruntime-cpu"\nwarmups = 0\nrepeats = 3\ndecoder_steps = 2\nretries = 0\n'
    )
    device = str(fast)
    space = load_model(tiny_run).space
    front = [
        {"arch": a.to_dict(), "costs": {device: 5.0}} for a in (space.smallest(), space.largest())
    ]
    run = tmp_path / "run"
    run.mkdir()
    (run / "front.json").write_text(json.dumps(front))
    args = (run, str(tiny_run), None, {device: (2.0, 0.5)})
    rows = verify_front(*args, test_limit=4, beam=1, passes=2, progress=False)
    dataset = run / "measured_fast.jsonl"
    assert sorted(r["pass"] for r in read_records(dataset)) == [0, 0, 1, 1]
    verified = json.loads((run / "verified.json").read_text())
    assert verified["passes"] == 2 and verified["archs"] == rows
    for row in rows:
        passes = row["measured_passes_ms"][device]
        low, high = row["measured_interval_ms"][device]
        assert len(passes) == 2 and (low, high) == (min(passes), max(passes))
        assert low <= row["measured_scaled_ms"][device] <= high
        assert row["measured_latency_ms"][device] > 0 and "test_bleu" in row
        scaled = row["measured_scaled_ms"][device]
        error = row["latency_error_pct"][device]
        assert error == pytest.approx(100 * (5.0 - scaled) / scaled)
        assert row["predicted_latency_ms"][device] == 5.0
    verify_front(*args, test_limit=4, beam=1, passes=2, progress=False)
    assert len(read_records(dataset)) == 4  # done: nothing measured again
    rows = verify_front(*args, test_limit=4, beam=1, passes=3, progress=False)
    assert len(read_records(dataset)) == 6 and len(rows[0]["measured_passes_ms"][device]) == 3


def test_resuming_a_0_1_run_keeps_its_constraint_on_the_mean(tmp_path, monkeypatch):
    """A 0.1 search constrained the predicted mean (saved: no latency_confidence). Resuming it
    without --latency-confidence keeps that; asking for 0.9 is a change the resume refuses."""
    from click.testing import CliRunner

    from mos_search.cli import main
    from mos_search.search.run import saved_config

    run = tmp_path / "run"
    run.mkdir()
    saved = (ROOT / "bench" / "results" / "search-cpu-small" / "search.json").read_text()
    (run / "search.json").write_text(saved)
    assert saved_config(run).latency_confidence is None and saved_config(tmp_path) is None
    monkeypatch.chdir(tmp_path)  # the saved checkpoint, runs/cpu-small-neuron, is absent here
    args = ["search", "--ckpt", "runs/cpu-small-neuron", "--max-latency-ms", "80"]
    args += ["--generations", "15", "--out", str(run), "--resume"]
    result = CliRunner().invoke(main, [*args, "--latency-confidence", "0.9"])
    assert result.exit_code == 2 and "differ from the saved run in latency_confidence" in (
        result.output
    )
    assert (run / "search.json").read_text() == saved  # nothing rewritten by a refused resume
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "no checkpoint at" in result.output  # past the resume check


def test_the_report_shows_screened_points_and_every_algorithm(tmp_path):
    """An assisted run's report marks what its surrogate screened out (at its optimistic
    quality) beside what the oracle scored, and draws the hypervolume of every run given."""
    import matplotlib

    from mos_search.search.report import load_run, report_figures, screened_points

    matplotlib.use("Agg")
    run(tmp_path, "assisted", "nsga2-assisted", generations=4, population=12)
    run(tmp_path, "nsga2", "nsga2", generations=4, population=12)
    run(tmp_path, "random", "random", generations=4, population=12)
    runs = [load_run(tmp_path / name) for name in ("assisted", "nsga2", "random")]
    log = runs[0]["state"]["algorithm"]["log"]
    screened = sum(len(g["screened"]) for g in log)
    assert screened > 0 and len(screened_points(runs[0], 0)) == screened
    assert screened_points(runs[1], 0) == []  # plain NSGA-II screens nothing
    figures = report_figures(runs)
    labels = [c.get_label() for c in figures["front"].axes[0].collections]
    assert sum("screened out" in label for label in labels) == 1
    hypervolume = figures["hypervolume"].axes[0]
    assert len([line for line in hypervolume.lines if line.get_label() != "_nolegend_"]) == 3
    page = write_report(tmp_path / "assisted", [tmp_path / "nsga2", tmp_path / "random"])
    assert (page.parent / "front.png").is_file()
