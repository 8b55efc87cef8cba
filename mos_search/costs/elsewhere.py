"""Measuring on the machine you deploy to: over SSH (`--remote`) or as offline bundles.

Both build the same thing here: a measuring job (`latency.jobs`) and the ONNX bundle of every
architecture still to measure (`latency.bundles`). Over SSH, `latency.remote` runs it on the
target and streams the records back into the dataset. Offline, the job, the bundles, the agent's
code and a `measure.sh` go into a folder to carry over; `import_results` then checks the records
it wrote against the job (profile, architecture, bundle digest, pass) and merges them.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices import DeviceProfile, device_class
from latency.bundles import BundleError, write_bundle
from latency.dataset import arch_key
from latency.jobs import DatasetMerge, Job, JobItem, read_job, request_id, write_job
from latency.profiler import ProfileRun, progress_bar, todo
from latency.remote import Remote, agent_code
from latency.ssh import RemoteOptions
from mos_search.arch import Arch
from mos_search.costs.profiling import ArchModels, reference_bundle, translation_bundle
from mos_search.errors import ConfigError
from mos_search.files import staged_output_dir
from mos_search.models.transformer import count_parameters

JOB_FILE = "job.json"
RESULTS_FILE = "results.jsonl"


@dataclass(frozen=True)
class Elsewhere:
    """Where a search's verification measures: here (all None), on an SSH target (`remote`),
    or offline: bundles written to `export_bundles/PROFILE/`, their results merged back from
    `imports` (results.jsonl files, each beside its job.json)."""

    remote: RemoteOptions | None = None
    export_bundles: Path | None = None
    imports: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if sum([self.remote is not None, self.export_bundles is not None, bool(self.imports)]) > 1:
            raise ConfigError(
                "--remote, --verify-export-bundles and --verify-import: choose one way to measure"
            )


class MeasurementsPending(Exception):
    """Verification waits for bundles to be measured offline; the message says how."""


@dataclass
class BuiltJob:
    """A job, the folder of its bundles, and how many (arch, pass) the dataset already had."""

    job: Job
    bundles: Path
    skipped: int


def models_identity(models: ArchModels) -> str:
    """What the measured models come from: the checkpoint's digest, or the space and vocabulary
    (freshly initialised models)."""
    if models.loaded is not None:
        return f"checkpoint:{models.loaded.digest}"
    return f"space:{models.space.name}:{models.space.digest}:vocab:{models.vocab_size}"


def build_job(
    profile: DeviceProfile,
    archs: list[Arch],
    models: ArchModels,
    dataset: Path | None,
    work: Path,
    passes: int | None = None,
    reference: bool = True,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> BuiltJob:
    """The job of the (arch, pass) pairs `dataset` lacks, their bundles written to
    `work/bundles` (ONNX export, about a second each)."""
    space = models.space
    dicts = [a.to_dict() for a in archs]
    pending = todo(dicts, dataset, profile.digest(), passes) if dataset else [(0, d) for d in dicts]
    wanted = list({arch_key(a): a for _, a in pending}.values())  # each arch once, in order
    bundles = work / "bundles"
    items = []
    with progress_bar("exporting bundles", progress and bool(wanted)) as bar:
        task = bar.add_task("bundles", total=len(wanted), status="")
        for index, arch_dict in enumerate(wanted):
            arch = space.arch_from_dict(arch_dict)
            bundle = translation_bundle(models.model(arch), "onnx", work / "graphs" / str(index))
            count = count_parameters(arch, models.vocab_size, space.qkv_dim, space.share_embeddings)
            digest = write_bundle(bundle, bundles)
            items.append(JobItem(arch_dict, digest, space.features(arch), count))
            bar.update(task, advance=1, status=f"{count / 1e6:.1f} M params")
    ref = None
    if reference:  # the space's smallest member, timed between the measured runs
        ref_bundle = reference_bundle(space, models.vocab_size, "onnx", work / "graphs" / "ref")
        ref = write_bundle(ref_bundle, bundles)
    request = request_id(profile, dicts, passes, models_identity(models))
    fields = {"share_embeddings": space.share_embeddings, **(extra or {})}
    job = Job(request, profile, tuple(items), passes, ref, fields)
    planned = len(archs) * (passes or 1)
    return BuiltJob(job, bundles, planned - len(pending))


def measure_on_remote(
    remote: RemoteOptions,
    profile: DeviceProfile,
    archs: list[Arch],
    models: ArchModels,
    dataset: Path,
    reference: bool = True,
    progress: bool = True,
    passes: int | None = None,
) -> ProfileRun:
    """`costs.profiling.measure_archs` on an SSH target: bundles built here, measured there,
    each record appended to `dataset` as it arrives; a rerun skips what is done."""
    if device_class(profile.backend).needs != "onnx":
        raise ConfigError(f"device {profile.name} runs PyTorch modules; --remote measures ONNX")
    with tempfile.TemporaryDirectory(prefix="mos-remote-") as tmp, Remote(remote) as target:
        target.prepare()  # a refused host key or a missing module shows before any export
        extra = {"measured_by": str(remote.target)}
        built = build_job(
            profile, archs, models, dataset, Path(tmp), passes, reference, extra, progress
        )
        if not built.job.items:
            return ProfileRun(0, built.skipped, 0, False, dataset)
        requested: dict[str, str | None] = {arch_key(a.to_dict()): None for a in archs}
        run = target.measure(built.job, built.bundles, dataset, requested, progress)
    return dataclasses.replace(run, skipped=built.skipped)


MEASURE_SH = """\
#!/bin/sh
# Measure this folder's bundles with the mos-search agent: needs Python 3.11+ with onnxruntime
# and numpy (pip install onnxruntime numpy). Rerun after an interruption: it continues.
# PYTHON=/path/to/python ./measure.sh to choose the interpreter.
set -e
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here/agent" exec "${PYTHON:-python3}" -P -m latency.agent measure "$here/job.json" \\
    --bundles "$here/bundles" --results "$here/results.jsonl"
