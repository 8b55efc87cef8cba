"""The measuring agent without SSH: it runs without torch or mos_search, refuses a tampered bundle
or job before measuring anything, and round-trips offline (`profile --export-bundles`, then
`measure.sh`, then `profile --import`, where every record is checked against the job); and the
units of `latency.jobs` (jobs as files, `DatasetMerge`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from devices import load_profile
from latency.bundles import BundleError
from latency.dataset import arch_key, read_records, record_problem
from latency.jobs import DatasetMerge, Job, JobItem, read_job, write_job
from mos_search.cli import main

from conftest import assert_one_line_error, tree_digests

ROOT = Path(__file__).resolve().parent.parent
N = 3

# Runs the agent with every import of torch and mos_search refused and recorded (a finder first
# on the meta path sees each attempt; a module set to None in sys.modules would hide them).
BLOCKED_RUN = """\
import json, sys

tried = []

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "mos_search"):
            tried.append(name)
            raise ModuleNotFoundError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Refuse())
from latency.agent import main

code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "mos_search"))
print("IMPORTS " + json.dumps({"tried": tried, "loaded": loaded}), file=sys.stderr)
sys.exit(code)
"""


def profile(fast: str, *args: str):
    argv = ["profile", "--device", fast, "--space", "cpu-tiny", "--vocab-size", "500"]
    return CliRunner().invoke(main, [*argv, *(str(a) for a in args)])


@pytest.fixture(scope="module")
def exported(fast_profile, tmp_path_factory) -> Path:
    """A folder of `profile --export-bundles` for N members of cpu-tiny (never measured: tests
    copy it)."""
    folder = tmp_path_factory.mktemp("export") / "bundles"
    dataset = folder.with_name("lat.jsonl")
    result = profile(fast_profile, "-n", N, "--export-bundles", folder, "--out", dataset)
    assert result.exit_code == 0, result.output
    assert f"{N} architecture(s) to measure" in result.output
    assert not dataset.exists()
    return folder


def copy_of(exported: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "bundles"
    shutil.copytree(exported, folder)
    return folder


def run_agent(folder: Path, results: Path) -> subprocess.CompletedProcess:
    """`latency.agent measure` on `folder`'s job and bundles, torch and mos_search refused, run
    by this project's Python (which has both) from the repository's code."""
    argv = [sys.executable, "-c", BLOCKED_RUN, "measure", str(folder / "job.json")]
    argv += ["--bundles", str(folder / "bundles"), "--results", str(results)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def imports_of(stderr: str) -> dict:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("IMPORTS "))
    return json.loads(line.removeprefix("IMPORTS "))


def agent_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("IMPORTS ")]


def test_agent_runs_without_torch(exported, tmp_path):
    """One valid record per architecture of the job, each matching its item, and not one attempt
    to import torch or mos_search."""
    folder = copy_of(exported, tmp_path)
    results = tmp_path / "results.jsonl"
    done = run_agent(folder, results)
    assert done.returncode == 0, done.stderr
    assert imports_of(done.stderr) == {"tried": [], "loaded": []}
    job = read_job(folder / "job.json")
    records = read_records(results)
    assert len(records) == len(job.items) == N
    assert {arch_key(r["arch"]) for r in records} == {arch_key(i.arch) for i in job.items}
    merge = DatasetMerge(
        tmp_path / "check.jsonl", job, {arch_key(i.arch): i.bundle for i in job.items}
    )
    items = {arch_key(i.arch): i for i in job.items}
    for record in records:
        item = items[arch_key(record["arch"])]
        assert record_problem(record) is None and merge.problem(record) is None
        assert record["bundle_digest"] == item.bundle
        assert record["features"] == item.features and record["params"] == item.params
        assert record["profile_digest"] == job.profile.digest()
        assert record["measured_by"] == "bundles"
        assert record["latency_ms"] > 0 and record["reference_ms"] > 0

    again = run_agent(folder, results)  # rerun: nothing left to measure
    assert again.returncode == 0, again.stderr
    assert "0 measured" in again.stderr
    assert read_records(results) == records


def flip_onnx_byte(folder: Path, digest: str) -> None:
    graph = next((folder / "bundles" / digest).glob("*.onnx"))
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))


def edit_bundle_json(folder: Path, digest: str) -> None:
    meta_path = folder / "bundles" / digest / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["vocab_size"] += 1
    meta_path.write_text(json.dumps(meta, sort_keys=True, separators=(",", ":")))


def swap_graph(folder: Path, digest: str) -> None:
    """A graph replaced by another bundle's (a valid model) and bundle.json updated to match:
    only the bundle's digest, the folder name the job holds, tells."""
    bundle = folder / "bundles" / digest
    other = next(p for p in (folder / "bundles").iterdir() if p.name != digest)
    graph = next(bundle.glob("*.onnx"))
    shutil.copyfile(other / graph.name, graph)
    meta = json.loads((bundle / "bundle.json").read_text())
    for entry in meta["graphs"].values():
        if entry["file"] == graph.name:
            entry["sha256"] = hashlib.sha256(graph.read_bytes()).hexdigest()
            entry["bytes"] = graph.stat().st_size
    (bundle / "bundle.json").write_text(json.dumps(meta, sort_keys=True, separators=(",", ":")))


