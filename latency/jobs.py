"""Measuring jobs: what a measuring agent on another machine is asked to do, and how its
records come back into a local dataset.

A job (`job.json`) names the device profile (all its settings, and their digest), the
architectures with the digest of each one's bundle, their features and parameter count, the
reference bundle, the number of passes, and fields every record carries. Its `request` is the
identity of what was asked (profile, every requested architecture, passes, and what the caller
measures: a space or a checkpoint), stable across reruns: on the target, records accumulate in
`results/REQUEST.jsonl`, so a rerun after a dropped connection gets back what was measured but
never received, and measures nothing twice.

`DatasetMerge` appends the records that come back (streamed over SSH or imported from a file)
to a local dataset: each one checked against the job (profile digest, architecture, bundle
digest, pass) and skipped when the dataset already has it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.profile import DeviceProfile, ProfileError, profile_from_dict
from devices.text import NotUtf8, decode_utf8
from latency.bundles import BundleError, canonical_json
from latency.dataset import append_record, arch_key, read_records, record_problem

JOB_FORMAT = 1


@dataclass(frozen=True)
class JobItem:
    """One architecture to measure: its bundle's digest and what its records carry."""

    arch: dict[str, Any]
    bundle: str
    features: list[float]
    params: int


@dataclass(frozen=True)
class Job:
    """Architectures to measure on one device profile (see the module docstring)."""

    request: str
    profile: DeviceProfile
    items: tuple[JobItem, ...]
    passes: int | None = None
    reference: str | None = None  # the reference workload's bundle digest
    extra: dict[str, Any] = field(default_factory=dict)  # fields of every record

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `job.json` holds)."""
        return {
            "format": JOB_FORMAT,
            "request": self.request,
            "profile": self.profile.to_dict(),
            "profile_digest": self.profile.digest(),
            "passes": self.passes,
            "reference": self.reference,
            "extra": self.extra,
            "items": [
                {"arch": i.arch, "bundle": i.bundle, "features": i.features, "params": i.params}
                for i in self.items
            ],
        }

    def digest(self) -> str:
        """SHA-256 of the canonical `job.json` (names the file on the target)."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    def bundles(self) -> list[str]:
        """Every bundle digest the job needs, the reference's included, each once."""
        found = [i.bundle for i in self.items] + ([self.reference] if self.reference else [])
        return list(dict.fromkeys(found))


def request_id(
    profile: DeviceProfile, archs: Iterable[dict[str, Any]], passes: int | None, measures: str
) -> str:
    """The stable identity of a request (24 hex digits): the profile's digest, every requested
    architecture (in any order), the passes and `measures` (what the models come from)."""
    keys = sorted(arch_key(a) for a in archs)
    text = canonical_json([profile.digest(), keys, passes, measures])
    return hashlib.sha256(text).hexdigest()[:24]


def job_from_dict(data: Any, where: str) -> Job:
    """A job from its JSON form; a BundleError naming `where` for anything malformed."""
    try:
        if not isinstance(data, dict) or data.get("format") != JOB_FORMAT:
            raise BundleError(f"{where}: not a format-{JOB_FORMAT} measuring job")
        settings = dict(data["profile"])
        name = str(settings.pop("name"))
        profile = profile_from_dict(settings, name, where)
        if profile.digest() != data["profile_digest"]:
            raise BundleError(f"{where}: the profile's settings do not match its digest")
        items = tuple(
            JobItem(
                arch=dict(i["arch"]),
                bundle=str(i["bundle"]),
                features=[float(x) for x in i["features"]],
                params=int(i["params"]),
            )
            for i in data["items"]
        )
        passes = data["passes"]
        if passes is not None and (not isinstance(passes, int) or passes < 1):
            raise BundleError(f"{where}: passes must be a positive integer or null")
        return Job(
            str(data["request"]), profile, items, passes, data["reference"], dict(data["extra"])
        )
    except (KeyError, TypeError, ValueError, ProfileError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{where}: malformed measuring job ({exc})") from None


def write_job(job: Job, path: str | Path) -> None:
    """Write `job.json` (canonical JSON, so its digest is the file's SHA-256)."""
    Path(path).write_bytes(canonical_json(job.to_dict()))


def read_job(path: str | Path) -> Job:
    """A job file; a BundleError naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        text = decode_utf8(path.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{path}: no such measuring job") from None
    except NotUtf8 as exc:
        raise BundleError(f"{path}:{exc.line}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    return job_from_dict(data, str(path))


def _pass_of(record: dict[str, Any]) -> int | None:
    return record.get("pass")


class DatasetMerge:
    """Appends records measured elsewhere to a local dataset, checked and never twice.

    `requested` maps each architecture key the caller asked for to the digest of its bundle,
    or to None where any bundle of that architecture is accepted (a record streamed back from
    an earlier attempt, whose bundle was built then).
    """

    def __init__(self, dataset: str | Path, job: Job, requested: dict[str, str | None]) -> None:
        self.dataset, self.job, self.requested = Path(dataset), job, requested
        self.digest = job.profile.digest()
        existing = read_records(self.dataset)
        self.width = len(existing[0]["features"]) if existing else None  # of the dataset's space
        self.have = {
            (arch_key(r["arch"]), _pass_of(r))
            for r in existing
            if r.get("profile_digest") == self.digest and r.get("arch") is not None
        }
        self.added = self.duplicates = 0

    def problem(self, record: Any) -> str | None:
        """Why `record` does not belong to this job's dataset, or None."""
        problem = record_problem(record)
        if problem:
            return problem
        if self.width is not None and len(record["features"]) != self.width:
            return f"{len(record['features'])} features, the dataset's records have {self.width}"
        if record.get("profile_digest") != self.digest:
            found = record.get("profile_digest")
            return f"measured under profile digest {found!r}, not {self.digest}"
        if not isinstance(record.get("arch"), dict):
            return "no 'arch'"
        key = arch_key(record["arch"])
        if key not in self.requested:
            return f"architecture not in the job: {key[:80]}"
        wanted = self.requested[key]
        if wanted is not None and record.get("bundle_digest") != wanted:
            found = str(record.get("bundle_digest"))[:12]
            return f"measured bundle {found}, the job's is {wanted[:12]}"
        passes, at = self.job.passes, _pass_of(record)
        if passes is None and at is not None:
            return f"has a pass ({at}) but the job measures each architecture once"
        if passes is not None and (not isinstance(at, int) or not 0 <= at < passes):
            return f"pass {at!r} is not one of the job's {passes}"
        return None

    def add(self, record: dict[str, Any]) -> bool:
        """Append `record` unless the dataset has it (True when appended); a BundleError when it
        does not belong to the job."""
        problem = self.problem(record)
        if problem:
            raise BundleError(f"a record does not match the measuring job: {problem}")
        key = (arch_key(record["arch"]), _pass_of(record))
        if key in self.have:
            self.duplicates += 1
            return False
        append_record(self.dataset, record)
        self.have.add(key)
        self.added += 1
        return True

    def missing(self) -> int:
        """(arch, pass) pairs of the job's items still without a record."""
        passes = [None] if self.job.passes is None else list(range(self.job.passes))
        return sum((arch_key(i.arch), p) not in self.have for i in self.job.items for p in passes)
