"""How well latency predictions match measurements: error, rank agreement, interval coverage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Accuracy:
    """How well predictions match measurements on held-out architectures (coverage: share of
    measurements inside the predictor's nominal 80% / 95% intervals; width: the intervals' mean
    width as a percentage of the prediction, so coverage bought by wide intervals shows; NaN
    without intervals)."""

    n: int
    rmse_ms: float
    mape: float
    within_5: float
    within_10: float
    kendall_tau: float
    coverage_80: float = math.nan
    coverage_95: float = math.nan
    width_80: float = math.nan
    width_95: float = math.nan

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return asdict(self)


def accuracy(
    predicted_ms: np.ndarray,
    measured_ms: np.ndarray,
    intervals: dict[float, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Accuracy:
    """RMSE, MAPE, shares within +-5% / +-10%, Kendall tau, and the coverage and mean relative
    width of `intervals` ({0.8: (low_ms, high_ms), 0.95: (...)}) when given."""
    from scipy.stats import kendalltau

    predicted_ms, measured_ms = np.asarray(predicted_ms), np.asarray(measured_ms)
    relative = np.abs(predicted_ms - measured_ms) / measured_ms
    tau = kendalltau(predicted_ms, measured_ms).statistic if len(measured_ms) > 1 else math.nan
    coverage, width = {}, {}
    for level, (low, high) in (intervals or {}).items():
        low, high = np.asarray(low), np.asarray(high)
        inside = (low <= measured_ms) & (measured_ms <= high)
        coverage[level] = float(inside.mean() * 100)
        width[level] = float(np.mean((high - low) / predicted_ms) * 100)
    return Accuracy(
        len(measured_ms),
        float(np.sqrt(np.mean((predicted_ms - measured_ms) ** 2))),
        float(relative.mean() * 100),
        float((relative <= 0.05).mean() * 100),
        float((relative <= 0.10).mean() * 100),
        float(tau),
        coverage.get(0.8, math.nan),
        coverage.get(0.95, math.nan),
        width.get(0.8, math.nan),
        width.get(0.95, math.nan),
    )
