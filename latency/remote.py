"""Measuring on another machine over SSH: the agent's code, the job and its bundles copied
there (each cached by digest), the agent run, its records streamed back into the dataset.

`Remote.prepare` checks the target's Python (3.11+, with `onnxruntime` and `numpy`: nothing
else of mos-search) and copies the agent's code (the `devices` and `latency` packages) when it
lacks this version; `Remote.measure` copies the job and the bundles the target lacks, runs
`python -m latency.agent measure --stream` there, and appends each record to the local dataset
as it arrives (`latency.jobs.DatasetMerge`: checked, never twice). The transport is
`latency.ssh`.

A dropped connection loses at most the architecture being measured: the agent has already
written every finished record to its results file on the target, and a rerun gets those first.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from latency.bundles import BundleError, canonical_json
from latency.jobs import DatasetMerge, Job
from latency.profiler import ProfileRun, progress_bar
from latency.ssh import SSH_FAILED, RemoteError, RemoteOptions, SshConnection

# Run by the target's Python: extract a tar read from stdin into argv[1], refusing members that
# are not plain files or folders or that leave the folder (tarfile's data filter where it has
# one: Python 3.11.4+).
RECEIVE = """\
import os, sys, tarfile
final = sys.argv[1]
atomic = len(sys.argv) > 2  # into FINAL.partial, renamed to FINAL when whole
dest = final + ".partial" if atomic else final
os.makedirs(dest, exist_ok=True)
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
    for member in tar:
        name = os.path.normpath(member.name)
        if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
            sys.exit("refused tar member " + member.name)
        if hasattr(tarfile, "data_filter"):
            tar.extract(member, dest, filter="data")
        else:
            tar.extract(member, dest)
if atomic and not os.path.isdir(final):
    os.rename(dest, final)
"""

# Run by the target's Python: what it is, whether the agent's code is there, what it can import.
PROBE = """\
import importlib.util, json, os, sys
found = {m: importlib.util.find_spec(m) is not None for m in ("onnxruntime", "numpy")}
print(json.dumps({"python": list(sys.version_info[:3]), "agent": os.path.isdir(sys.argv[1]),
                  "modules": found}))
"""


def agent_code() -> tuple[str, bytes]:
    """(digest, tar) of the agent's code: every .py of `devices` and `latency` and the shipped
    device profiles, in a reproducible tar (sorted, no times or owners)."""
    import devices
    import latency

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for package in (devices, latency):
            root = Path(package.__file__).parent
            files = sorted([*root.rglob("*.py"), *root.rglob("*.toml")])
            for path in files:
                if "__pycache__" in path.parts:
                    continue
                info = tarfile.TarInfo(f"{root.name}/{path.relative_to(root).as_posix()}")
                data = path.read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest()[:16], data


def write_upload_tar(
    out: BinaryIO, bundles: Path, digests: list[str], job_name: str, job: bytes
) -> None:
    """Write to `out` a tar of the bundle folders `digests` (as `bundles/DIGEST/FILE`) and the
    job (as `jobs/JOB_NAME`), streamed file by file (bundles can be large)."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for digest in digests:
            for path in sorted((bundles / digest).iterdir()):
                info = tarfile.TarInfo(f"bundles/{digest}/{path.name}")
                info.size, info.mode = path.stat().st_size, 0o644
                with path.open("rb") as f:
                    tar.addfile(info, f)
        info = tarfile.TarInfo(f"jobs/{job_name}")
        info.size, info.mode = len(job), 0o644
        tar.addfile(info, io.BytesIO(job))


