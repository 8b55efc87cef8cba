"""The measuring protocol: warm-ups, repeats, a robust statistic, spread, retries, and a reference.

A measurement whose spread (relative inter-quartile range) exceeds the profile's `max_spread` is
repeated up to `retries` times and then kept with `flagged = True`. When a reference workload is
given, it is timed interleaved with the measured one (one reference run after each measured run),
so each record carries the machine's speed at that moment and drift can be divided out later.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from devices import Device, DeviceProfile
from devices.profile import STATISTICS


def trimmed_mean(samples: list[float], trim: float) -> float:
    """Mean after dropping the lowest and highest `trim` fraction."""
    ordered = sorted(samples)
    cut = int(len(ordered) * trim)
    kept = ordered[cut : len(ordered) - cut] or ordered
    return sum(kept) / len(kept)


def robust_statistic(samples: list[float], statistic: str, trim: float = 0.1) -> float:
    """Median or trimmed mean (dropping `trim` of the samples at each end) of run times."""
    if statistic == "median":
        return statistics.median(samples)
    if statistic == "trimmed_mean":
        return trimmed_mean(samples, trim)
    raise ValueError(f"statistic: expected one of {', '.join(STATISTICS)}, found {statistic!r}")


def relative_iqr(samples: list[float]) -> float:
    """(Q3 - Q1) / median: the spread of run times, scale-free."""
    q1, q3 = np.percentile(samples, [25, 75])
    return float((q3 - q1) / statistics.median(samples))


@dataclass(frozen=True)
class Measurement:
    """One architecture's latency on one device (seconds)."""

    seconds: float
    spread: float
    attempts: int
    flagged: bool
    samples: list[float]
    reference_seconds: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def measure(
    device: Device,
    work: Callable[[], object],
    profile: DeviceProfile,
    reference: tuple[Device, Callable[[], object]] | None = None,
) -> Measurement:
    """Time `work` on `device` following `profile`; optionally interleave a reference workload."""
    for _ in range(profile.warmups):
        work()
        if reference is not None:
            reference[0].time(reference[1])
    attempts = 0
    while True:
        attempts += 1
        samples, ref_samples = [], []
        for _ in range(profile.repeats):
            samples.append(device.time(work))
            if reference is not None:
                ref_samples.append(reference[0].time(reference[1]))
        spread = relative_iqr(samples)
        if spread <= profile.max_spread or attempts > profile.retries:
            break
    seconds = robust_statistic(samples, profile.statistic, profile.trim)
    ref = robust_statistic(ref_samples, profile.statistic, profile.trim) if ref_samples else None
    return Measurement(seconds, spread, attempts, spread > profile.max_spread, samples, ref)
