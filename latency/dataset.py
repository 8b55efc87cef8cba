"""Latency datasets: one JSON line per measured architecture, appended and flushed as measured.

A record: arch (dict), features, params, latency_ms (raw robust statistic), spread, flagged,
attempts, reference_ms (the interleaved reference workload), profile digest, environment, time.
A crash loses at most the record being measured; a rerun skips architectures already recorded
under the same profile digest.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def arch_key(arch: dict[str, Any]) -> str:
    """Canonical text of an architecture dict, for de-duplication."""
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a dataset file (a line cut short by a crash is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record and push it to disk before returning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def measured_keys(path: str | Path, profile_digest: str) -> set[str]:
    """Architectures already in the dataset under this profile."""
    return {
        arch_key(r["arch"]) for r in read_records(path) if r.get("profile_digest") == profile_digest
    }


def drift_corrected_ms(
    records: list[dict[str, Any]], elasticity: float = 1.0, typical_ms: float | None = None
) -> list[float]:
    """Latencies at the typical machine speed: raw * (typical / reference) ** elasticity.

    `typical_ms` defaults to the median reference time of `records`. An elasticity of 1 assumes
    a slowdown stretches every workload as much as the reference; on the 2-core machines here the
    measured archs moved only ~0.6 as much (log-log slope; see `fit_drift_elasticity`).
    """
    refs = [r["reference_ms"] for r in records if r.get("reference_ms")]
    if not refs:
        return [r["latency_ms"] for r in records]
    typical = typical_ms or statistics.median(refs)
    return [
        r["latency_ms"] * (typical / r["reference_ms"]) ** elasticity
        if r.get("reference_ms")
        else r["latency_ms"]
        for r in records
    ]


def fit_drift_elasticity(records: list[dict[str, Any]]) -> float:
    """How strongly measured times follow the reference: the slope of log(latency) on
    log(reference), with the architecture held fixed by a model of its features (quadratic when
    there are records enough, else linear).

    Returns 1.0 (plain proportional correction) when the records are too few for either.
    """
    import numpy as np

    usable = [r for r in records if r.get("reference_ms")]
    if not usable:
        return 1.0
    features = np.array([r["features"] for r in usable], dtype=float)
    linear = [np.ones(len(usable))] + [features[:, i] for i in range(features.shape[1])]
    quadratic = linear + [
        features[:, i] * features[:, j]
        for i in range(features.shape[1])
        for j in range(i, features.shape[1])
    ]
    columns = next((c for c in (quadratic, linear) if len(usable) >= 2 * (len(c) + 1)), None)
    if columns is None:
        return 1.0
    design = np.column_stack([*columns, np.log([r["reference_ms"] for r in usable])])
    target = np.log([r["latency_ms"] for r in usable])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(solution[-1])


def environment() -> dict[str, Any]:
    """Where a measurement was taken: CPU, cores, library versions."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "onnxruntime", "onnx", "numpy", "tensorrt"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
    }
