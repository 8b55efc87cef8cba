"""Profiling: measure many architectures on one device and append one record per architecture
(per architecture and pass when measuring in passes, as verification does).

Every record holds the protocol's statistic (`latency_ms`) with its confidence interval
(`low_ms`, `high_ms`, `interval_coverage`: see `latency.protocol`), the spread and flag, the
samples and the interleaved reference (`reference_ms`).

Knows nothing of MoS: the caller hands over architectures as dicts and functions that turn one
into a model bundle, a feature vector and a parameter count.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices import Device, DeviceProfile, ModelBundle
from latency.dataset import append_record, arch_key, measured_keys, read_records
from latency.environment import environment
from latency.protocol import Measurement, measure
from latency.workloads import workload_for

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass
class ProfileRun:
    """What a profiling call did."""

    measured: int
    skipped: int
    flagged: int
    interrupted: bool
    dataset: Path


PLAIN_EVERY_S = 30.0  # a plain progress line this often when the output is not a terminal


class PlainProgress:
    """What a rich bar shows, as a plain line every `PLAIN_EVERY_S` and at the end, for output
    that is not a terminal (a log file, `make demo > demo.log`), where a live bar prints nothing
    until it ends: `profile onnxruntime-cpu 12/80  38.1 ms  elapsed 1:02  ETA 5:14`."""

    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.clock = label, clock
        self.total, self.done, self.printed_done, self.status = 0, 0, 0, ""
        self.started = self.printed = clock()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.done != self.printed_done:  # the end, unless the last line already showed it
            self._line()

    def add_task(self, _name: str, total: int, status: str = "") -> int:
        self.total, self.status = total, status
        return 0

    def update(self, _task: int, advance: int = 0, status: str = "") -> None:
        self.done, self.status = self.done + advance, status
        if self.clock() - self.printed >= PLAIN_EVERY_S:
            self._line()

    def _line(self) -> None:
        self.printed, self.printed_done = (now := self.clock()), self.done
        spent = now - self.started
        left = spent / self.done * (self.total - self.done) if self.done else 0.0
        print(
            f"{self.label} {self.done}/{self.total}  {self.status}  elapsed {_clock(spent)}  "
            f"ETA {_clock(left)}",
            flush=True,
        )


def _clock(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour."""
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class NoProgress:
    """Shows nothing (and needs no `rich`: the measuring agent runs without it)."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, _name: str, total: int, status: str = "") -> int:
        return 0

    def update(self, _task: int, advance: int = 0, status: str = "") -> None:
        pass


def progress_bar(label: str, enabled: bool) -> Progress | PlainProgress | NoProgress:
    """A rich progress bar (done/total, the last latency, elapsed and remaining time) on a
    terminal; plain lines (`PlainProgress`) when the output is redirected; nothing when not
    `enabled`. `label` starts each line (`profile onnxruntime-cpu`)."""
    if not enabled:
        return NoProgress()
    if not sys.stdout.isatty():
        return PlainProgress(label)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    return Progress(*columns)


def measurement_fields(result: Measurement) -> dict[str, Any]:
    """A measurement's fields of a dataset record, in milliseconds."""
    return {
        "latency_ms": result.seconds * 1000,
        "low_ms": result.low_seconds * 1000,
        "high_ms": result.high_seconds * 1000,
        "interval_coverage": result.coverage,
        "spread": result.spread,
        "flagged": result.flagged,
        "attempts": result.attempts,
        "samples_ms": [s * 1000 for s in result.samples],
        "reference_ms": (
            None if result.reference_seconds is None else result.reference_seconds * 1000
        ),
        # round i's reference run, right after measured run i: per-round ratios (verification)
        **(
            {"reference_samples_ms": [s * 1000 for s in result.reference_samples]}
            if result.reference_samples
            else {}
        ),
    }


def measurement_from_record(record: dict[str, Any]) -> Measurement:
    """The Measurement a record was written from (`measurement_fields`, inverted: seconds)."""
    reference = record.get("reference_ms")
    return Measurement(
        seconds=record["latency_ms"] / 1000,
        spread=record["spread"],
        attempts=record["attempts"],
        flagged=record["flagged"],
        samples=[s / 1000 for s in record["samples_ms"]],
        reference_seconds=None if reference is None else reference / 1000,
        low_seconds=record["low_ms"] / 1000,
        high_seconds=record["high_ms"] / 1000,
        coverage=record["interval_coverage"],
        reference_samples=[s / 1000 for s in record.get("reference_samples_ms", [])],
    )


