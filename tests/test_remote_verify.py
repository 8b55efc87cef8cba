"""Verifying a search's front and exporting a model with latency measured elsewhere: on a real
OpenSSH server on 127.0.0.1 (the `sshd` fixture) with a Python without torch (`agent_python`),
or offline as bundle folders measured by their `measure.sh` and imported back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from latency.dataset import arch_key, read_records
from latency.jobs import read_job
from latency.ssh import RemoteOptions, SshTarget
from mos_search.cli import main
from mos_search.costs.elsewhere import Elsewhere, MeasurementsPending
from mos_search.errors import ConfigError
from mos_search.search.verify import verify_front

from conftest import assert_one_line_error, tree_digests

PASSES = 2
PROFILE = "fast"  # the fast_profile fixture's file is fast.toml: its profile's name


def remote_of(sshd, python: str, folder: Path) -> RemoteOptions:
    """What `--remote` and its options give for the test server, keeping its files in
    `folder`."""
    return RemoteOptions(
        SshTarget.parse(sshd.url), python=python, directory=str(folder), ssh_config=sshd.config
    )


def front_run(tiny_run: Path, device: str, run: Path) -> list:
    """A run folder whose front.json holds the space's smallest and largest members, their
    predicted costs keyed by `device`; the archs."""
    from mos_search.models.build import load_model

    space = load_model(tiny_run).space
    archs = [space.smallest(), space.largest()]
    run.mkdir(parents=True)
    front = [{"arch": a.to_dict(), "costs": {device: 5.0}} for a in archs]
    (run / "front.json").write_text(json.dumps(front))
    return archs


def verify(
    run: Path,
    tiny_run: Path,
    device: str,
    elsewhere: Elsewhere | None = None,
    passes: int = PASSES,
) -> list:
    drift = {device: (2.0, 0.5)}
    return verify_front(
        run,
        str(tiny_run),
        None,
        drift,
        test_limit=4,
        beam=1,
        passes=passes,
        progress=False,
        elsewhere=elsewhere,
    )


def by_arch_and_pass(records: list[dict]) -> dict[tuple[str, int], dict]:
    keys = [(arch_key(r["arch"]), r["pass"]) for r in records]
    assert len(set(keys)) == len(keys), "an (arch, pass) recorded twice"
    return dict(zip(keys, records))


def assert_rows_from(rows: list[dict], records: list[dict], device: str) -> None:
    """verified.json's rows hold what these records measured, pass by pass."""
    found = by_arch_and_pass(records)
    for row in rows:
        key = arch_key(row["arch"])
        raw = [found[(key, p)]["latency_ms"] for p in range(PASSES)]
        assert row["measured_passes_raw_ms"][device] == raw
        assert len(row["measured_passes_ms"][device]) == PASSES
        low, high = row["measured_interval_ms"][device]
        assert low <= row["measured_scaled_ms"][device] <= high
        assert row["predicted_latency_ms"][device] == 5.0 and "test_bleu" in row


def assert_verified(run: Path, rows: list[dict]) -> None:
    verified = json.loads((run / "verified.json").read_text())
    assert verified["passes"] == PASSES and verified["archs"] == rows


def test_verify_front_over_ssh(tiny_run, sshd, agent_python, fast_profile, tmp_path, monkeypatch):
    """Each arch measured in every pass on the target (records saying where, and which bundle);
    verified.json as a local verification writes it; a rerun asks the target for nothing."""
    from latency.remote import Remote

    device, folder = fast_profile, tmp_path / "agent"
    archs = front_run(tiny_run, device, tmp_path / "run")
    elsewhere = Elsewhere(remote=remote_of(sshd, agent_python, folder))
    rows = verify(tmp_path / "run", tiny_run, device, elsewhere)

    dataset = tmp_path / "run" / f"measured_{PROFILE}.jsonl"
    records = read_records(dataset)
    found = by_arch_and_pass(records)
    assert set(found) == {(arch_key(a.to_dict()), p) for a in archs for p in range(PASSES)}
    for record in records:
        assert record["measured_by"] == sshd.url
        digest = record["bundle_digest"]
        assert len(digest) == 64 and (folder / "bundles" / digest / "bundle.json").is_file()
        assert "torch" not in record["env"]["versions"]
    assert_verified(tmp_path / "run", rows)
    assert_rows_from(rows, records, device)

    front_run(tiny_run, device, tmp_path / "local")
    local = verify(tmp_path / "local", tiny_run, device)  # measured here
    assert len(local) == len(rows)
    for mine, theirs in zip(local, rows):
        assert set(mine) == set(theirs)
        for name in ("arch", "test_bleu", "predicted_latency_ms", "beam"):
            assert mine[name] == theirs[name], name
        for name, value in mine.items():
            if isinstance(value, dict) and device in value:
                assert set(theirs[name]) == {device}, name

    def refuse(*args, **kwargs):
        raise AssertionError("measured again on the target")

    monkeypatch.setattr(Remote, "measure", refuse)
    before = tree_digests(dataset, folder)
    again = verify(tmp_path / "run", tiny_run, device, elsewhere)
    assert tree_digests(dataset, folder) == before  # nothing measured, sent or written there
    assert again == rows


