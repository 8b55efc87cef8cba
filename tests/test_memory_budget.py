"""Peak deployment memory for translation: the weights the graphs hold, the measurement of a real
ONNX Runtime session, the memory model fitted on profiled records, and `--max-memory-mib` binding
alone, together with the latency and parameter limits, and in the pick.

A peak-memory budget constrains the memory model's conformal upper bound in the search (a bound,
not an objective) and the measured peak memory of every verified architecture in the pick.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from test_search_budgets import (
    ENC,
    SPACE,
    SPLIT_MS,
    VOCAB,
    assert_budget_alone_decides,
    install_stub_oracle,
    median,
    ms,
    params_of,
    save_predictors,
    search,
)

from devices import DeviceError, load_profile
from latency.memory import bundle_peak_memory
from latency.memory_model import MemoryModel, MemoryModelError
from mos_search.cli import main
from mos_search.costs.memory import translation_memory_terms
from mos_search.costs.profiling import ArchModels, translation_bundle
from mos_search.errors import ConfigError
from mos_search.models.onnx import export_onnx
from mos_search.search.config import PEAK_MEMORY_COST, Budget, SearchConfig
from mos_search.search.options import search_config
from mos_search.search.pick import pick_from_search

from conftest import TINY_SPACE

TERMS = ("embedding_mib", "matmul_mib")


@pytest.fixture
def stub_oracle(monkeypatch):
    return lambda: install_stub_oracle(monkeypatch)


@pytest.fixture
def predictor_files(tmp_path):
    return save_predictors(tmp_path / "predictors")


ONNXRUNTIME = (0.9, 1.8)  # about what the shipped model fitted: matrices held twice
TABLES = (1.0, 0.1)  # a device whose memory the embedding tables decide


def exact_memory_model(path: Path, coefficients=ONNXRUNTIME, margin: float = 0.0) -> str:
    """A memory model of exactly `20 + c_e embedding + c_m matmul` MiB, its conformal margin
    `margin` at every confidence: nothing fitted, the bound known in advance."""
    meta = {"vocab_size": VOCAB}
    MemoryModel(list(coefficients), 20.0, [margin] * 50, list(TERMS), meta).save(path)
    return str(path)


def peak_bound(arch, coefficients=ONNXRUNTIME) -> float:
    terms = translation_memory_terms(arch, VOCAB, SPACE.qkv_dim)
    return 20.0 + coefficients[0] * terms["embedding_mib"] + coefficients[1] * terms["matmul_mib"]


# ------------------------------------------------------------------ what the graphs hold


@pytest.mark.parametrize("which", ["smallest", "largest", "sample"])
def test_memory_terms_match_the_exported_initializers(tmp_path, which):
    """Differential: the analytic weights of both graphs vs the exported ONNX initializers."""
    space = SPACE
    arch = space.sample(random.Random(4)) if which == "sample" else getattr(space, which)()
    model = ArchModels(space, VOCAB).model(arch)
    values = 0
    for path in export_onnx(model, tmp_path):
        values += sum(int(np.prod(i.dims)) for i in onnx.load(str(path)).graph.initializer)
    terms = translation_memory_terms(arch, VOCAB, space.qkv_dim)
    analytic = (terms["embedding_mib"] + terms["matmul_mib"]) * 2**20 / 4
    # the rest are normalisation vectors the exporter folds: 0.1% at cpu-small, 2.5% here
    assert values <= analytic <= 1.03 * values


# ------------------------------------------------------------------ the measurement


def test_a_larger_model_takes_more_peak_memory_repeatably(tmp_path):
    """Real ONNX Runtime sessions in fresh processes: the largest member of the tiny space at a
    vocabulary big enough to see, against its smallest, each measured twice."""
    models, profile = ArchModels(SPACE, 20000), load_profile("onnxruntime-cpu")
    peaks = {}
    for which in ("smallest", "largest"):
        bundle = translation_bundle(models.model(getattr(SPACE, which)()), "onnx", tmp_path / which)
        runs = [bundle_peak_memory(bundle, profile)["peak_inference_mib"] for _ in range(2)]
        assert abs(runs[0] - runs[1]) < 1.0
        peaks[which] = runs[0]
    assert peaks["largest"] > peaks["smallest"] + 1.0  # 20,000 x (24 - 16) x 4 x 3 bytes more


def test_peak_memory_is_refused_on_a_device_it_cannot_be_measured_on(tmp_path):
    bundle = translation_bundle(ArchModels(SPACE, VOCAB).model(SPACE.smallest()), "onnx", tmp_path)
    with pytest.raises(DeviceError, match="torch-cpu runs on torch-cpu"):
        bundle_peak_memory(bundle, load_profile("torch-cpu"))


# ------------------------------------------------------------------ the model


def synthetic_records(n: int, seed: int, noise_mib: float = 1.0) -> list[dict]:
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(n):
        terms = {"embedding_mib": rng.uniform(2, 10), "matmul_mib": rng.uniform(1, 30)}
        peak = 15 + 0.9 * terms["embedding_mib"] + 1.8 * terms["matmul_mib"]
        records.append({"memory_terms": terms, "peak_memory_mib": peak + rng.normal(0, noise_mib)})
    return records


def test_the_model_recovers_the_weights_and_its_bound_covers_at_its_confidence(tmp_path):
    model = MemoryModel.fit(synthetic_records(200, seed=0))
    assert model.term_names == list(TERMS)
    assert model.coefficients == pytest.approx([0.9, 1.8], abs=0.05)
    fresh = synthetic_records(2000, seed=1)
    for confidence in (0.8, 0.95):
        covered = np.mean(
            [r["peak_memory_mib"] <= model.upper_mib(r["memory_terms"], confidence) for r in fresh]
        )
        assert abs(covered - confidence) < 0.04
    model.save(tmp_path / "m.json")
    again = MemoryModel.load(tmp_path / "m.json")
    assert again.predict_mib({"embedding_mib": 5, "matmul_mib": 5}) == pytest.approx(
        model.predict_mib({"embedding_mib": 5, "matmul_mib": 5})
    )


def test_the_model_refuses_too_few_records_other_terms_and_foreign_files(tmp_path):
    with pytest.raises(MemoryModelError, match="at least 10 are needed"):
        MemoryModel.fit(synthetic_records(5, seed=0))
    mixed = synthetic_records(20, seed=0)
    mixed[3]["memory_terms"] = {"embedding_mib": 1.0}
    with pytest.raises(MemoryModelError, match="same memory_terms"):
        MemoryModel.fit(mixed)
    (tmp_path / "latency.json").write_text(json.dumps({"kind": "latency"}))
    with pytest.raises(MemoryModelError, match="not a memory model"):
        MemoryModel.load(tmp_path / "latency.json")
    with pytest.raises(MemoryModelError, match="needs the terms"):
        MemoryModel.fit(synthetic_records(20, seed=0)).predict_mib({"embedding_mib": 1.0})


def test_profile_memory_then_predictor_memory_end_to_end(tmp_path):
    """The CLI: profile --memory writes peak memory and the terms; predictor memory fits them;
    with --remote, --memory is one line and exit code 2."""
    runner, dataset = CliRunner(), tmp_path / "memory.jsonl"
    args = ["profile", "--space", TINY_SPACE, "-n", "10", "--vocab-size", "500", "--memory"]
    done = runner.invoke(main, [*args, "--no-reference", "--out", str(dataset)])
    assert done.exit_code == 0, done.output
    records = [json.loads(line) for line in dataset.read_text().splitlines()]
    assert len(records) == 10
    assert all(r["peak_memory_mib"] > 0 and set(r["memory_terms"]) == set(TERMS) for r in records)
    out = tmp_path / "memory-model.json"
    done = runner.invoke(
        main, ["predictor", "memory", "--dataset", str(dataset), "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert "10 records" in done.output and "upper bound at 90%" in done.output
    assert MemoryModel.load(out).meta["vocab_size"] == 500
    refused = runner.invoke(main, [*args, "--remote", "ssh://nobody@127.0.0.1"])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1
    assert "--memory" in refused.output


# ------------------------------------------------------------------ the search


def test_a_peak_memory_budget_needs_a_translation_search_and_a_model():
    with pytest.raises(ConfigError, match="--memory-model"):
        SearchConfig(budgets=(Budget.peak_memory_mib(50.0),))
    with pytest.raises(ConfigError, match="--memory-model is for --task mt"):
        search_config(checkpoint="stub", memory_model="m.json")
    shipped = search_config(checkpoint="stub", max_memory_mib=60.0)
    assert shipped.memory_model.endswith("onnxruntime-cpu/memory.json")
    with pytest.raises(ConfigError, match="no memory model ships for dev"):
        search_config(checkpoint="stub", devices=("dev",), max_memory_mib=60.0)


def test_max_memory_mib_alone_excludes_the_models_over_the_peak_memory_bound(
    tmp_path, stub_oracle, predictor_files
):
    stub_oracle()
    model = exact_memory_model(tmp_path / "memory.json")
    rng = random.Random(0)
    limit = median(peak_bound(SPACE.sample(rng)) for _ in range(200))
    others = dict(predictors=(predictor_files["dec"],), max_latency_ms=["1000"], max_params=10**9)
    assert_budget_alone_decides(
        tmp_path,
        "peak-memory",
        lambda e: peak_bound(SPACE.arch_from_dict(e.arch)),
        limit,
        others,
        dict(max_memory_mib=limit, memory_model=model),
    )


def test_the_bound_adds_the_conformal_margin(tmp_path, stub_oracle, predictor_files):
    stub_oracle()
    model = exact_memory_model(tmp_path / "memory.json", margin=3.0)
    options = dict(predictors=(predictor_files["dec"],), max_memory_mib=1e6, memory_model=model)
    result = search(tmp_path / "run", **options)
    for e in result.front:
        assert e.bounds[PEAK_MEMORY_COST] == pytest.approx(
            peak_bound(SPACE.arch_from_dict(e.arch)) + 3
        )


def test_all_three_limits_hold_together_and_each_one_binds(tmp_path, stub_oracle, predictor_files):
    """Latency (narrow encoders), parameters (40% quantile) and peak memory (30% quantile, on a
    device whose tables decide it) at once, each excluding members the other two let through:
    every front member meets all three."""
    stub_oracle()
    model = exact_memory_model(tmp_path / "memory.json", TABLES)
    rng = random.Random(0)
    sample = [SPACE.sample(rng) for _ in range(300)]
    memory = float(np.quantile([peak_bound(a, TABLES) for a in sample], 0.3))
    limits = dict(
        predictors=(predictor_files["enc"],),
        max_latency_ms=[str(SPLIT_MS)],
        max_params=int(np.quantile([params_of(a) for a in sample], 0.4)),
        max_memory_mib=memory,
        memory_model=model,
    )
    checks = {
        "latency": lambda a: ms(ENC, a) <= SPLIT_MS,
        "params": lambda a: params_of(a) <= limits["max_params"],
        "memory": lambda a: peak_bound(a, TABLES) <= memory,
    }
    for name, check in checks.items():  # each excludes members the other two let through
        others = [c for n, c in checks.items() if n != name]
        assert any(all(c(a) for c in others) and not check(a) for a in sample), name
    result = search(tmp_path / "all", **limits)
    assert result.front
    for e in result.front:
        assert e.bounds["onnxruntime-cpu"] <= SPLIT_MS
        assert e.params <= limits["max_params"]
        assert e.bounds[PEAK_MEMORY_COST] <= memory
        assert all(check(SPACE.arch_from_dict(e.arch)) for check in checks.values())


# ------------------------------------------------------------------ the pick


def test_the_pick_judges_peak_memory_on_its_measurement(tmp_path):
    """Budgets 10 ms and 50 MiB: the best BLEU within latency is over on measured memory (though
    its bound was within); the next is picked. Without any measurement of memory, refused."""
    memory = (Budget.peak_memory_mib(50.0), Budget.latency_ms(10.0, "dev"))
    config = SearchConfig(devices=("dev",), budgets=memory, memory_model="m.json")
    front = [{"arch": {"n": n}, "loss": 5.0, "costs": {"dev": 1.0}} for n in (1, 2, 3)]

    def row(n: int, bleu: float, ms: float, mib: float | None) -> dict:
        out = {"arch": {"n": n}, "test_bleu": bleu, "measured_scaled_ms": {"dev": ms / 2}}
        out |= {"measured_upper_ms": {"dev": ms}, "predicted_peak_memory_mib": 45.0}
        return out if mib is None else out | {"measured_peak_memory_mib": mib}

    run = tmp_path / "run"
    run.mkdir()
    (run / "search.json").write_text(json.dumps(config.to_dict()))
    (run / "front.json").write_text(json.dumps(front))
    verified = [row(1, 30.0, 9.0, 51.0), row(2, 25.0, 9.5, 49.0), row(3, 35.0, 11.0, 40.0)]
    (run / "verified.json").write_text(json.dumps({"archs": verified}))
    assert pick_from_search(run, "best-quality") == {"n": 2}
    verified = [row(n, 20.0 + n, 5.0, None) for n in (1, 2, 3)]
    (run / "verified.json").write_text(json.dumps({"archs": verified}))
    with pytest.raises(ConfigError, match="without measuring peak memory"):
        pick_from_search(run, "best-quality")
