"""The measuring protocol: warm-ups, repeats, a robust statistic with its confidence interval,
spread, retries, a reference, and comparisons that alternate run by run.

A measurement whose spread (relative inter-quartile range) exceeds the profile's `max_spread` is
repeated up to `retries` times and then kept with `flagged = True`. When a reference workload is
given, it is timed interleaved with the measured one (one reference run after each measured run),
so each record carries the machine's speed at that moment and drift can be divided out later:
`reference_ratio` is the median of the per-round ratios t_i / r_i (each run over the reference run
right after it), which divides out load that comes and goes within seconds, not only slow drift.
Rounds alternate the order of the measured workloads (A, B, reference, then B, A, reference), so
neither always runs first after the reference (an ABBA design).

Interval of the median (distribution-free, from order statistics). Sort the n repeats,
x(1) <= ... <= x(n). The number B of repeats below the true median is Binomial(n, 1/2), so
[x(l), x(n+1-l)] covers the median with probability

    P(l) = 1 - 2 * P(B <= l - 1) = 1 - 2 * sum_{i=0}^{l-1} C(n, i) / 2**n

(exact for continuous times, whatever their distribution). We take the largest l with
P(l) >= the profile's `confidence`; when even l = 1 falls short (n < 6 at 0.95, or a few
passes) the interval is [min, max] and `coverage` holds its smaller P(1) = 1 - 2 * 0.5**n.
n = 20 at 0.95: [x(6), x(15)], P = 0.959; n = 10: [x(2), x(9)], P = 0.979.
Source: W. J. Conover, Practical Nonparametric Statistics, 3rd ed. (1999), sec. 3.2 (confidence
interval for a quantile); also Hahn & Meeker, Statistical Intervals (1991), sec. 5.2.

Interval of the trimmed mean: a percentile bootstrap (2,000 resamples of the repeats drawn with a
fixed seed, so the same samples always give the same interval); its coverage is nominal.

Comparisons (`measure_pair`): A and B alternate run by run (A, B, reference, B, A, reference,
...; warm-ups likewise), so drift and load hit both alike, and the ratio B/A is the median of
the per-round ratios b_i / a_i, with the same order-statistic interval over those ratios.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from devices import Device, DeviceProfile
from devices.profile import STATISTICS

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

Run = tuple[Device, Callable[[], object]]  # a loaded device and the work it times


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
class Interval:
    """A confidence interval [low, high] and the probability it covers the true value."""

    low: float
    high: float
    coverage: float  # exact for the order-statistic interval, nominal for the bootstrap


def median_coverage(n: int, rank: int) -> float:
    """P(x(rank) <= median <= x(n+1-rank)) = 1 - 2 P(B <= rank - 1), B ~ Binomial(n, 1/2)."""
    below = sum(math.comb(n, i) for i in range(rank))  # exact integers: no rounding
    return 1.0 - 2.0 * below / 2**n


def median_interval(samples: Sequence[float], confidence: float) -> Interval:
    """Order-statistic interval of the median at `confidence` (formula in the module docstring)."""
    if len(samples) == 0:
        raise ValueError("median_interval: no samples")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a value in (0, 1), found {confidence}")
    ordered, n = sorted(samples), len(samples)
    rank = 1
    while rank + 1 <= (n + 1) // 2 and median_coverage(n, rank + 1) >= confidence:
        rank += 1
    return Interval(ordered[rank - 1], ordered[n - rank], median_coverage(n, rank))


def bootstrap_trimmed_mean_interval(
    samples: Sequence[float], trim: float, confidence: float
) -> Interval:
    """Percentile-bootstrap interval of the trimmed mean (fixed seed: reproducible)."""
    values = np.asarray(samples, dtype=float)
    n = len(values)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = np.sort(values[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))], axis=1)
    cut = int(n * trim)
    kept = resampled[:, cut : n - cut] if n - 2 * cut > 0 else resampled
    means = kept.mean(axis=1)  # (resamples,)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(low), float(high), confidence)


def statistic_interval(samples: Sequence[float], profile: DeviceProfile) -> Interval:
    """The interval of the profile's statistic at the profile's confidence."""
    if profile.statistic == "trimmed_mean":
        return bootstrap_trimmed_mean_interval(samples, profile.trim, profile.confidence)
    return median_interval(samples, profile.confidence)


@dataclass(frozen=True)
class Measurement:
    """One architecture's latency on one device (seconds), with the statistic's interval."""

    seconds: float
    spread: float
    attempts: int
    flagged: bool
    samples: list[float]
    reference_seconds: float | None = None
    low_seconds: float = math.nan
    high_seconds: float = math.nan
    coverage: float = math.nan  # probability that [low, high] covers the true statistic
    reference_ratio: float | None = None  # median over rounds of t_i / reference t_i
    reference_samples: list[float] = field(default_factory=list)  # round i's reference run

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PairMeasurement:
    """A and B measured alternately; `ratio` = B / A from the paired runs, with its interval."""

    a: Measurement
    b: Measurement
    ratio: float
    ratio_low: float
    ratio_high: float
    ratio_coverage: float
    ratios: list[float]  # b_i / a_i of each round

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _summarize(
    samples: list[float],
    spread: float,
    attempts: int,
    ref_samples: list[float],
    profile: DeviceProfile,
) -> Measurement:
    """The profile's statistic, its interval and the reference's statistic of one run's samples."""
    interval = statistic_interval(samples, profile)
    ref = robust_statistic(ref_samples, profile.statistic, profile.trim) if ref_samples else None
    ratio = statistics.median(t / r for t, r in zip(samples, ref_samples)) if ref_samples else None
    return Measurement(
        seconds=robust_statistic(samples, profile.statistic, profile.trim),
        spread=spread,
        attempts=attempts,
        flagged=spread > profile.max_spread,
        samples=samples,
        reference_seconds=ref,
        low_seconds=interval.low,
        high_seconds=interval.high,
        coverage=interval.coverage,
        reference_ratio=ratio,
        reference_samples=list(ref_samples),
    )