def remove_bundle(folder: Path, digest: str) -> None:
    shutil.rmtree(folder / "bundles" / digest)


def flip_shared_byte(folder: Path, digest: str) -> None:
    """A byte of the weights both graphs share (the token table) flipped."""
    shared = folder / "bundles" / digest / "shared.bin"
    data = bytearray(shared.read_bytes())
    data[-1] ^= 0x01
    shared.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "tamper",
    [flip_onnx_byte, edit_bundle_json, swap_graph, remove_bundle, flip_shared_byte],
    ids=["onnx byte", "bundle.json", "another graph", "bundle gone", "shared weights"],
)
@pytest.mark.parametrize("which", ["item", "reference"])
def test_tampered_bundle_refused(exported, tmp_path, tamper, which):
    """A bundle that is not what the job names: exit 2, one line naming it, nothing measured."""
    folder = copy_of(exported, tmp_path)
    job = read_job(folder / "job.json")
    digest = job.items[-1].bundle if which == "item" else job.reference
    tamper(folder, digest)
    results = tmp_path / "results.jsonl"
    done = run_agent(folder, results)
    assert done.returncode == 2, done.stderr
    lines = agent_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("agent: error: "), done.stderr
    assert digest[:12] in lines[0]
    assert "Traceback" not in done.stderr
    assert not results.exists() or not read_records(results)


def test_tampered_job_refused(exported, tmp_path):
    """A job whose profile settings were changed under the old digest: exit 2, one line."""
    folder = copy_of(exported, tmp_path)
    data = json.loads((folder / "job.json").read_text())
    data["profile"]["repeats"] += 1
    (folder / "job.json").write_text(json.dumps(data))
    results = tmp_path / "results.jsonl"
    done = run_agent(folder, results)
    assert done.returncode == 2, done.stderr
    lines = agent_lines(done.stderr)
    assert len(lines) == 1 and "do not match its digest" in lines[0], done.stderr
    assert not results.exists()


def measure_sh(folder: Path) -> subprocess.CompletedProcess:
    """The exported folder's measure.sh, with this project's Python."""
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(folder / "measure.sh")], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def measured(exported, tmp_path_factory) -> Path:
    """A copy of the exported folder after its measure.sh ran (results.jsonl beside job.json)."""
    folder = copy_of(exported, tmp_path_factory.mktemp("measured"))
    assert {p.name for p in folder.iterdir()} == {
        "job.json",
        "bundles",
        "agent",
        "measure.sh",
        "README.txt",
    }
    assert (folder / "agent" / "latency" / "agent.py").is_file()
    assert os.access(folder / "measure.sh", os.X_OK)
    done = measure_sh(folder)
    assert done.returncode == 0, done.stderr
    assert len(read_records(folder / "results.jsonl")) == N
    return folder


def test_offline_round_trip(measured, fast_profile, tmp_path):
    """measure.sh's results merge once; importing them again merges nothing; with every
    architecture in the dataset there is nothing left to export."""
    dataset = tmp_path / "lat.jsonl"
    results = measured / "results.jsonl"
    result = profile(fast_profile, "--import", results, "--out", dataset)
    assert result.exit_code == 0, result.output
    assert f"merged {N}, already there 0, not measured yet 0" in result.output
    assert read_records(dataset) == read_records(results)

    before = tree_digests(dataset)
    result = profile(fast_profile, "--import", results, "--out", dataset)
    assert result.exit_code == 0, result.output
    assert f"merged 0, already there {N}" in result.output
    assert tree_digests(dataset) == before

    again = tmp_path / "again"
    result = profile(fast_profile, "-n", N, "--export-bundles", again, "--out", dataset)
    assert_one_line_error(result, "nothing to measure")
    assert not again.exists()


