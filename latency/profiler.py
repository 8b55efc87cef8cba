"""Profiling: measure many architectures on one device and append one record per architecture.

Knows nothing of MoS: the caller hands over architectures as dicts and functions that turn one
into a model bundle, a feature vector and a parameter count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices import Device, DeviceProfile, ModelBundle
from latency.dataset import append_record, arch_key, environment, measured_keys
from latency.protocol import measure
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


def _progress_bar(profile_name: str, enabled: bool) -> Progress:
    """A rich progress bar: done/total, the last latency, elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn(f"profile {profile_name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, disable=not enabled)


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
) -> ProfileRun:
    """Measure every architecture not yet in `dataset`; Ctrl-C stops after the last record."""
    dataset = Path(dataset)
    done = measured_keys(dataset, profile.digest())
    todo = [a for a in archs if arch_key(a) not in done]
    env = environment()
    ref_device = None
    if reference is not None:
        ref_device = type(device)(profile)
        ref_device.load(reference)
        ref_pair = (ref_device, workload_for(ref_device, reference, profile))
    measured = flagged = 0
    interrupted = False
    try:
        with _progress_bar(profile.name, progress) as bar:
            task = bar.add_task("profile", total=len(todo), status="")
            for arch in todo:
                bundle = make_bundle(arch)
                device.load(bundle)
                result = measure(
                    device,
                    workload_for(device, bundle, profile),
                    profile,
                    ref_pair if ref_device is not None else None,
                )
                record = {
                    "arch": arch,
                    "features": features(arch),
                    "params": (count := params(arch)),
                    "param_bytes_fp32": 4 * count,
                    "latency_ms": result.seconds * 1000,
                    "spread": result.spread,
                    "flagged": result.flagged,
                    "attempts": result.attempts,
                    "samples_ms": [s * 1000 for s in result.samples],
                    "reference_ms": (
                        None
                        if result.reference_seconds is None
                        else result.reference_seconds * 1000
                    ),
                    "device": profile.backend,
                    "profile": profile.name,
                    "profile_digest": profile.digest(),
                    "peak_memory_bytes": device.peak_memory_bytes(),
                    "env": env,
                    "time": time.time(),
                }
                append_record(dataset, record)
                measured += 1
                flagged += result.flagged
                bar.update(task, advance=1, status=f"{record['latency_ms']:.1f} ms")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        device.close()
        if ref_device is not None:
            ref_device.close()
    return ProfileRun(measured, len(archs) - len(todo), flagged, interrupted, dataset)
