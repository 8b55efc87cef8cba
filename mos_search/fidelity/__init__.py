"""How far the supernet's scores can be trusted as an oracle: against standalone training
(`gap`: the gap and Kendall tau, supernet vs standalone) and, without standalones, whether quality
grows with size (`size_quality`: Spearman rho of validation loss with parameters and predicted
latency).

May import: the core modules, `arch`, `space`, `data`, `models`, `training` (standalones),
`oracle` (scores), `costs` (latency predictors) and the lower packages.
"""

from mos_search.fidelity.gap import (
    Interval,
    bootstrap,
    fidelity,
    gap_change,
    gap_row,
    kendall_tau,
    table_lines,
    train_standalones,
)

__all__ = [
    "Interval",
    "bootstrap",
    "fidelity",
    "gap_change",
    "gap_row",
    "kendall_tau",
    "table_lines",
    "train_standalones",
]
