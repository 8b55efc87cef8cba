"""The measuring agent: runs a measuring job on the machine that deploys the models.

Needs only `onnxruntime` and `numpy` besides the `devices` and `latency` packages (neither
imports torch nor `mos_search`), so a target board needs no PyTorch. It runs the protocol of
local profiling (`latency.profiler.profile_archs`: warm-ups, repeats, the interleaved
reference, spread flag, interval) and appends one JSON line per architecture (and pass) to its
results file, whose records are those of a local profile plus `bundle_digest`.

    python -m latency.agent measure JOB.json --bundles DIR --results RESULTS.jsonl [--stream]
    python -m latency.agent have --bundles DIR < digests   # prints those present and intact
    python -m latency.agent env                            # this machine, as records hold it

`measure` verifies every bundle's digests before loading it and reads only JSON and ONNX.
Rerun, it measures only what its results file lacks. With `--stream` it first writes the
results file's records of the job to stdout, then each new record as it lands: that is how
`latency.remote` gets them over SSH. If stdout is gone (the connection dropped), it stops
after the record in hand, which is already in the results file. Only one agent measures a
results file at a time: a second waits for the first (a lock file beside it).

Exit codes: 0 done, 2 a bad job or bundle (one line on stderr), 130 interrupted, 141 stdout
closed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devices import DeviceError, ModelBundle, open_device
from devices.profile import ProfileError
from latency.bundles import BundleError, has_bundle, read_bundle
from latency.dataset import DatasetError, arch_key, read_records
from latency.environment import environment
from latency.jobs import Job, read_job
from latency.profiler import profile_archs


class StdoutClosed(Exception):
    """The reader of the streamed records is gone."""


def _emit(record: dict[str, Any]) -> None:
    """One record as one line on stdout, flushed; StdoutClosed when nobody reads it."""
    try:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        raise StdoutClosed from None


def _say(text: str) -> None:
    """A progress or summary line on stderr (stdout carries records)."""
    with contextlib.suppress(OSError):
        print(f"agent: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def results_lock(results: Path) -> Iterator[None]:
    """Hold `RESULTS.lock` exclusively; waits (saying so) while another agent holds it."""
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results.with_name(results.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say("another agent is measuring this request (a dropped connection's?): waiting")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def replay(job: Job, results: Path) -> int:
    """Write the results file's records of this job to stdout; how many."""
    wanted = {arch_key(i.arch) for i in job.items}
    digest, count = job.profile.digest(), 0
    for record in read_records(results):
        if record.get("profile_digest") == digest and arch_key(record.get("arch") or {}) in wanted:
            _emit(record)
            count += 1
    return count


def measure_job(job: Job, bundles: Path, results: Path, stream: bool) -> int:
    """Measure what `results` lacks of `job`; the exit code."""
    missing = [d for d in job.bundles() if not has_bundle(bundles, d)]
    if missing:  # say all of them at once, before any device is opened
        raise BundleError(
            f"{len(missing)} bundle(s) missing or changed in {bundles}: "
            f"{', '.join(d[:12] for d in missing[:5])}"
        )
    by_key = {arch_key(i.arch): i for i in job.items}
    with results_lock(results):
        replayed = replay(job, results) if stream else 0
        device = open_device(job.profile)
        reference = read_bundle(bundles, job.reference) if job.reference else None
        planned = len(job.items) * (job.passes or 1)
        done = [0]

        def make_bundle(arch: dict[str, Any]) -> ModelBundle:
            return read_bundle(bundles, by_key[arch_key(arch)].bundle)

        def landed(record: dict[str, Any]) -> None:
            done[0] += 1
            if stream:
                _emit(record)
            _say(f"{done[0]} measured ({record['latency_ms']:.2f} ms)")

        run = profile_archs(
            [i.arch for i in job.items],
            make_bundle,
            features=lambda a: by_key[arch_key(a)].features,
            params=lambda a: by_key[arch_key(a)].params,
            device=device,
            profile=job.profile,
            dataset=results,
            reference=reference,
            progress=False,
            passes=job.passes,
            extra=job.extra,
            arch_fields=lambda a: {"bundle_digest": by_key[arch_key(a)].bundle},
            on_record=landed,
        )
    _say(
        f"{run.measured} measured, {run.skipped} already there of {planned} "
        f"({replayed} sent again), {run.flagged} flagged"
    )
    return 130 if run.interrupted else 0


def have(bundles: Path) -> int:
    """Print each digest read from stdin (one per line) whose bundle is present and intact."""
    for line in sys.stdin:
        digest = line.strip()
        if digest and has_bundle(bundles, digest):
            print(digest, flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m latency.agent",
        description="Measure model bundles on this machine (the mos-search measuring agent).",
        epilog="Example: python -m latency.agent measure bundles/job.json --bundles "
        "bundles/bundles --results bundles/results.jsonl",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("measure", help="measure a job's architectures")
    measure.add_argument("job", type=Path, help="the job file (job.json)")
    measure.add_argument("--bundles", type=Path, required=True, help="folder of bundle folders")
    measure.add_argument("--results", type=Path, required=True, help="JSON lines to append to")
    measure.add_argument("--stream", action="store_true", help="also write records to stdout")
    check = commands.add_parser("have", help="which digests (stdin) have intact bundles")
    check.add_argument("--bundles", type=Path, required=True)
    commands.add_parser("env", help="print this machine's environment as records hold it")
    return parser


def _stop(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP stop like Ctrl-C: after the record in hand


def main(argv: list[str] | None = None) -> int:
    """Run one agent command; the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    started = time.monotonic()
    try:
        if args.command == "env":
            print(json.dumps(environment()))
            return 0
        if args.command == "have":
            return have(args.bundles)
        code = measure_job(read_job(args.job), args.bundles, args.results, args.stream)
    except StdoutClosed:
        return 141
    except KeyboardInterrupt:
        _say("interrupted: rerun to continue")
        return 130
    except (BundleError, DatasetError, DeviceError, ProfileError, OSError) as exc:
        _say(f"error: {exc}")
        return 2
    _say(f"took {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
