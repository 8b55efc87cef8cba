"""Pick one architecture from a finished search run: the best verified one, or by rank."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mos_search.errors import ConfigError
from mos_search.files import read_json
from mos_search.search.config import QUALITY_SIGN, SearchConfig


def pick_from_search(run_dir: str | Path, pick: str) -> dict[str, Any]:
    """An architecture from a finished search: `best` (test BLEU or perplexity if verified, else
    the search's quality) or the N-th of the front (1-based, the report's rank)."""
    run_dir = Path(run_dir)
    front_path = run_dir / "front.json"
    if not front_path.is_file():
        raise ConfigError(f"{run_dir} has no front.json: not a finished search run")
    front = json.loads(front_path.read_text())
    if pick != "best":
        try:
            index = int(pick)
        except ValueError:
            raise ConfigError(f"--pick: expected 'best' or a rank, found {pick!r}") from None
        if not 1 <= index <= len(front):
            raise ConfigError(f"--pick {index}: the front has {len(front)} architectures")
        return front[index - 1]["arch"]
    verified_path = run_dir / "verified.json"
    if verified_path.is_file():
        on_front = {json.dumps(p["arch"], sort_keys=True) for p in front}
        verified = [
            v
            for v in json.loads(verified_path.read_text())["archs"]
            if json.dumps(v["arch"], sort_keys=True) in on_front
        ]
        if verified and "test_perplexity" in verified[0]:
            return min(verified, key=lambda v: v["test_perplexity"])["arch"]
        if verified:
            return max(verified, key=lambda v: v["test_bleu"])["arch"]
    metric = SearchConfig.from_dict(json.loads((run_dir / "search.json").read_text())).quality
    sign = QUALITY_SIGN[metric]
    return min(front, key=lambda p: sign * p[metric])["arch"]


def chosen_arch(arch_file: str | None, from_search: str | None, pick: str) -> dict[str, Any]:
    """The architecture in `--arch FILE` (one JSON object) or picked from a search run
    (`--from-search DIR --pick`): exactly one of the two."""
    if (arch_file is None) == (from_search is None):
        raise ConfigError("give exactly one of --arch FILE and --from-search DIR")
    if from_search is not None:
        return pick_from_search(from_search, pick)
    arch = read_json(arch_file)
    if not isinstance(arch, dict):
        raise ConfigError(f"{arch_file}: expected one architecture (a JSON object)")
    return arch