@pytest.fixture(scope="module")
def target_python(agent_python, tmp_path_factory) -> str:
    """A Python like a target's after the README's `pip install onnxruntime numpy`: a venv with
    `agent_python`'s packages except mos-search's own (devices, latency), so only a bundle
    folder's agent/ can run the measuring."""
    find = "import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))"
    site = Path(subprocess.check_output([agent_python, "-c", find], text=True).strip())
    venv = tmp_path_factory.mktemp("target") / "venv"
    subprocess.run([agent_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = Path(subprocess.check_output([python, "-c", purelib], text=True).strip())
    for entry in site.iterdir():
        ours = entry.name in ("devices", "latency") or entry.name.startswith("mos_search")
        if not ours and entry.suffix != ".pth" and not (own / entry.name).exists():
            (own / entry.name).symlink_to(entry)
    subprocess.run([python, "-c", "import onnxruntime, numpy"], check=True)
    lacks = subprocess.run([python, "-c", "import latency"], cwd=venv, capture_output=True)
    assert lacks.returncode != 0
    return python


def run_measure_sh(folder: Path, python: str) -> subprocess.CompletedProcess:
    """Measure a bundle folder as its README says, with `python` (PYTHON=...)."""
    done = subprocess.run(
        ["./measure.sh"],
        cwd=folder,  # as its README says; not here, where `python -m` would find ./latency
        env={**os.environ, "PYTHON": python},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_verify_front_offline(tiny_run, target_python, fast_profile, tmp_path):
    """Bundles exported and verification pending; measured by measure.sh; an incomplete results
    file refused; the whole one completes verification; exporting again writes nothing."""
    device, bundles, run = fast_profile, tmp_path / "bundles", tmp_path / "run"
    archs = front_run(tiny_run, device, run)
    with pytest.raises(MeasurementsPending) as pending:
        verify(run, tiny_run, device, Elsewhere(export_bundles=bundles))
    folder = bundles / PROFILE
    message = str(pending.value)
    assert str(folder) in message and f"--verify-import {folder / 'results.jsonl'}" in message
    assert "measure.sh" in message and "--resume" in message
    assert not (run / "verified.json").exists()
    assert not (run / f"measured_{PROFILE}.jsonl").exists()
    assert {p.name for p in folder.iterdir()} >= {"job.json", "bundles", "agent", "measure.sh"}
    assert os.access(folder / "measure.sh", os.X_OK)
    assert (folder / "agent" / "latency" / "agent.py").is_file()
    job = read_job(folder / "job.json")
    assert job.passes == PASSES and job.extra["measured_by"] == "bundles"
    assert {arch_key(i.arch) for i in job.items} == {arch_key(a.to_dict()) for a in archs}
    for digest in job.bundles():
        assert (folder / "bundles" / digest / "bundle.json").is_file()

    run_measure_sh(folder, target_python)
    results = folder / "results.jsonl"
    whole = results.read_text()
    lines = whole.splitlines(keepends=True)
    assert len(lines) == len(archs) * PASSES

    # exporting again before importing would drop what measure.sh wrote: refused, untouched
    measured = tree_digests(bundles)
    with pytest.raises(ConfigError, match="holds measurements: import them first"):
        verify(run, tiny_run, device, Elsewhere(export_bundles=bundles))
    assert tree_digests(bundles) == measured

    results.write_text("".join(lines[:-1]))  # one (arch, pass) short
    with pytest.raises(ConfigError, match=r"still lacks 1 measurement.*measure\.sh"):
        verify(run, tiny_run, device, Elsewhere(imports=(results,)))
    assert not (run / "verified.json").exists()

    results.write_text(whole)
    rows = verify(run, tiny_run, device, Elsewhere(imports=(results,)))
    records = read_records(run / f"measured_{PROFILE}.jsonl")
    found = by_arch_and_pass(records)
    assert set(found) == {(arch_key(a.to_dict()), p) for a in archs for p in range(PASSES)}
    bundle_of = {arch_key(i.arch): i.bundle for i in job.items}
    for record in records:
        assert record["measured_by"] == "bundles"
        assert record["bundle_digest"] == bundle_of[arch_key(record["arch"])]
    assert_verified(run, rows)
    assert_rows_from(rows, records, device)

    # one pass more than the bundles held: refused, never measured here to fill the gap
    dataset = run / f"measured_{PROFILE}.jsonl"
    kept = tree_digests(dataset)
    with pytest.raises(ConfigError, match="lacks measurements the imported results do not hold"):
        verify(run, tiny_run, device, Elsewhere(imports=(results,)), passes=PASSES + 1)
    assert tree_digests(dataset) == kept

    before = tree_digests(bundles, run / f"measured_{PROFILE}.jsonl")
    again = verify(run, tiny_run, device, Elsewhere(export_bundles=bundles))
    assert again == rows
    assert tree_digests(bundles, run / f"measured_{PROFILE}.jsonl") == before
    verify(run, tiny_run, device, Elsewhere(export_bundles=tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def search_args(tiny_run: Path, device: str, predictor: Path, out: Path) -> list[str]:
    return [
        *("search", "--ckpt", str(tiny_run), "--device", device, "--predictor", str(predictor)),
        *("--generations", "1", "--population", "4", "--limit", "5"),
        *("--verify-limit", "4", "--verify-beam", "1", "--verify-max", "2"),
        *("--verify-passes", str(PASSES), "--out", str(out)),
    ]


def test_cli_search_verified_offline(tiny_run, target_python, fast_profile, tmp_path):
    """`search --verify-export-bundles` stops before verified.json and the report, saying how to
    go on; measured, `--resume --verify-import` finishes both."""
    from test_search import tiny_predictor

    from mos_search.models.build import load_model

    predictor = tmp_path / "predictor.json"
    tiny_predictor(vocab=load_model(tiny_run).vocab_size).save(predictor)
    out, bundles = tmp_path / "search", tmp_path / "bundles"
    args = search_args(tiny_run, fast_profile, predictor, out)
    result = CliRunner().invoke(main, [*args, "--verify-export-bundles", str(bundles)])
    assert result.exit_code == 0, result.output
    folder = bundles / PROFILE
    assert "verification waits for measurements" in result.output
    assert f"--verify-import {folder / 'results.jsonl'}" in result.output
    assert "verified:" not in result.output and "report:" not in result.output
    assert (out / "front.json").is_file()
    assert not (out / "verified.json").exists() and not (out / "report").exists()

    run_measure_sh(folder, target_python)
    imported = ["--resume", "--verify-import", str(folder / "results.jsonl")]
    result = CliRunner().invoke(main, [*args, *imported])
    assert result.exit_code == 0, result.output
    assert "verified: test BLEU" in result.output and "report:" in result.output
    verified = json.loads((out / "verified.json").read_text())
    assert verified["archs"] and verified["passes"] == PASSES
    records = read_records(out / f"measured_{PROFILE}.jsonl")
    assert records and all(r["measured_by"] == "bundles" for r in records)
    assert (out / "report").is_dir()


def test_cli_search_refuses_two_ways_to_measure_and_bert_elsewhere(tiny_run, tmp_path):
    """--remote with --verify-export-bundles, and --remote for a BERT search: one line each,
    before any run folder or bundle folder is made."""
    out = tmp_path / "search"
    base = ["search", "--ckpt", str(tiny_run), "--out", str(out)]
    both = ["--remote", "ssh://u@h", "--verify-export-bundles", str(tmp_path / "b")]
    assert_one_line_error(CliRunner().invoke(main, [*base, *both]), "choose one way")
    assert_one_line_error(
        CliRunner().invoke(main, [*base, "--task", "bert", "--remote", "ssh://u@h"]),
        "BERT",
        "--remote",
    )
    assert not out.exists() and not (tmp_path / "b").exists()


def test_cli_export_measured_over_ssh(tiny_run, sshd, agent_python, fast_profile, tmp_path):
    """The card's latency measured on the target: where, on what (no torch there), how many
    passes; `--quantize int8` with `--remote` refused before anything is written."""
    from test_remote import assert_error_line, remote_args

    from mos_search.models.build import load_model

    arch = tmp_path / "arch.json"
    arch.write_text(load_model(tiny_run).space.smallest().to_json())
    folder = tmp_path / "agent"

    def export(out: Path, *more: str):
        args = ["export", "--ckpt", str(tiny_run), "--arch", str(arch), "--out", str(out)]
        args += ["--device", fast_profile, "--test-limit", "3", "--beam", "1", *more]
        return CliRunner().invoke(main, [*args, *remote_args(sshd, agent_python, folder)])

    out = tmp_path / "model"
    result = export(out)
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "card.json").read_text())["latency"][fast_profile]
    assert entry["measured_by"] == sshd.url
    assert "onnxruntime" in entry["env"]["versions"]
    assert "torch" not in entry["env"]["versions"]
    assert entry["passes"] == 3 and len(entry["passes_ms"]) == 3
    assert entry["latency_ms"] > 0 and entry["profile"] == PROFILE

    quantized = tmp_path / "int8"
    assert_error_line(export(quantized, "--quantize", "int8"), "--quantize int8", "--remote")
    assert not quantized.exists()


def test_remote_options_and_targets():
    """`~/` paths become relative (commands run in the remote home); IPv6 hosts print in
    brackets; port 0 is refused."""
    options = RemoteOptions(SshTarget("h"), python="~/v/bin/python", directory="~/x")
    assert (options.python, options.directory) == ("v/bin/python", "x")
    assert str(SshTarget("::1", "u", 22)) == "ssh://u@[::1]:22"
    assert str(SshTarget("h")) == "ssh://h"
    assert SshTarget.parse("ssh://u@[::1]:22") == SshTarget("::1", "u", 22)
    with pytest.raises(ValueError, match="port"):
        SshTarget.parse("ssh://u@h:0")
