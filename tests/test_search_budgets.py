"""Search budgets that decide: each of --max-params, --max-latency-ms and --max-memory-mib alone
excludes what the search would otherwise keep, and two devices' latencies trade off.

The searches run the real wiring of `mos-search search` (`search_config` -> `search_task` ->
`search_evaluator`: exact parameter counts and memory, predictors loaded from files, bounds at
the search's confidence) with a stub in place of the checkpoint's oracle, so they take
milliseconds per architecture. The predictors are written by hand (`log_linear_predictor`), so
which architectures a latency budget excludes is known exactly.
"""

from __future__ import annotations

import functools
import math
import random
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from latency.predictor import LatencyPredictor, Member
from mos_search.arch import ArchBase
from mos_search.models.bert import bert_parameter_bytes
from mos_search.models.build import count_arch_parameters
from mos_search.search import objectives
from mos_search.search.objectives import search_evaluator, search_task
from mos_search.search.options import search_config
from mos_search.search.problem import Evaluation
from mos_search.search.run import SearchResult
from mos_search.space import SearchSpace, load_space

from conftest import TINY_SPACE

SPACE = load_space(TINY_SPACE)
BERT_SPACE = load_space(str(Path(__file__).with_name("tiny-bert.toml")))
VOCAB = 64


# ------------------------------------------------------------------ helpers


