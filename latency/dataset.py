"""Latency datasets: one JSON line per measured architecture, appended and flushed as measured.

A record: arch (dict), features, params, latency_ms (raw robust statistic), low_ms and high_ms
(its confidence interval, `interval_coverage`), spread, flagged, attempts, reference_ms (the
interleaved reference workload), pass (for architectures measured in several passes, e.g. by
verification), profile digest, environment, time.
A crash loses at most the record being measured; a rerun skips architectures already recorded
under the same profile digest.

Contract of a record, checked line by line by `read_records`: a JSON object with `features` (a
list of finite numbers, one per feature of the schema) and `latency_ms` (a positive finite
number); `reference_ms`, when present and not null, is a positive finite number; `arch`, when
present, is an object. Records without `arch` (features and latency exported by another tool)
are valid: code that needs an identity uses `record_key`, never `record["arch"]`.
Lines are UTF-8 JSON (a byte-order mark starting a line is dropped, so concatenated files read).
A bad line (not UTF-8, not JSON, not a valid record) raises `DatasetError` naming the file and
line; only a torn last line (no newline at the end and not JSON: a crash while appending) is
skipped, with a warning.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

from devices.text import NotUtf8, decode_utf8


class DatasetError(ValueError):
    """A dataset line that is not a valid record; the message reads `PATH:LINE: what is wrong`."""

    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem


def arch_key(arch: dict[str, Any]) -> str:
    """Canonical text of an architecture dict, for de-duplication."""
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def features_key(features: list[float]) -> str:
    """Canonical text of a feature vector (ints and floats of equal value give one key)."""
    return json.dumps([float(x) for x in features], separators=(",", ":"))


def record_key(record: dict[str, Any]) -> str:
    """Identity of the measured architecture: `arch_key` of its arch, else its features' key.

    The two kinds never collide (an arch key is a JSON object, a features key a JSON list).
    """
    if record.get("arch") is not None:
        return arch_key(record["arch"])
    return features_key(record["features"])


def _is_number(value: Any) -> bool:
    """A finite JSON number that fits a float (booleans are not numbers here)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) <= sys.float_info.max
    )


def record_problem(record: Any) -> str | None:
    """What is wrong with one parsed line (feature count aside), or None when it is valid."""
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    features = record.get("features")
    if features is None:
        return "no 'features' (a list of numbers)"
    if not isinstance(features, list) or not all(_is_number(x) for x in features):
        return f"'features' must be a list of finite numbers, found {str(features)[:80]}"
    if "latency_ms" not in record:
        return "no 'latency_ms' (a positive number)"
    latency = record["latency_ms"]
    if not _is_number(latency) or latency <= 0:
        return f"'latency_ms' must be a positive finite number, found {latency!r:.40}"
    reference = record.get("reference_ms")
    if reference is not None and (not _is_number(reference) or reference <= 0):
        return f"'reference_ms' must be a positive finite number or absent, found {reference!r:.40}"
    arch = record.get("arch")
    if arch is not None and not isinstance(arch, dict):
        return f"'arch' must be a JSON object, found {type(arch).__name__}"
    return None


def _parse_line(line: bytes) -> Any:
    """The JSON value of one line; ValueError when it is not UTF-8 JSON (NotUtf8 when it is
    not UTF-8)."""
    return json.loads(decode_utf8(line))


def _line_problem(error: ValueError) -> str:
    """What `_parse_line`'s error says about its line, with the column where there is one."""
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON ({error.msg}: column {error.colno})"
    return str(error) if isinstance(error, NotUtf8) else f"not JSON ({error})"


