"""Pick one architecture from a finished search run: the best verified one, or by rank.

`best` respects noise: a verified translation candidate whose test BLEU is not significantly
different from the best one's (sacreBLEU's paired bootstrap resampling over the test sentences,
p >= 0.05; Koehn 2004, "Statistical significance tests for machine translation evaluation") is
a tie, and among the ties the pick takes the one with the most latency slack. `best-quality` takes
the highest test score whatever the noise.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latency.dataset import arch_key
from mos_search.arch import read_arch_file
from mos_search.errors import ConfigError
from mos_search.files import read_json, write_json_atomic
from mos_search.search.config import QUALITY_SIGN, Budget, SearchConfig
from mos_search.settings import naming_file

PICKS = ("best", "best-quality")
TIE_P_VALUE = 0.05  # candidates with p >= this against the best are ties
BOOTSTRAP_RESAMPLES = 1000  # sacreBLEU's default for its paired bootstrap test
HYPOTHESES_FILE = "verified_hypotheses.json"
PAIRED_TEST = (
    "paired bootstrap resampling of corpus BLEU over the test sentences (sacreBLEU "
    "significance.PairedTest, test_type bs, {n} resamples, seed {seed}); p >= {p} is a tie"
)


@dataclass(frozen=True)
class PickDecision:
    """Which architecture was picked, by what rule, and (for `best`) the test and the ties.

    `ties` lists the rank, test BLEU, p-value against the best and latency slack (1 - measured
    upper / budget, the tightest budget; None without latency budgets) of every tie, the best
    one first (its p-value None).
    """

    arch: dict[str, Any]
    rule: str
    best_quality_rank: int | None = None
    test: str | None = None
    ties: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the model card keeps under `pick`)."""
        return {k: v for k, v in asdict(self).items() if k != "arch"}

    def write_into_card(self, model_dir: str | Path, run_dir: str | Path | None = None) -> None:
        """Add this decision to the card of an exported model (atomically), with the search
        run's day calibration (`calibration.json` of `--calibrate N`) where it made one."""
        card_path = Path(model_dir) / "card.json"
        card = {**read_json(card_path), "pick": self.to_dict()}
        calibration = Path(run_dir) / "calibration.json" if run_dir else None
        if calibration is not None and calibration.is_file():
            card["calibration"] = read_json(calibration)
        write_json_atomic(card_path, card)


def pick_from_search(run_dir: str | Path, pick: str) -> dict[str, Any]:
    """The architecture `pick_decision` picks."""
    return pick_decision(run_dir, pick).arch


def pick_decision(run_dir: str | Path, pick: str) -> PickDecision:
    """An architecture from a finished search: `best`, `best-quality` or the N-th of the front
    (1-based, the report's rank).

    Under a latency budget only verified architectures whose measured latency (the upper end of
    its interval over the verification passes, at the predictor's reference speed) meets every
    latency budget are candidates; when none does, a ConfigError names the closest and nothing
    is picked. `best-quality` is the best test score among the candidates (BLEU, or perplexity
    for BERT), else the best search quality. `best` is the same for BERT and unverified fronts;
    for verified translation candidates it takes, among those tied with the best (see the module
    docstring), the one with the most latency slack (the lowest measured upper latency without
    a budget).
    """
    run_dir = Path(run_dir)
    front_path = run_dir / "front.json"
    if not front_path.is_file():
        raise ConfigError(f"{run_dir} has no front.json: not a finished search run")
    front = read_json(front_path)
    if pick not in PICKS:
        index = _rank(pick, len(front))
        return PickDecision(front[index - 1]["arch"], "rank", index)
    with naming_file(run_dir / "search.json"):
        config = SearchConfig.from_dict(read_json(run_dir / "search.json"))
    measured_budgets = [b for b in config.budgets if b.metric in MEASURED_METRICS]
    rank_of = {arch_key(p["arch"]): i for i, p in enumerate(front, 1)}
    verified_path = run_dir / "verified.json"
    verified = []
    if verified_path.is_file():
        rows = read_json(verified_path)["archs"]
        verified = [v for v in rows if arch_key(v["arch"]) in rank_of]
    if measured_budgets:
        if not verified:
            raise ConfigError(
                f"{run_dir}: the front was not measured (verified.json), so no architecture is "
                "known to meet the budget; search again without --no-verify, or choose "
                "one yourself with --pick RANK"
            )
        verified = _within_budget(verified, measured_budgets, rank_of)

    def rank(row: dict[str, Any]) -> int:
        return rank_of[arch_key(row["arch"])]

    if verified and "test_perplexity" in verified[0]:
        best = min(verified, key=lambda v: v["test_perplexity"])
        return PickDecision(best["arch"], "best-quality", rank(best), note=BERT_NOTE)
    if not verified:
        sign = QUALITY_SIGN[config.quality]
        best = min(front, key=lambda p: sign * p[config.quality])
        note = "no verified architectures: the best search quality"
        return PickDecision(best["arch"], "best-quality", rank(best), note=note)
    best = max(verified, key=lambda v: v["test_bleu"])
    if pick == "best-quality":
        return PickDecision(best["arch"], "best-quality", rank(best))
    hypotheses_path = run_dir / HYPOTHESES_FILE
    if not hypotheses_path.is_file():
        note = f"no {HYPOTHESES_FILE} (verified before it existed): the best test BLEU"
        return PickDecision(best["arch"], "best-quality", rank(best), note=note)
    return _noise_aware(best, verified, read_json(hypotheses_path), measured_budgets, rank)


BERT_NOTE = "BERT: the best test perplexity (no per-sentence test is made for perplexity)"