class Remote(SshConnection):
    """An SSH target that measures: prepares the agent there, copies jobs and bundles, and
    streams the agent's records into a local dataset."""

    def __init__(self, options: RemoteOptions) -> None:
        super().__init__(options)
        self.root = PurePosixPath(options.directory)
        self.code: PurePosixPath | None = None  # the agent's code there, once `prepare`d

    def prepare(self) -> PurePosixPath:
        """Check the target's Python and modules, copy the agent's code if it lacks this version;
        the folder to put on its PYTHONPATH."""
        digest, code = agent_code()
        folder = self.root / "agent" / digest
        out = self.run([self.options.python, "-c", PROBE, str(folder)], "checking the Python")
        try:
            found = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            printed = out[:200]
            raise RemoteError(f"{self.options.python} on the target printed {printed!r}") from None
        if tuple(found["python"][:2]) < (3, 11):
            version = ".".join(map(str, found["python"]))
            raise RemoteError(f"the agent needs Python 3.11+, {self.options.python} is {version}")
        lacking = [m for m, ok in found["modules"].items() if not ok]
        if lacking:
            raise RemoteError(
                f"{self.options.python} on {self.options.target} lacks {', '.join(lacking)}: "
                f"pip install {' '.join(lacking)} there (or give --remote-python)"
            )
        if not found["agent"]:
            receive = [self.options.python, "-c", RECEIVE, str(folder), "atomic"]
            self.run(receive, "copying the agent", code)
        self.code = folder
        return folder

    def agent_argv(self, code: PurePosixPath, *args: str) -> list[str]:
        """`python -m latency.agent ARGS` with the copied code first on the path."""
        # -P: the remote home's own `latency/` (a checkout) must not shadow the copied agent
        return [
            "env",
            f"PYTHONPATH={code}",
            self.options.python,
            "-P",
            "-m",
            "latency.agent",
            *args,
        ]

    def upload(self, code: PurePosixPath, job: Job, bundles: Path) -> PurePosixPath:
        """Copy the job and the bundles the target lacks (one tar, spooled through a temporary
        file, not memory); the job's path there."""
        wanted = job.bundles()
        out = self.run(
            self.agent_argv(code, "have", "--bundles", str(self.root / "bundles")),
            "listing cached bundles",
            "\n".join(wanted).encode(),
        )
        present = set(out.decode().split())
        lacking = [d for d in wanted if d not in present]
        name = f"{job.digest()}.json"
        with tempfile.TemporaryFile() as tar:
            write_upload_tar(tar, bundles, lacking, name, canonical_json(job.to_dict()))
            tar.seek(0)
            receive = [self.options.python, "-c", RECEIVE, str(self.root)]
            self.run(receive, f"copying the job and {len(lacking)} bundle(s)", tar)
        return self.root / "jobs" / name

    def measure(
        self,
        job: Job,
        bundles: Path,
        dataset: Path,
        requested: dict[str, str | None],
        progress: bool = True,
    ) -> ProfileRun:
        """Run `job` on the target (after `prepare`), appending its records to `dataset` as
        they arrive (those of `requested`, see `DatasetMerge`); a RemoteError when the agent
        cannot run it or the connection drops (what arrived is kept: rerun to continue)."""
        assert self.code is not None, "prepare() first"
        merge = DatasetMerge(dataset, job, requested)
        job_path = self.upload(self.code, job, bundles)
        results = self.root / "results" / f"{job.request}.jsonl"
        argv = self.agent_argv(
            self.code,
            "measure",
            str(job_path),
            "--bundles",
            str(self.root / "bundles"),
            "--results",
            str(results),
            "--stream",
        )
        flagged = 0
        label = f"profile {job.profile.name} on {self.options.target}"
        with progress_bar(label, progress) as bar:
            task = bar.add_task("profile", total=len(job.items) * (job.passes or 1), status="")

            def on_line(raw: bytes) -> None:
                nonlocal flagged
                try:
                    record = json.loads(raw)
                except ValueError:
                    line = raw[:120]
                    raise RemoteError(f"the agent sent a line that is not JSON: {line!r}") from None
                try:
                    if merge.add(record):
                        flagged += bool(record.get("flagged"))
                        bar.update(task, advance=1, status=f"{record['latency_ms']:.1f} ms")
                except BundleError as exc:
                    raise RemoteError(str(exc)) from None

            try:
                status, last = self.stream(argv, on_line)
            except KeyboardInterrupt:
                return ProfileRun(merge.added, 0, flagged, True, dataset)
        if status == SSH_FAILED or status < 0:  # the connection, or the local ssh, went away
            raise RemoteError(
                f"the connection to {self.options.target} failed or dropped "
                f"({last or 'no message'}); {merge.added} record(s) arrived and are kept: rerun "
                "the same command to continue"
            )
        if status not in (0, 130):
            said = last.removeprefix("agent: ")
            raise RemoteError(f"the agent on {self.options.target} failed: {said}")
        return ProfileRun(merge.added, 0, flagged, status == 130, dataset)


def measure_remote(
    options: RemoteOptions,
    job: Job,
    bundles: Path,
    dataset: Path,
    requested: dict[str, str | None],
    progress: bool = True,
) -> ProfileRun:
    """Connect to the target and run `job` there (`Remote.measure`)."""
    with Remote(options) as remote:
        remote.prepare()
        return remote.measure(job, bundles, dataset, requested, progress)
