"""Does a supernet's quality grow with size? A check that needs no standalone training.

A supernet that has learned something scores its larger members better: validation loss falls
with parameter count and with latency. One that has not ranks architectures by noise, and a
search on it finds a front that stops growing with size. Over `n` architectures spread evenly
over the space's parameter range (the largest, the smallest, and among 4,000 uniform samples
those nearest to parameter counts evenly spaced between theirs), this scores the validation
loss (NLL per target token, nats; BERT: masked-LM loss) and reports Spearman's rho of loss
against parameter count and against each given device's predicted latency, with a
percentile-bootstrap interval over architectures (fidelity.gap.bootstrap: paired resampling,
seeded). Strongly negative rho: quality grows with size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mos_search.arch import ArchBase
from mos_search.costs.profiling import spread_by_size
from mos_search.fidelity.gap import Interval, bootstrap
from mos_search.files import write_json_atomic


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties averaged); nan when either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def size_quality(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str | None = None,
    archs: int = 30,
    seed: int = 0,
    predictors: dict[str, str] | None = None,
    threads: int = 2,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score `archs` architectures of `checkpoint` spread over its size range; write and return
    `out/size_quality.json` (scores are cached in `out/score_cache.jsonl`, so a rerun resumes).

    `predictors` maps a device name to a latency predictor file (costs.identity.load_predictor
    checks it against the space) whose predicted milliseconds are correlated too.
    """
    from mos_search.costs.identity import load_predictor
    from mos_search.models.build import count_arch_parameters
    from mos_search.oracle.scoring import Oracle

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    oracle = Oracle(checkpoint, data, "valid", None, out / "score_cache.jsonl", threads)
    space, vocab = oracle.space, oracle.loaded.vocab_size

    def count(arch: ArchBase) -> int:
        return count_arch_parameters(space, arch, vocab)

    chosen = spread_by_size(space, count, archs, seed)
    latency = {device: load_predictor(path, space) for device, path in (predictors or {}).items()}
    rows = []
    for index, arch in enumerate(chosen, 1):
        loss = oracle.loss(arch)
        row = {"arch": arch.to_dict(), "params": count(arch), "valid_loss": loss}
        row["predicted_ms"] = {
            device: float(p.predict_ms(space.features(arch))[0]) for device, p in latency.items()
        }
        rows.append(row)
        echo(f"{index}/{len(chosen)}: {row['params'] / 1e6:.2f} M parameters, loss {loss:.4f}")
    loss = np.array([r["valid_loss"] for r in rows])
    against = {"params": np.array([r["params"] for r in rows], dtype=float)}
    against.update(
        {f"latency:{d}": np.array([r["predicted_ms"][d] for r in rows]) for d in latency}
    )
    correlations: dict[str, Interval] = {
        name: bootstrap(spearman, loss, values) for name, values in against.items()
    }
    result = {
        "checkpoint": str(checkpoint),
        "space": space.name,
        "split": "valid",
        "sentences": len(oracle.data),
        "seed": seed,
        "archs": rows,
        "spearman": {name: interval.to_dict() for name, interval in correlations.items()},
    }
    write_json_atomic(out / "size_quality.json", result)
    return result


def size_quality_lines(result: dict[str, Any]) -> list[str]:
    """A table of the correlations."""
    lines = [
        f"{len(result['archs'])} architectures of {result['space']}, validation loss on "
        f"{result['sentences']} sentences; Spearman rho, 95% bootstrap interval over archs:",
        "| loss against | rho | 95% interval |",
        "|---|---|---|",
    ]
    for name, entry in result["spearman"].items():
        value, low, high = entry["value"], entry["low"], entry["high"]
        interval = "n/a" if low is None else f"[{low:+.2f}, {high:+.2f}]"
        shown = "n/a" if value is None else f"{value:+.2f}"
        lines.append(f"| {name} | {shown} | {interval} |")
    return lines