def other_arch(record: dict) -> None:
    record["arch"]["encoder_embed_dim"] += 1


def other_bundle(record: dict) -> None:
    record["bundle_digest"] = "0" * 64


def other_profile(record: dict) -> None:
    record["profile_digest"] = "0" * 12


def with_pass(record: dict) -> None:
    record["pass"] = 0


def fewer_features(record: dict) -> None:
    record["features"] = record["features"][:-1]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (other_arch, "record 2 does not match the job: architecture not in the job"),
        (other_bundle, "record 2 does not match the job: measured bundle 000000000000"),
        (other_profile, "record 2 does not match the job: measured under profile digest"),
        (with_pass, "record 2 does not match the job: has a pass"),
        (fewer_features, "results.jsonl:2: expected 10 features"),
    ],
    ids=["arch", "bundle digest", "profile digest", "pass", "features"],
)
def test_import_refuses_edited_record(measured, fast_profile, tmp_path, edit, says):
    """One edited record among valid ones: refused in one line naming it, nothing merged (not
    even the valid records before it), into a fresh dataset or an existing one."""
    records = read_records(measured / "results.jsonl")
    edit(records[1])
    edited = tmp_path / "results.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in records))
    job = str(measured / "job.json")

    fresh = tmp_path / "fresh.jsonl"
    result = profile(fast_profile, "--import", edited, "--job", job, "--out", fresh)
    assert_one_line_error(result, str(edited), says)
    assert not fresh.exists()

    existing = tmp_path / "existing.jsonl"
    existing.write_text(json.dumps(records[0]) + "\n")
    before = tree_digests(existing)
    result = profile(fast_profile, "--import", edited, "--job", job, "--out", existing)
    assert_one_line_error(result, says)
    assert tree_digests(existing) == before


def test_import_refuses_a_changed_job(measured, fast_profile, tmp_path):
    """Results checked against a job.json whose profile settings changed under the old digest:
    refused, nothing written."""
    data = json.loads((measured / "job.json").read_text())
    data["profile"]["decoder_steps"] += 1
    job = tmp_path / "job.json"
    job.write_text(json.dumps(data))
    dataset = tmp_path / "lat.jsonl"
    result = profile(
        fast_profile, "--import", measured / "results.jsonl", "--job", job, "--out", dataset
    )
    assert_one_line_error(result, str(job), "do not match its digest")
    assert not dataset.exists()


def test_export_refuses_a_full_folder(fast_profile, tmp_path):
    folder = tmp_path / "bundles"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    before = tree_digests(folder)
    result = profile(fast_profile, "-n", 1, "--export-bundles", folder, "--out", tmp_path / "d")
    assert_one_line_error(result, str(folder), "--overwrite")
    assert tree_digests(folder) == before


def test_import_and_export_exclude_remote(fast_profile, tmp_path):
    remote = ["--remote", "ssh://u@h"]
    result = profile(fast_profile, "--import", tmp_path / "r.jsonl", *remote)
    assert_one_line_error(result, "--import")
    result = profile(fast_profile, "--export-bundles", tmp_path / "b", *remote)
    assert_one_line_error(result, "--export-bundles")
    assert not (tmp_path / "b").exists()


# latency.jobs


def a_job(passes: int | None = None, profile: str = "onnxruntime-cpu") -> Job:
    """A job of two made-up architectures (the bundles are never read)."""
    items = tuple(JobItem({"width": w}, f"{w:064x}", [float(w), 1.0], 1000 * w) for w in (1, 2))
    return Job("r" * 24, load_profile(profile), items, passes, "f" * 64, {"measured_by": "x"})


def a_record(job: Job, width: int = 1, **fields) -> dict:
    record = {
        "arch": {"width": width},
        "features": [float(width), 1.0],
        "latency_ms": 1.5,
        "profile_digest": job.profile.digest(),
        "bundle_digest": f"{width:064x}",
    }
    return {**record, **fields}


