"""Pick one architecture from a finished search run: the best verified one, or by rank."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mos_search.arch import read_arch_file
from mos_search.errors import ConfigError
from mos_search.files import read_json
from mos_search.search.config import QUALITY_SIGN, Budget, SearchConfig


def pick_from_search(run_dir: str | Path, pick: str) -> dict[str, Any]:
    """An architecture from a finished search: `best` or the N-th of the front (1-based, the
    report's rank).

    `best` under a latency budget is the best test score among the verified architectures whose
    measured latency (the upper end of its interval over the verification passes, at the
    predictor's reference speed) meets every latency budget; when none does, a ConfigError
    names the closest and nothing is picked. Without latency budgets it is the best verified
    test score (BLEU, or perplexity for BERT), else the best search quality.
    """
    run_dir = Path(run_dir)
    front_path = run_dir / "front.json"
    if not front_path.is_file():
        raise ConfigError(f"{run_dir} has no front.json: not a finished search run")
    front = read_json(front_path)
    if pick != "best":
        return front[_rank(pick, len(front)) - 1]["arch"]
    config = SearchConfig.from_dict(read_json(run_dir / "search.json"))
    latency_budgets = [b for b in config.budgets if b.metric == "latency"]
    rank_of = {json.dumps(p["arch"], sort_keys=True): i for i, p in enumerate(front, 1)}
    verified_path = run_dir / "verified.json"
    verified = []
    if verified_path.is_file():
        rows = read_json(verified_path)["archs"]
        verified = [v for v in rows if json.dumps(v["arch"], sort_keys=True) in rank_of]
    if latency_budgets:
        if not verified:
            raise ConfigError(
                f"{run_dir}: the front was not measured (verified.json), so no architecture is "
                "known to meet the latency budget; search again without --no-verify, or choose "
                "one yourself with --pick RANK"
            )
        verified = _within_budget(verified, latency_budgets, rank_of)
    if verified and "test_perplexity" in verified[0]:
        return min(verified, key=lambda v: v["test_perplexity"])["arch"]
    if verified:
        return max(verified, key=lambda v: v["test_bleu"])["arch"]
    sign = QUALITY_SIGN[config.quality]
    return min(front, key=lambda p: sign * p[config.quality])["arch"]


def measured_upper_ms(row: dict[str, Any], device: str) -> float:
    """The upper end of a verified architecture's measured latency on `device` (ms, at the
    predictor's reference speed): the highest upper end of a pass's interval; rows written
    before that field have the highest pass median, rows of mos-search 0.1 the median only."""
    for field in ("measured_upper_ms", "measured_interval_ms"):
        value = row.get(field, {}).get(device)
        if value is not None:
            return float(value[1] if isinstance(value, list) else value)
    return float(row["measured_scaled_ms"][device])


def _within_budget(
    verified: list[dict[str, Any]], budgets: list[Budget], rank_of: dict[str, int]
) -> list[dict[str, Any]]:
    """The verified rows whose measured upper bound meets every budget; if none, an error that
    names the closest."""

    def worst(row: dict[str, Any]) -> float:
        return max(measured_upper_ms(row, b.device) / b.limit for b in budgets)

    within = [row for row in verified if worst(row) <= 1.0]
    if within:
        return within
    closest = min(verified, key=worst)
    misses = ", ".join(
        f"{measured_upper_ms(closest, b.device):.1f} ms against {b.describe()}" for b in budgets
    )
    rank = rank_of[json.dumps(closest["arch"], sort_keys=True)]
    raise ConfigError(
        f"no verified architecture was measured within the latency budget; the closest (rank "
        f"{rank}) measured {misses} (upper end over its passes). Nothing exported: loosen "
        f"--max-latency-ms and search again, or export it anyway with --pick {rank}"
    )


def _rank(pick: str, size: int) -> int:
    try:
        index = int(pick)
    except ValueError:
        raise ConfigError(f"--pick: expected 'best' or a rank, found {pick!r}") from None
    if not 1 <= index <= size:
        raise ConfigError(f"--pick {index}: the front has {size} architectures")
    return index


def chosen_arch(arch_file: str | None, from_search: str | None, pick: str) -> dict[str, Any]:
    """The architecture in `--arch FILE` (one JSON object) or picked from a search run
    (`--from-search DIR --pick`): exactly one of the two."""
    if (arch_file is None) == (from_search is None):
        raise ConfigError("give exactly one of --arch FILE and --from-search DIR")
    if from_search is not None:
        return pick_from_search(from_search, pick)
    return read_arch_file(arch_file)[0]