def measure_interleaved(
    runs: Sequence[Run], profile: DeviceProfile, reference: Run | None = None
) -> list[Measurement]:
    """Time several workloads round by round (each once per round, the order reversed every other
    round, then the reference once); retried while any spread exceeds `max_spread`. One
    measurement per workload, all sharing the reference's statistic; repeat i of every workload
    comes from round i."""
    if not runs:
        raise ValueError("measure_interleaved: nothing to measure")
    timed = [*runs, reference] if reference is not None else list(runs)
    for _ in range(profile.warmups):
        for _device, work in timed:
            work()
    attempts = 0
    while True:
        attempts += 1
        samples: list[list[float]] = [[] for _ in runs]
        ref_samples: list[float] = []
        for round_index in range(profile.repeats):
            order = range(len(runs)) if round_index % 2 == 0 else reversed(range(len(runs)))
            for i in order:
                device, work = runs[i]
                samples[i].append(device.time(work))
            if reference is not None:
                ref_samples.append(reference[0].time(reference[1]))
        spreads = [relative_iqr(s) for s in samples]
        if max(spreads) <= profile.max_spread or attempts > profile.retries:
            break
    return [_summarize(s, sp, attempts, ref_samples, profile) for s, sp in zip(samples, spreads)]


def measure(
    device: Device,
    work: Callable[[], object],
    profile: DeviceProfile,
    reference: Run | None = None,
) -> Measurement:
    """Time `work` on `device` following `profile`; optionally interleave a reference workload."""
    return measure_interleaved([(device, work)], profile, reference)[0]


def paired_ratio(a: Measurement, b: Measurement, confidence: float) -> PairMeasurement:
    """B / A from measurements taken in the same rounds: median of b_i / a_i and its interval."""
    if len(a.samples) != len(b.samples) or a.attempts != b.attempts:
        raise ValueError("paired_ratio: a and b must come from one interleaved measurement")
    ratios = [tb / ta for ta, tb in zip(a.samples, b.samples)]
    interval = median_interval(ratios, confidence)
    return PairMeasurement(
        a, b, statistics.median(ratios), interval.low, interval.high, interval.coverage, ratios
    )


def measure_pair(
    device_a: Device,
    work_a: Callable[[], object],
    device_b: Device,
    work_b: Callable[[], object],
    profile: DeviceProfile,
    reference: Run | None = None,
) -> PairMeasurement:
    """A and B alternately (A, B, reference, B, A, reference, ...): both measurements and the
    paired B/A."""
    a, b = measure_interleaved([(device_a, work_a), (device_b, work_b)], profile, reference)
    return paired_ratio(a, b, profile.confidence)
