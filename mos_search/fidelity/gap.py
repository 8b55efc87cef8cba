"""Supernet fidelity: how close a sub-network's supernet score is to what it reaches trained
alone (the MoS paper's claim: architecture-routed experts narrow that gap).

For each supernet and each standalone run (one architecture trained alone), the architecture is
scored on the validation split twice: inherited from the supernet and standalone. Translation:
loss (NLL per target token) and greedy BLEU on `bleu_limit` sentences spread over the split;
BERT: masked-LM loss (fixed masks) and perplexity. Per supernet and metric: the mean absolute
and mean signed gap (inherited - standalone) and Kendall's tau (tau-b) between the two
rankings, each with a percentile-bootstrap confidence interval over architectures
(`scipy.stats.bootstrap`, paired resampling of architectures, seeded). Per supernet beside the
reference (weight sharing where it is compared): the change of the mean absolute gap, on the
same resamples of the same architectures (negative: this supernet narrows the gap; an interval
that holds 0 is no evidence either way). With few architectures the intervals are wide: that
is the point of printing them. Source of the comparison: Jawahar et al., "Mixture-of-Supernets"
(2023), Table 2 (mean absolute BLEU gap, WMT'14 En-De: neuron-wise MoS 0.87, weight sharing 1.14).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mos_search.arch import ArchBase
from mos_search.errors import ConfigError
from mos_search.files import write_json_atomic

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap confidence interval; nan bounds where there is none (fewer
    than two architectures, an undefined statistic, or most resamples undefined)."""

    value: float
    low: float
    high: float
    undefined: int = 0  # resamples where the statistic was undefined, left out of the interval

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready form (nan as null)."""

        def number(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "value": number(self.value),
            "low": number(self.low),
            "high": number(self.high),
            "undefined": self.undefined,
        }


def bootstrap(
    statistic: Callable[..., float], *samples: Sequence[float], resamples: int = RESAMPLES
) -> Interval:
    """`statistic(*samples)` and its percentile-bootstrap interval at CONFIDENCE, resampling the
    architectures (the samples' common index) with a fixed seed. Resamples where the statistic
    is undefined (nan: a Kendall tau of one repeated architecture, or of tied scores) are left
    out and counted; with more than half of them undefined there is no interval."""
    from scipy.stats import bootstrap as scipy_bootstrap

    with warnings.catch_warnings():  # undefined and degenerate resamples are handled below
        warnings.simplefilter("ignore")
        arrays = [np.asarray(s, dtype=float) for s in samples]
        value = statistic(*arrays)
        if len(arrays[0]) < 2 or math.isnan(value):
            return Interval(value, math.nan, math.nan)
        result = scipy_bootstrap(
            arrays,
            statistic,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            confidence_level=CONFIDENCE,
            method="percentile",
            random_state=np.random.default_rng(SEED),
        )
    distribution = np.asarray(result.bootstrap_distribution, dtype=float)
    defined = distribution[~np.isnan(distribution)]
    undefined = int(distribution.size - defined.size)
    if defined.size * 2 < distribution.size:
        return Interval(value, math.nan, math.nan, undefined)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return Interval(value, float(low), float(high), undefined)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two score lists (nan when one is constant)."""
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def gap_row(
    inherited: Sequence[float], standalone: Sequence[float], resamples: int = RESAMPLES
) -> dict[str, Any]:
    """Mean absolute and signed gap (inherited - standalone) and Kendall tau, with intervals."""
    diffs = [a - b for a, b in zip(inherited, standalone)]
    return {
        "mean_abs": bootstrap(
            lambda d: float(np.mean(np.abs(d))), diffs, resamples=resamples
        ).to_dict(),
        "mean_signed": bootstrap(lambda d: float(np.mean(d)), diffs, resamples=resamples).to_dict(),
        "kendall_tau": bootstrap(kendall_tau, inherited, standalone, resamples=resamples).to_dict(),
    }


def gap_change(
    inherited: Sequence[float],
    reference: Sequence[float],
    standalone: Sequence[float],
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """mean |inherited - standalone| - mean |reference - standalone| over the same
    architectures, with a paired bootstrap interval (negative: `inherited` is closer)."""

    def change(a: np.ndarray, r: np.ndarray, s: np.ndarray) -> float:
        return float(np.mean(np.abs(a - s)) - np.mean(np.abs(r - s)))

    return bootstrap(change, inherited, reference, standalone, resamples=resamples).to_dict()


def _reference(supernets: dict[str, Path]) -> str:
    """The label of the first weight-sharing supernet, else the first label."""
    from mos_search.models.checkpoint import read_state

    for label, run in supernets.items():
        if read_state(run).get("train_config", {}).get("mode") == "shared":
            return label
    return next(iter(supernets))


def _scores(run: Path, archs: list[ArchBase], data: str | None, bleu_limit: int) -> dict:
    """{"loss": [...], QUALITY: [...]} of `archs` from the checkpoint `run`."""
    from mos_search.oracle.scoring import Oracle

    whole = Oracle(run, data, "valid")
    if whole.task == "bert":
        losses = [whole.loss(a) for a in archs]
        return {"loss": losses, "perplexity": [whole.perplexity(a) for a in archs]}
    limited = Oracle(run, data, "valid", limit=bleu_limit)
    return {
        "loss": [whole.loss(a) for a in archs],
        "bleu": [limited.bleu(a, beam=1).score for a in archs],
    }


def standalone_arch(run: Path) -> ArchBase:
    """The architecture a standalone run trained; a ConfigError for a supernet."""
    from mos_search.models.build import load_model

    archs = load_model(run).archs()
    if not archs:
        raise ConfigError(f"{run} is a supernet; --standalone takes runs of one architecture")
    return archs[0]


def fidelity(
    supernets: dict[str, Path],
    standalones: list[Path],
    out: str | Path,
    data: str | None = None,
    bleu_limit: int = 500,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """Score every standalone run's architecture standalone and inherited from each supernet;
    write `OUT/fidelity.json` and `OUT/fidelity.png` (inherited vs standalone, per metric);
    return the JSON's content."""
    if not supernets or not standalones:
        raise ConfigError("fidelity needs at least one supernet and one standalone run")
    archs = [standalone_arch(run) for run in standalones]
    standalone: dict[str, list[float]] = {}
    for run, arch in zip(standalones, archs):
        for metric, values in _scores(run, [arch], data, bleu_limit).items():
            standalone.setdefault(metric, []).append(values[0])
    inherited = {label: _scores(run, archs, data, bleu_limit) for label, run in supernets.items()}
    metrics = list(standalone)
    table = {
        label: {m: gap_row(scores[m], standalone[m], resamples) for m in metrics}
        for label, scores in inherited.items()
    }
    reference = _reference(supernets)
    change = {
        label: {
            m: gap_change(scores[m], inherited[reference][m], standalone[m], resamples)
            for m in metrics
        }
        for label, scores in inherited.items()
        if label != reference
    }
    result = {
        "supernets": {label: str(run) for label, run in supernets.items()},
        "standalones": [str(run) for run in standalones],
        "archs": [a.to_dict() for a in archs],
        "metrics": metrics,
        "bleu": f"greedy, {bleu_limit} validation sentences spread over the split"
        if "bleu" in metrics
        else None,
        "confidence": CONFIDENCE,
        "resamples": resamples,
        "standalone": standalone,
        "inherited": inherited,
        "table": table,
        "reference": reference,
        "gap_change": change,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "fidelity.json", result)
    scatter_plot(result, out / "fidelity.png")
    return result


def scatter_plot(result: dict[str, Any], path: Path) -> None:
    """Inherited against standalone score of every architecture, one colour per supernet, with
    the line y = x (no gap), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = result["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.6))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        xs = result["standalone"][metric]
        for label, scores in result["inherited"].items():
            gap = result["table"][label][metric]["mean_abs"]
            ax.scatter(xs, scores[metric], s=22, label=f"{label} (|gap| {gap['value']:.3g})")
        values = xs + [v for s in result["inherited"].values() for v in s[metric]]
        low, high = min(values), max(values)
        ax.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
        ax.set_xlabel(f"standalone {metric}")
        ax.set_ylabel(f"inherited from the supernet: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def table_lines(result: dict[str, Any]) -> list[str]:
    """The gap table as text: per supernet and metric, value [interval]; then each supernet's
    change of the mean absolute gap beside the reference."""

    def number(x: float | None, digits: int) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    def cell(entry: dict[str, Any], digits: int) -> str:
        text = f"{number(entry['value'], digits)} [{number(entry['low'], digits)}, "
        text += f"{number(entry['high'], digits)}]"
        undefined = entry.get("undefined", 0)
        return text + (f" ({undefined} resamples undefined)" if undefined else "")

    n = len(result["archs"])
    lines = [
        f"{n} architectures; {int(result['confidence'] * 100)}% bootstrap intervals over them "
        f"({result['resamples']} resamples); gap = inherited - standalone"
    ]
    for label, row in result["table"].items():
        for metric, entry in row.items():
            digits = 3 if metric == "loss" else 2
            lines.append(
                f"{label:<14}{metric:<11}|gap| {cell(entry['mean_abs'], digits)}  "
                f"gap {cell(entry['mean_signed'], digits)}  tau {cell(entry['kendall_tau'], 2)}"
            )
    reference = result.get("reference")
    for label, row in result.get("gap_change", {}).items():
        for metric, entry in row.items():
            digits = 3 if metric == "loss" else 2
            lines.append(
                f"{label:<14}{metric:<11}|gap| - |gap of {reference}| {cell(entry, digits)}"
            )
    return lines


def train_standalones(
    archs: list[ArchBase], space: str, data: str, out: Path, **options: Any
) -> list[Path]:
    """Train each architecture alone in `out/standalone-I` (a `mos-search train --arch` run
    with `options`: max_steps, minutes, lr, warmup, max_tokens, threads, device, ...);
    resumable: a finished run is kept, an interrupted one continues, and a run trained with
    other settings (architecture, lr, ...) is refused with a ConfigError."""
    from mos_search.models.checkpoint import read_state
    from mos_search.training.config import TrainConfig, resumed_config
    from mos_search.training.train import train

    runs = []
    for index, arch in enumerate(archs):
        run = out / f"standalone-{index}"
        config = TrainConfig(
            data=data, out=str(run), space=space, arch=arch.to_dict(), valid_every=0, **options
        )
        resume = (run / "checkpoints").exists()
        if resume:  # a run of another architecture or recipe is not this one's standalone
            wanted = {k: v for k, v in config.to_dict().items() if k != "out"}
            try:
                resumed_config(run, **wanted)
            except ConfigError as error:
                raise ConfigError(
                    f"{run} was trained otherwise ({error}); give another --out"
                ) from None
        if not resume or read_state(run)["step"] < config.max_steps:
            result = train(config, resume=resume)
            if result.interrupted:
                raise KeyboardInterrupt
        runs.append(run)
    return runs