def todo(
    archs: list[dict[str, Any]], dataset: Path, digest: str, passes: int | None
) -> list[tuple[int | None, dict[str, Any]]]:
    """(pass, arch) still to measure, pass after pass; pass None: plain profiling (once each).

    With passes, a record's `pass` says which (records written before passes existed count as
    pass 0), so an interrupted verification resumes at the first (arch, pass) not recorded.
    """
    if passes is None:
        done = measured_keys(dataset, digest)
        return [(None, a) for a in archs if arch_key(a) not in done]
    recorded = {
        (arch_key(r["arch"]), r.get("pass", 0))
        for r in read_records(dataset)
        if r.get("profile_digest") == digest and r.get("arch") is not None
    }
    return [(p, a) for p in range(passes) for a in archs if (arch_key(a), p) not in recorded]


def profile_archs(
    archs: list[dict[str, Any]],
    make_bundle: Callable[[dict], ModelBundle],
    features: Callable[[dict], list[float]],
    params: Callable[[dict], int],
    device: Device,
    profile: DeviceProfile,
    dataset: str | Path,
    reference: ModelBundle | None = None,
    progress: bool = True,
    passes: int | None = None,
    extra: dict[str, Any] | None = None,
    arch_fields: Callable[[dict], dict[str, Any]] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    memory_mib: Callable[[ModelBundle], float] | None = None,
) -> ProfileRun:
    """Measure every architecture not yet in `dataset`; Ctrl-C stops after the last record.
    `extra` fields (what the caller knows of the models, e.g. how they share embeddings) go into
    every record, `arch_fields(arch)` into that arch's; `on_record` gets each record once it is
    on disk (a measuring agent streams it back); `memory_mib(bundle)`, where given, measures the
    bundle's peak memory into the record's `peak_memory_mib` after its timing.

    With `passes`, every architecture is measured once per pass, pass after pass (all archs in
    pass 0, then all in pass 1, ...), so a pass is minutes from the next rather than back to
    back; each record carries its `pass`.
    """
    dataset = Path(dataset)
    pending = todo(archs, dataset, profile.digest(), passes)
    env = environment()
    ref_pair = None
    if reference is not None:
        ref_device = type(device)(profile)
        ref_device.load(reference)
        ref_pair = (ref_device, workload_for(ref_device, reference, profile))
    measured = flagged = 0
    interrupted = False
    try:
        with progress_bar(f"profile {profile.name}", progress) as bar:
            task = bar.add_task("profile", total=len(pending), status="")
            for pass_index, arch in pending:
                bundle = make_bundle(arch)
                device.load(bundle)
                result = measure(device, workload_for(device, bundle, profile), profile, ref_pair)
                record = {
                    "arch": arch,
                    "features": features(arch),
                    **(extra or {}),
                    "params": (count := params(arch)),
                    "param_bytes_fp32": 4 * count,
                    **measurement_fields(result),
                    "device": profile.backend,
                    "profile": profile.name,
                    "profile_digest": profile.digest(),
                    "peak_memory_bytes": device.peak_memory_bytes(),
                    "env": env,
                    "time": time.time(),
                    **(arch_fields(arch) if arch_fields else {}),
                }
                if pass_index is not None:
                    record["pass"] = pass_index
                if memory_mib is not None:
                    record["peak_memory_mib"] = memory_mib(bundle)
                append_record(dataset, record)
                if on_record is not None:
                    on_record(record)
                measured += 1
                flagged += result.flagged
                at = "" if pass_index is None else f"pass {pass_index + 1}/{passes}: "
                bar.update(task, advance=1, status=f"{at}{record['latency_ms']:.1f} ms")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        device.close()
        if ref_pair is not None:
            ref_pair[0].close()
    planned = len(archs) * (1 if passes is None else passes)
    return ProfileRun(measured, planned - len(pending), flagged, interrupted, dataset)