def requested(job: Job, any_bundle: bool = False) -> dict:
    return {arch_key(i.arch): None if any_bundle else i.bundle for i in job.items}


def test_job_file_round_trip(tmp_path):
    for job in (a_job(), a_job(passes=3, profile="onnxruntime-cpu-quick")):
        path = tmp_path / "job.json"
        write_job(job, path)
        back = read_job(path)
        assert back == job and back.digest() == job.digest()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == job.digest()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["profile"].update(repeats=d["profile"]["repeats"] + 1), "digest"),
        (lambda d: d["profile"].update(backend="torch-cpu"), "digest"),
        (lambda d: d.update(format=2), "not a format-1"),
        (lambda d: d.update(passes=0), "passes"),
        (lambda d: d["items"][0].pop("bundle"), "malformed"),
    ],
    ids=["repeats", "backend", "format", "passes", "no bundle"],
)
def test_changed_job_file_refused(tmp_path, change, says):
    path = tmp_path / "job.json"
    write_job(a_job(), path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=says) as error:
        read_job(path)
    assert str(path) in str(error.value)


def test_job_file_not_json(tmp_path):
    path = tmp_path / "job.json"
    path.write_text("{nope")
    with pytest.raises(BundleError, match="not JSON"):
        read_job(path)
    with pytest.raises(BundleError, match="no such measuring job"):
        read_job(tmp_path / "missing.json")


def test_merge_appends_each_record_once(tmp_path):
    job, dataset = a_job(), tmp_path / "lat.jsonl"
    merge = DatasetMerge(dataset, job, requested(job))
    assert merge.missing() == 2
    assert merge.add(a_record(job, 1)) is True
    assert merge.add(a_record(job, 1, latency_ms=9.0)) is False  # already there
    assert merge.missing() == 1
    assert merge.add(a_record(job, 2)) is True
    assert (merge.added, merge.duplicates, merge.missing()) == (2, 1, 0)
    assert [r["arch"]["width"] for r in read_records(dataset)] == [1, 2]

    again = DatasetMerge(dataset, job, requested(job))  # a rerun reads what is there
    assert again.add(a_record(job, 1)) is False and again.add(a_record(job, 2)) is False
    assert len(read_records(dataset)) == 2


def test_merge_by_pass(tmp_path):
    job, dataset = a_job(passes=2), tmp_path / "lat.jsonl"
    merge = DatasetMerge(dataset, job, requested(job))
    assert merge.missing() == 4
    assert merge.add(a_record(job, 1, **{"pass": 0})) is True
    assert merge.add(a_record(job, 1, **{"pass": 1})) is True
    assert merge.add(a_record(job, 1, **{"pass": 1})) is False
    assert merge.missing() == 2


@pytest.mark.parametrize(
    ("passes", "fields", "says"),
    [
        (None, {"profile_digest": "0" * 12}, "profile digest"),
        (None, {"profile_digest": None}, "profile digest"),
        (None, {"arch": {"width": 3}}, "not in the job"),
        (None, {"arch": None}, "no 'arch'"),
        (None, {"bundle_digest": "e" * 64}, "bundle"),
        (None, {"bundle_digest": None}, "bundle"),
        (None, {"pass": 0}, "once"),
        (2, {}, "pass None"),
        (2, {"pass": 2}, "pass 2"),
        (2, {"pass": -1}, "pass -1"),
        (2, {"pass": "0"}, "pass '0'"),
        (None, {"latency_ms": -1.0}, "latency_ms"),
        (None, {"features": "x"}, "features"),
    ],
)
def test_merge_refuses_what_the_job_did_not_ask(tmp_path, passes, fields, says):
    job, dataset = a_job(passes=passes), tmp_path / "lat.jsonl"
    merge = DatasetMerge(dataset, job, requested(job))
    with pytest.raises(BundleError, match=says):
        merge.add(a_record(job, 1, **fields))
    assert not dataset.exists() and merge.added == 0


def test_merge_accepts_any_bundle_where_asked(tmp_path):
    """A record streamed back from an earlier attempt carries that attempt's bundle: accepted
    where the requested digest is None; of another profile, never."""
    job, dataset = a_job(), tmp_path / "lat.jsonl"
    merge = DatasetMerge(dataset, job, requested(job, any_bundle=True))
    assert merge.add(a_record(job, 1, bundle_digest="e" * 64)) is True
    with pytest.raises(BundleError, match="profile digest"):
        merge.add(a_record(job, 2, profile_digest="0" * 12))