def _noise_aware(
    best: dict[str, Any],
    candidates: list[dict[str, Any]],
    stored: dict[str, Any],
    budgets: list[Budget],
    rank: Any,
) -> PickDecision:
    """Among the candidates tied with `best` (paired bootstrap, p >= TIE_P_VALUE), the one with
    the most latency slack."""
    hypotheses, references = stored["hypotheses"], stored["references"]
    others = [c for c in candidates if c is not best]
    p_values = paired_bootstrap_p_values(
        hypotheses[arch_key(best["arch"])],
        [hypotheses[arch_key(c["arch"])] for c in others],
        references,
    )

    def slack(row: dict[str, Any]) -> float | None:
        if not budgets:
            return None
        return 1.0 - max(measured_value(row, b) / b.limit for b in budgets)

    def fastest_first(row: dict[str, Any]) -> float:
        if budgets:
            return -slack(row)
        return max(measured_upper_ms(row, device) for device in row["measured_scaled_ms"])

    tied = [(best, None)] + [(c, p) for c, p in zip(others, p_values) if p >= TIE_P_VALUE]
    chosen = min(tied, key=lambda pair: fastest_first(pair[0]))[0]
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    test = PAIRED_TEST.format(n=BOOTSTRAP_RESAMPLES, seed=seed, p=TIE_P_VALUE)
    ties = [
        {"rank": rank(row), "test_bleu": row["test_bleu"], "p_value": p, "slack": slack(row)}
        for row, p in tied
    ]
    return PickDecision(chosen["arch"], "best", rank(best), test, ties)


def paired_bootstrap_p_values(
    baseline: list[str], systems: list[list[str]], references: list[str]
) -> list[float]:
    """p-value of each system's corpus BLEU differing from the baseline's by chance: sacreBLEU's
    paired bootstrap resampling (Koehn 2004; BOOTSTRAP_RESAMPLES resamples, the seed
    SACREBLEU_SEED, default 12345), two-sided on |BLEU difference|. A system whose output is
    the baseline's, line for line, gets p = 1 (sacreBLEU's test counts a zero difference as
    significant)."""
    differing = [i for i, hyps in enumerate(systems) if list(hyps) != list(baseline)]
    p_values = [1.0] * len(systems)  # identical output: no difference (sacreBLEU gives p ~ 0)
    if not differing:
        return p_values
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    named = [("baseline", baseline), *((f"system-{i}", systems[i]) for i in differing)]
    test = PairedTest(
        named, {"BLEU": BLEU()}, [references], test_type="bs", n_samples=BOOTSTRAP_RESAMPLES
    )
    _, scores = test()
    for i, result in zip(differing, scores["BLEU"][1:]):
        p_values[i] = float(result.p_value)
    return p_values


def measured_upper_ms(row: dict[str, Any], device: str) -> float:
    """The upper end of a verified architecture's measured latency on `device` (ms, at the
    predictor's reference speed): the highest upper end of a pass's interval; rows written
    before that field have the highest pass median, rows of mos-search 0.1 the median only."""
    for name in ("measured_upper_ms", "measured_interval_ms"):
        value = row.get(name, {}).get(device)
        if value is not None:
            return float(value[1] if isinstance(value, list) else value)
    return float(row["measured_scaled_ms"][device])


MEASURED_METRICS = ("latency", "peak-memory")  # budgets verification measures


def measured_value(row: dict[str, Any], budget: Budget) -> float:
    """What verification measured of `row` against `budget`: the upper end of its latency on
    the budget's device (`measured_upper_ms`), or its peak memory (MiB)."""
    if budget.metric != "peak-memory":
        return measured_upper_ms(row, budget.device)
    if row.get("measured_peak_memory_mib") is None:
        raise ConfigError(
            f"{budget.flag}: the front was verified without measuring peak memory; verify it "
            "again (search with --resume after removing verified.json)"
        )
    return float(row["measured_peak_memory_mib"])


def _within_budget(
    verified: list[dict[str, Any]], budgets: list[Budget], rank_of: dict[str, int]
) -> list[dict[str, Any]]:
    """The verified rows whose measurements (latency's upper bound, peak memory) meet every
    budget; if none, an error that names the closest."""

    def worst(row: dict[str, Any]) -> float:
        return max(measured_value(row, b) / b.limit for b in budgets)

    within = [row for row in verified if worst(row) <= 1.0]
    if within:
        return within
    closest = min(verified, key=worst)
    misses = ", ".join(
        f"{measured_value(closest, b):.1f} {b.unit} against {b.describe()}" for b in budgets
    )
    rank = rank_of[arch_key(closest["arch"])]
    flags = " / ".join(sorted({b.flag for b in budgets}))
    raise ConfigError(
        f"no verified architecture was measured within the budget; the closest (rank "
        f"{rank}) measured {misses} (latency: upper end over its passes). Nothing exported: "
        f"loosen {flags} and search again, or export it anyway with --pick {rank}"
    )


def _rank(pick: str, size: int) -> int:
    try:
        index = int(pick)
    except ValueError:
        raise ConfigError(
            f"--pick: expected best, best-quality or a rank, found {pick!r}"
        ) from None
    if not 1 <= index <= size:
        raise ConfigError(f"--pick {index}: the front has {size} architectures")
    return index


def chosen_arch(arch_file: str | None, from_search: str | None, pick: str) -> PickDecision:
    """The architecture in `--arch FILE` (one JSON object) or picked from a search run
    (`--from-search DIR --pick`): exactly one of the two."""
    if (arch_file is None) == (from_search is None):
        raise ConfigError("give exactly one of --arch FILE and --from-search DIR")
    if from_search is not None:
        return pick_decision(from_search, pick)
    return PickDecision(read_arch_file(arch_file)[0], "arch-file")