def log_linear_predictor(
    base_ms: float, slopes: dict[str, float], space: SearchSpace = SPACE, vocab: int = VOCAB
) -> LatencyPredictor:
    """A predictor of exactly `base_ms * exp(sum slope * feature)` over the space's normalised
    features (`space.features`), with zero residuals, so its upper bound equals its mean at every
    confidence. Nothing is fitted: it is made in microseconds."""
    names = list(space.feature_names)
    n = len(names)
    quadratic = np.zeros(1 + n + n * (n + 1) // 2)  # [1, x_i, x_i * x_j]: see quadratic_terms
    quadratic[0] = math.log(base_ms)
    for name, slope in slopes.items():
        quadratic[1 + names.index(name)] = slope
    member = Member(quadratic, [np.zeros((n, 1))], [np.zeros(1)])  # an MLP that adds 0
    meta = {"space": space.name, "vocab_size": vocab, "reference_ms": None}
    return LatencyPredictor(names, np.zeros(n), np.ones(n), [member, member], np.zeros(20), meta)


# Two devices that rank architectures differently; a 15 ms budget splits each on its own field.
# "enc": 20 ms * exp(3 (f - 1) + 0.5 (g - 0.5)), f = encoder width / 24, g = mean encoder FFN / 32:
#   narrow encoders (16) 7.4-9.4 ms, wide ones (24) 20-25.7 ms, whatever the decoder.
ENC_SLOPES = {"encoder_embed_dim": 3.0, "encoder_ffn_dims": 0.5}
ENC = log_linear_predictor(20.0 * math.exp(-3.25), ENC_SLOPES)
# "dec": 20 ms * exp(2 (f - 1) + 0.5 (g - 0.5)), f = decoder layers / 2, g = mean decoder FFN / 32:
#   one decoder layer 7.4-9.4 ms, two layers 20-25.7 ms, whatever the encoder.
DEC_SLOPES = {"decoder_layers": 2.0, "decoder_ffn_dims": 0.5}
DEC_BASE_MS = 20.0 * math.exp(-2.25)
DEC = log_linear_predictor(DEC_BASE_MS, DEC_SLOPES)
SPLIT_MS = 15.0
# the largest member with a narrow encoder: fast on "enc", slow on "dec"; and the largest with one
# decoder layer: the other way round
LARGEST = SPACE.largest().to_dict()
NARROW_DEEP = SPACE.arch_from_dict({**LARGEST, "encoder_embed_dim": 16})
ONE_LAYER = {
    k: v[:1] for k, v in LARGEST.items() if k.startswith("decoder_") and isinstance(v, list)
}
WIDE_SHALLOW = SPACE.arch_from_dict({**LARGEST, **ONE_LAYER, "decoder_layers": 1})


def params_of(arch: ArchBase, space: SearchSpace = SPACE) -> int:
    """Parameters as the search counts them."""
    return count_arch_parameters(space, arch, VOCAB)


def stub_score(space: SearchSpace, arch: ArchBase, metric: str) -> float:
    """Made-up scores of known direction: bigger models score better (lower loss and perplexity,
    higher BLEU), plus a fixed per-arch wobble that breaks ties."""
    wobble = (zlib.crc32(arch.to_json().encode()) % 1000) / 1e5
    size = math.log(params_of(arch, space))
    if metric == "bleu":
        return 4.0 * size + 100 * wobble
    loss = 6.0 - 0.4 * size + wobble
    return math.exp(loss) if metric == "perplexity" else loss


class StubOracle:
    """What `search_evaluator` asks of a checkpoint's oracle: its task, space and vocabulary, and
    `score`, which records the metric and beam it was asked for."""

    def __init__(self, space: SearchSpace, task: str) -> None:
        self.space, self.task = space, task
        self.loaded = SimpleNamespace(vocab_size=VOCAB)
        self.asked: list[tuple[str, int]] = []

    def score(self, arch: ArchBase, metric: str, beam: int = 5) -> float:
        self.asked.append((metric, beam))
        return stub_score(self.space, arch, metric)


def install_stub_oracle(monkeypatch, space: SearchSpace = SPACE, task: str = "mt") -> StubOracle:
    """A `StubOracle` (mt on the tiny space by default) put in as every search's oracle."""
    oracle = StubOracle(space, task)
    monkeypatch.setattr(objectives, "search_oracle", lambda settings: oracle)
    return oracle


def save_predictors(folder: Path) -> dict[str, str]:
    """The hand-made predictors saved in `folder`: {"enc": path, "dec": path}."""
    paths = {}
    for name, predictor in (("enc", ENC), ("dec", DEC)):
        paths[name] = str(folder / f"{name}.json")
        predictor.save(paths[name])
    return paths


@pytest.fixture
def stub_oracle(monkeypatch):
    """`install(space=SPACE, task="mt")` puts a `StubOracle` in as every search's oracle."""
    return functools.partial(install_stub_oracle, monkeypatch)


@pytest.fixture
def predictor_files(tmp_path):
    return save_predictors(tmp_path / "predictors")


def search(out: Path, **options) -> SearchResult:
    """`mos-search search --no-verify` with these options (of `search_config`), no report."""
    settings = dict(checkpoint="stub", generations=3, population=12, seed=1)
    config = search_config(**{**settings, **options})
    return search_task(config, out, verify=None, report=False, echo=lambda line: None)


def violations_of(arch: ArchBase, out: Path, **options) -> dict[str, float]:
    """Each budget's violation (> 0: unmet) of `arch` under the settings of these options."""
    config = search_config(checkpoint="stub", **options)
    evaluator = search_evaluator(config, out)
    return {b.name: v for b, v in zip(config.budgets, evaluator.constraints(arch).violations)}


def arch_of(evaluation: Evaluation, space: SearchSpace = SPACE) -> ArchBase:
    return space.arch_from_dict(evaluation.arch)


def memory_mib(arch: ArchBase) -> float:
    return bert_parameter_bytes(arch, VOCAB) / 2**20


# ------------------------------------------------------------------ the premise


def ms(predictor: LatencyPredictor, arch: ArchBase) -> float:
    return float(predictor.predict_ms(SPACE.features(arch))[0])


def test_the_hand_made_predictors_split_the_space_each_on_its_own_field():
    """The premise of the tests below: 15 ms splits wide from narrow encoders on "enc", two
    decoder layers from one on "dec", and the upper bound is the mean."""
    for predictor in (ENC, DEC):
        assert ms(predictor, SPACE.largest()) == pytest.approx(20.0 * math.exp(0.25))
        assert ms(predictor, SPACE.smallest()) == pytest.approx(20.0 * math.exp(-1.0))
        for arch in (SPACE.largest(), NARROW_DEEP, WIDE_SHALLOW):
            bound = float(predictor.upper_ms(SPACE.features(arch), 0.9)[0])
            assert bound == pytest.approx(ms(predictor, arch))
    assert ms(ENC, NARROW_DEEP) < SPLIT_MS < ms(DEC, NARROW_DEEP)
    assert ms(DEC, WIDE_SHALLOW) < SPLIT_MS < ms(ENC, WIDE_SHALLOW)


# ------------------------------------------------------------------ each budget alone decides


def assert_budget_alone_decides(
    tmp_path: Path,
    budget: str,
    value,
    limit: float,
    others: dict,
    tight: dict,
    space: SearchSpace = SPACE,
) -> None:
    """Without the budget (the other budgets `others`, loose) the front holds an architecture X
    over `limit`; with it (`tight` added) no front member is over it, and X's only unmet budget
    is `budget`: it, and only it, excludes X."""
    without = search(tmp_path / "without", **others)
    x = max(without.front, key=value)
    assert value(x) > limit, "the search without the budget should keep X"
    within = search(tmp_path / "with", **others, **tight)
    assert within.front and all(value(e) <= limit for e in within.front)
    assert x.arch not in [e.arch for e in within.front]
    violations = violations_of(arch_of(x, space), tmp_path / "check", **others, **tight)
    assert len(violations) >= 2  # the other budgets were there, and X met them
    assert {name for name, v in violations.items() if v > 0} == {budget}


def median(values) -> float:
    return float(np.median(list(values)))


def test_max_params_alone_excludes_the_largest_models(tmp_path, stub_oracle, predictor_files):
    stub_oracle()
    rng = random.Random(0)
    limit = int(median(params_of(SPACE.sample(rng)) for _ in range(200)))
    others = dict(predictors=(predictor_files["dec"],), max_latency_ms=["1000"])
    assert_budget_alone_decides(
        tmp_path, "params", lambda e: e.params, limit, others, dict(max_params=limit)
    )


def test_max_latency_ms_alone_excludes_the_slow_models(tmp_path, stub_oracle, predictor_files):
    stub_oracle()
    device = "onnxruntime-cpu"
    others = dict(predictors=(predictor_files["dec"],), max_params=10**9)
    tight = dict(max_latency_ms=[str(SPLIT_MS)])
    assert_budget_alone_decides(
        tmp_path, f"latency[{device}]", lambda e: e.bounds[device], SPLIT_MS, others, tight
    )


def test_max_memory_mib_alone_excludes_the_largest_bert_encoders(tmp_path, stub_oracle):
    stub_oracle(BERT_SPACE, "bert")
    rng = random.Random(0)
    limit = median(memory_mib(BERT_SPACE.sample(rng)) for _ in range(200))
    others = dict(task="bert", max_params=10**9)
    assert_budget_alone_decides(
        tmp_path,
        "memory",
        lambda e: e.costs["params-fp32"],
        limit,
        others,
        dict(max_memory_mib=limit),
        BERT_SPACE,
    )


# ------------------------------------------------------------------ two devices


def test_two_devices_trade_off_and_each_latency_budget_binds_alone(
    tmp_path, stub_oracle, predictor_files
):
    """ "enc" is slow for wide encoders, "dec" for two decoder layers: the front trades one
    device against the other, and a budget on either limits that device only."""
    stub_oracle()
    two = dict(devices=("enc", "dec"), predictors=(predictor_files["enc"], predictor_files["dec"]))
    free = search(tmp_path / "free", **two)
    costs = [e.costs for e in free.front]
    assert all(set(c) == {"enc", "dec"} for c in costs)
    assert any(a["enc"] < b["enc"] and a["dec"] > b["dec"] for a in costs for b in costs)

    on_dec = search(tmp_path / "dec", **two, max_latency_ms=[f"dec={SPLIT_MS}"])
    assert on_dec.front and all(e.bounds["dec"] <= SPLIT_MS for e in on_dec.front)
    assert any(e.costs["enc"] > SPLIT_MS for e in on_dec.front)  # "enc" is left free

    on_enc = search(tmp_path / "enc", **two, max_latency_ms=[str(SPLIT_MS)])  # the first device
    assert on_enc.front and all(e.bounds["enc"] <= SPLIT_MS for e in on_enc.front)
    assert any(e.costs["dec"] > SPLIT_MS for e in on_enc.front)  # "dec" is left free