def test_merge_keeps_the_dataset_width(tmp_path):
    job, dataset = a_job(), tmp_path / "lat.jsonl"
    dataset.write_text(json.dumps(a_record(job, 1, features=[1.0, 1.0, 1.0])) + "\n")
    merge = DatasetMerge(dataset, job, requested(job))
    with pytest.raises(BundleError, match="2 features, the dataset's records have 3"):
        merge.add(a_record(job, 2))


def test_merge_counts_records_of_other_profiles_as_missing(tmp_path):
    """The dataset's records of another profile digest neither count as done nor block."""
    job, dataset = a_job(), tmp_path / "lat.jsonl"
    dataset.write_text(json.dumps(a_record(job, 1, profile_digest="0" * 12)) + "\n")
    merge = DatasetMerge(dataset, job, requested(job))
    assert merge.missing() == 2
    assert merge.add(a_record(job, 1)) is True


@pytest.mark.parametrize("encoder_width", [128, 64], ids=["same widths", "narrower encoder"])
def test_shared_weights_are_stored_once_and_run_alike(tmp_path, encoder_width):
    """A translation bundle keeps its token table once (shared.bin, external data of both
    graphs; the encoder's narrower table a Slice of it, the projection a Transpose): the folder
    is two tables smaller than the graph files, and ONNX Runtime computes the very same outputs
    from it as from the original graphs."""
    import numpy as np

    from devices import ModelBundle, open_device
    from latency.bundles import read_bundle, write_bundle
    from latency.workloads import translation_workload
    from mos_search.costs.profiling import ArchModels, translation_bundle
    from mos_search.space import load_space

    space = load_space("cpu-tiny")
    arch = space.arch_from_dict({**space.largest().to_dict(), "encoder_embed_dim": encoder_width})
    model = ArchModels(space, 2000).model(arch)
    original = translation_bundle(model, "onnx", tmp_path / "graphs")
    digest = write_bundle(original, tmp_path / "bundles")
    folder = tmp_path / "bundles" / digest
    meta = json.loads((folder / "bundle.json").read_text())
    table = 2000 * arch.decoder_embed_dim * 4  # the decoder's, the wider here
    assert meta["shared"]["bytes"] >= table
    before = sum(Path(p).stat().st_size for p in original.onnx.values())
    after = sum(p.stat().st_size for p in folder.iterdir())
    saved = 2000 * encoder_width * 4 + table  # the encoder's table and the transposed copy
    assert after <= before - 0.95 * saved
    shared = read_bundle(tmp_path / "bundles", digest)
    profile = load_profile("onnxruntime-cpu")
    outputs = []
    for bundle in (original, shared):
        assert isinstance(bundle, ModelBundle)
        with open_device(profile) as device:
            device.load(bundle)
            outputs.append(np.concatenate(translation_workload(device, bundle, profile)()))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_onnx_runtime_folds_the_shared_expressions_away(tmp_path):
    """After ONNX Runtime's optimisation the shared bundle's graphs run the very operators the
    exported ones do: the Slice and Transpose of the shared table are folded at load."""
    from collections import Counter

    import onnx
    import onnxruntime as ort

    from latency.bundles import read_bundle, write_bundle
    from mos_search.costs.profiling import ArchModels, translation_bundle
    from mos_search.space import load_space

    space = load_space("cpu-tiny")
    arch = space.arch_from_dict({**space.largest().to_dict(), "encoder_embed_dim": 64})
    original = translation_bundle(ArchModels(space, 2000).model(arch), "onnx", tmp_path / "g")
    shared = read_bundle(tmp_path / "b", write_bundle(original, tmp_path / "b"))
    for graph in ("encoder", "decoder_step"):
        ops = []
        for i, bundle in enumerate((original, shared)):
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.optimized_model_filepath = str(tmp_path / f"{graph}-{i}.onnx")
            ort.InferenceSession(
                str(bundle.onnx[graph]), options, providers=["CPUExecutionProvider"]
            )
            optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
            ops.append(Counter(node.op_type for node in optimized.graph.node))
        assert ops[0] == ops[1], graph