"""

README = """\
Measuring bundles for mos-search: {count} architecture(s) x {passes} pass(es) on device
profile {profile} (digest {digest}).

On the target (Linux, Python 3.11+):
  pip install onnxruntime numpy        # nothing else of mos-search is needed
  ./measure.sh                         # writes results.jsonl here; rerun to continue

Then, where mos-search is installed, copy results.jsonl back beside job.json and run:
  {import_command}

The agent checks every bundle's SHA-256 before it loads it, and reads only JSON and ONNX.
"""


def export_bundles(
    out: str | Path,
    profile: DeviceProfile,
    archs: list[Arch],
    models: ArchModels,
    dataset: Path | None,
    import_command: str,
    overwrite: bool = False,
    passes: int | None = None,
    reference: bool = True,
    progress: bool = True,
) -> BuiltJob:
    """Write a self-contained folder to measure `archs` offline: job.json, bundles/, agent/
    (the agent's code), measure.sh and README.txt. Built aside and swapped in when whole; a
    folder holding measured results is refused (import them first)."""
    results = Path(out) / RESULTS_FILE
    if results.is_file() and results.stat().st_size:
        raise ConfigError(
            f"{results} holds measurements: import them first ({import_command}), or move it"
        )
    with (
        staged_output_dir(out, overwrite, "bundle folder") as folder,
        tempfile.TemporaryDirectory(prefix="mos-bundles-") as tmp,
    ):
        work = Path(tmp)
        extra = {"measured_by": "bundles"}
        built = build_job(profile, archs, models, dataset, work, passes, reference, extra, progress)
        if not built.job.items:
            raise ConfigError(f"nothing to measure: {dataset} already has every architecture")
        (work / "bundles").rename(folder / "bundles")
        write_job(built.job, folder / JOB_FILE)
        _, code = agent_code()
        with tarfile.open(fileobj=io.BytesIO(code)) as tar:
            tar.extractall(folder / "agent", filter="data")
        script = folder / "measure.sh"
        script.write_text(MEASURE_SH)
        script.chmod(0o755)
        (folder / "README.txt").write_text(
            README.format(
                count=len(built.job.items),
                passes=passes or 1,
                profile=profile.name,
                digest=profile.digest(),
                import_command=import_command,
            )
        )
    return dataclasses.replace(built, bundles=Path(out) / "bundles")


def import_results(
    results: str | Path, dataset: str | Path | None = None, job_file: str | Path | None = None
) -> DatasetMerge:
    """Merge an agent's results file into `dataset` (default: the profile's, as `profile`
    writes it): every record checked against the job (`job.json` beside the results unless
    `job_file`): its profile digest, architecture, bundle digest and pass; records the dataset
    has are skipped. A BundleError (before anything is written) when a record does not match."""
    from latency.dataset import read_records
    from mos_search.costs.profiling import default_dataset_path
    from mos_search.files import check_output_file

    results = Path(results)
    job = read_job(job_file or results.with_name(JOB_FILE))
    dataset = Path(dataset or default_dataset_path(job.profile.name))
    check_output_file(dataset)
    records = read_records(results)
    requested = {arch_key(i.arch): i.bundle for i in job.items}
    merge = DatasetMerge(dataset, job, requested)
    for number, record in enumerate(records, 1):  # check all before writing any
        problem = merge.problem(record)
        if problem:
            raise BundleError(f"{results}: record {number} does not match the job: {problem}")
    for record in records:
        merge.add(record)
    return merge