def read_records(
    path: str | Path, feature_names: list[str] | tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Validated records of a dataset file ([] when there is no file).

    Every line must be a valid record (see the module docstring); with `feature_names` each
    record must hold exactly that many features, without it all records must hold as many as
    the first. Blank lines are skipped. A torn last line (no trailing newline, not JSON) is
    skipped with a warning; any other bad line raises `DatasetError` with its line number.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n")  # the last element is a line without its newline
    n_features = None if feature_names is None else len(feature_names)
    first_line = None
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = _parse_line(raw)
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            if torn_tail and number == len(lines):
                warnings.warn(
                    f"{path}:{number}: skipped a torn last line (a crash while appending): "
                    f"{raw[:60].decode('utf-8', 'replace')!r}",
                    stacklevel=2,
                )
                continue
            raise DatasetError(path, number, _line_problem(error)) from None
        problem = record_problem(record)
        if problem is not None:
            raise DatasetError(path, number, problem)
        if n_features is None:
            n_features, first_line = len(record["features"]), number
        elif len(record["features"]) != n_features:
            source = "the feature schema" if first_line is None else f"line {first_line}"
            found = len(record["features"])
            raise DatasetError(
                path, number, f"expected {n_features} features (as {source}), found {found}"
            )
        records.append(record)
    return records


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record and push it to disk (flush and fsync) before returning.

    When the file does not end with a newline, its last line was cut short by a crash: that
    torn tail is truncated away (not merely terminated) before appending, because a terminated
    fragment would become a garbled middle line that `read_records` rightly refuses; the torn
    record was never complete, so nothing measured is lost. A last line that is complete JSON
    but only lacks its newline (a hand-edited file) is kept and terminated instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab+") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(max(0, size - 1))
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                start = data.rfind(b"\n") + 1
                try:
                    _parse_line(data[start:])
                except ValueError:
                    warnings.warn(
                        f"{path}: truncated a torn last line before appending", stacklevel=2
                    )
                    f.truncate(start)
                else:
                    f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def measured_keys(path: str | Path, profile_digest: str) -> set[str]:
    """Keys (`record_key`) of the architectures already in the dataset under this profile."""
    return {record_key(r) for r in read_records(path) if r.get("profile_digest") == profile_digest}


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
        r["latency_ms"] * drift_factor(r.get("reference_ms"), typical, elasticity) for r in records
    ]


def drift_factor(
    reference_ms: float | None, typical_ms: float | None, elasticity: float | None
) -> float:
    """What a time measured beside a reference of `reference_ms` is multiplied by to bring it
    to the machine speed where the reference takes `typical_ms`: (typical / reference) **
    elasticity; 1 when any of the three is missing (a raw time stays raw)."""
    if not reference_ms or not typical_ms or elasticity is None:
        return 1.0
    return (typical_ms / reference_ms) ** elasticity


def fit_drift_elasticity(records: list[dict[str, Any]]) -> float:
    """How strongly measured times follow the reference: the slope of log(latency) on
    log(reference), with the architecture held fixed by a model of its features (quadratic when
    there are records enough, else linear).

    Returns 1.0 (plain proportional correction) when the records are too few for either, or
    when the reference time never varies (the slope is then not identified). Records without
    `reference_ms` are left out; records need `features` but not `arch`.
    """
    import numpy as np

    usable = [r for r in records if r.get("reference_ms")]
    if not usable or len({r["reference_ms"] for r in usable}) < 2:
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


def fit_drift_elasticity_repeated(
    records: list[dict[str, Any]], min_archs: int = 5
) -> float | None:
    """The drift elasticity from architectures measured more than once (verification passes,
    a second profiling pass): the within-architecture slope of log latency on log reference.

    With y = log(latency_ms), x = log(reference_ms) and a the architecture (`record_key`),
    both are demeaned per architecture (fixed effects) and fitted through the origin:

        beta = sum_a sum_i (x_ai - mean_a x)(y_ai - mean_a y) / sum_a sum_i (x_ai - mean_a x)^2

    No model of the features is needed, so this checks a correction on a run's own data.
    Returns None when fewer than `min_archs` architectures have 2+ measurements (with a
    reference) whose reference times differ.
    """
    import numpy as np

    groups: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if r.get("reference_ms"):
            point = (math.log(r["reference_ms"]), math.log(r["latency_ms"]))
            groups.setdefault(record_key(r), []).append(point)
    xx = xy = 0.0
    informative = 0
    for points in groups.values():
        x, y = np.array(points).T
        dx = x - x.mean()
        if len(points) < 2 or not np.any(dx):
            continue
        informative += 1
        xx += float(dx @ dx)
        xy += float(dx @ (y - y.mean()))
    if informative < min_archs:
        return None
    return xy / xx
