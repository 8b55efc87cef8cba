"""Measuring on another machine over SSH (`profile --remote`), against a real OpenSSH server on
127.0.0.1 (the `sshd` fixture, host keys checked) and a Python without torch (`agent_python`):
records as a local profile writes them, nothing measured twice, nothing lost when the connection
drops, host keys enforced, and every bad target refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from latency.dataset import arch_key, read_records
from latency.remote import Remote
from mos_search.cli import main

from conftest import assert_one_line_error, tree_digests

REMOTE_EXTRAS = {"bundle_digest", "measured_by"}


def profile(fast: str, n: int, out: Path, *args: str):
    """`mos-search profile` of `n` members of cpu-tiny (vocabulary 500) into `out`."""
    argv = ["profile", "--device", fast, "--space", "cpu-tiny", "--vocab-size", "500"]
    return CliRunner().invoke(main, [*argv, "-n", str(n), "--out", str(out), *args])


def remote_args(sshd, python: str, folder: Path, config: Path | None = None) -> list[str]:
    """The options that measure on the test server with `python`, keeping its files in
    `folder`."""
    config = config or sshd.config
    return [
        *("--remote", sshd.url, "--ssh-config", str(config)),
        *("--remote-python", python, "--remote-dir", str(folder)),
    ]


def assert_error_line(result, *fragments: str) -> str:
    """`assert_one_line_error` on stderr alone: a remote failure comes after the progress lines
    of exporting the bundles (and of what arrived), which go to stdout."""
    stderr = SimpleNamespace(
        output=result.stderr, exit_code=result.exit_code, exception=result.exception
    )
    line = assert_one_line_error(stderr, *fragments)
    assert "error" not in result.stdout, result.stdout
    return line


def remote_results(folder: Path) -> list[dict]:
    """The records of the agent's one results file under `folder`."""
    files = sorted((folder / "results").glob("*.jsonl"))
    assert len(files) == 1, files
    return read_records(files[0])


def ssh_clients(sshd) -> list[int]:
    """Local `ssh` processes still connected (or connecting) to the test server's port."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode(errors="replace")).name == "ssh" and str(sshd.port).encode() in argv:
            found.append(int(proc.name))
    return found


def assert_no_ssh_left(sshd) -> None:
    """No local ssh (a shared connection's master included) outlives the command."""
    deadline = time.monotonic() + 5
    while ssh_clients(sshd) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ssh_clients(sshd) == []


def by_arch(records: list[dict]) -> dict[str, dict]:
    keys = [arch_key(r["arch"]) for r in records]
    assert len(set(keys)) == len(keys), "an architecture recorded twice"
    return dict(zip(keys, records))


def test_remote_records_are_local_records(sshd, agent_python, fast_profile, tmp_path):
    """A remote profile writes what a local one writes (plus where and which bundle), measured
    by a Python without torch; rerun, it measures nothing."""
    local, remote, folder = tmp_path / "local.jsonl", tmp_path / "remote.jsonl", tmp_path / "agent"
    result = profile(fast_profile, 3, local)
    assert result.exit_code == 0, result.output
    result = profile(fast_profile, 3, remote, *remote_args(sshd, agent_python, folder))
    assert result.exit_code == 0, result.output
    assert "measured 3, already there 0" in result.output

    here, there = by_arch(read_records(local)), by_arch(read_records(remote))
    assert set(here) == set(there) and len(here) == 3
    for key, mine in here.items():
        theirs = there[key]
        assert set(theirs) == set(mine) | REMOTE_EXTRAS, set(theirs) ^ set(mine)
        for name, value in mine.items():
            assert type(theirs[name]) is type(value), (name, value, theirs[name])
        for name in ("features", "params", "param_bytes_fp32", "share_embeddings", "device"):
            assert theirs[name] == mine[name], name
        assert theirs["profile"] == mine["profile"]
        assert theirs["profile_digest"] == mine["profile_digest"]
        assert len(theirs["samples_ms"]) == len(mine["samples_ms"])
        assert theirs["measured_by"] == sshd.url
        digest = theirs["bundle_digest"]
        assert len(digest) == 64 and (folder / "bundles" / digest / "bundle.json").is_file()
        env = theirs["env"]
        assert set(env) == set(mine["env"])
        assert env["cpu"] and env["cores"] >= 1 and env["os"]
        assert "onnxruntime" in env["versions"] and "torch" not in env["versions"]
        assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    # the agent's results file on the target holds exactly what arrived
    assert by_arch(remote_results(folder)) == there

    before = tree_digests(remote, folder / "results")
    result = profile(fast_profile, 3, remote, *remote_args(sshd, agent_python, folder))
    assert result.exit_code == 0, result.output
    assert "measured 0, already there 3" in result.output
    assert tree_digests(remote, folder / "results") == before
    assert_no_ssh_left(sshd)


def kill_client(remote: Remote, sshd) -> None:
    """The local `ssh` dies (killed, out of memory)."""
    os.kill(remote.process.pid, signal.SIGKILL)


def kill_server(remote: Remote, sshd) -> None:
    """The connection drops at the far end (the server's process of it dies)."""
    for pid in sshd.sessions():
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("drop", [kill_client, kill_server], ids=["client", "server"])
def test_dropped_connection_loses_nothing(
    sshd, agent_python, fast_profile, tmp_path, monkeypatch, drop
):
    """The connection dies after the second record arrives: what arrived is kept, the error says
    to rerun, and the rerun brings every architecture exactly once (those the agent measured
    after the drop from its results file, without measuring them again)."""
    dataset, folder = tmp_path / "lat.jsonl", tmp_path / "agent"
    arrived: list[dict] = []
    stream = Remote.stream

    def dropping(self, argv, on_line):
        def hook(raw):
            on_line(raw)
            arrived.append(json.loads(raw))
            if len(arrived) == 2:
                drop(self, sshd)

        return stream(self, argv, hook)

    monkeypatch.setattr(Remote, "stream", dropping)
    result = profile(fast_profile, 4, dataset, *remote_args(sshd, agent_python, folder))
    assert_error_line(result, "rerun")
    assert_no_ssh_left(sshd)
    assert len(arrived) >= 2
    assert read_records(dataset) == arrived  # exactly what arrived, each once

    monkeypatch.setattr(Remote, "stream", stream)
    result = profile(fast_profile, 4, dataset, *remote_args(sshd, agent_python, folder))
    assert result.exit_code == 0, result.output
    records = read_records(dataset)
    assert records[: len(arrived)] == arrived  # kept as they were
    assert len(by_arch(records)) == 4  # every arch, none twice
    assert by_arch(remote_results(folder)) == by_arch(records)
    assert_no_ssh_left(sshd)


def other_host_key(folder: Path, port: int) -> str:
    """A known_hosts line with a key that is not the server's."""
    key = folder / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    text = key.with_name("impostor.pub").read_text().split()
    return f"[127.0.0.1]:{port} {text[0]} {text[1]}\n"


@pytest.mark.parametrize("case", ["unknown", "wrong", "unknown, config accepts new keys"])
def test_host_key_checked(sshd, agent_python, fast_profile, tmp_path, case):
    """A host key that is not known (or not the server's) stops the command before anything
    runs on the target, whatever the ssh_config says; --no-host-key-check lets it through."""
    known = other_host_key(tmp_path, sshd.port) if case == "wrong" else ""
    extra = ["StrictHostKeyChecking accept-new"] if "accepts" in case else []
    config = sshd.client_config(f"bad-{case.split(',')[0]}", known, *extra)
    known_hosts = config.with_name(config.name.replace("ssh_config", "known_hosts"))
    before = tree_digests(known_hosts)
    dataset, folder = tmp_path / "lat.jsonl", tmp_path / "agent"
    result = profile(fast_profile, 1, dataset, *remote_args(sshd, agent_python, folder, config))
    assert_error_line(result, "Host key verification failed", sshd.url)
    assert not dataset.exists() and not folder.exists()
    assert tree_digests(known_hosts) == before  # not learnt
    assert_no_ssh_left(sshd)

    if case != "wrong":
        return
    result = profile(
        fast_profile,
        1,
        dataset,
        *remote_args(sshd, agent_python, folder, config),
        "--no-host-key-check",
    )
    assert result.exit_code == 0, result.output
    assert "measured 1" in result.output and len(read_records(dataset)) == 1
    assert tree_digests(known_hosts) == before


def test_remote_dir_is_quoted(sshd, agent_python, fast_profile, tmp_path):
    """The target's shell sees every argument quoted: a --remote-dir with spaces, quotes and
    a command substitution is a folder name, nothing runs."""
    marker = tmp_path / "pwned"
    folder = tmp_path / f"it's a $(touch {marker}) dir; touch {marker}"
    dataset = tmp_path / "lat.jsonl"
    result = profile(fast_profile, 1, dataset, *remote_args(sshd, agent_python, folder))
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert len(remote_results(folder)) == 1


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://x", "expected ssh://"),
        ("ssh://", "expected ssh://"),
        ("ssh://-oProxyCommand=x", "host"),
        ("ssh://-oproxyjump", "host"),
        ("ssh://-l@h", "user"),
        ("ssh://u@h:99999", "port"),
        ("ssh://u@h:0", "port"),
        ("ssh://u:secret@h", "nothing more"),
        ("ssh://h/path", "nothing more"),
        ("ssh://a b", "host"),
        ("ssh://u;id@h", "user"),
    ],
)
def test_bad_remote_refused(fast_profile, tmp_path, url, says):
    dataset = tmp_path / "lat.jsonl"
    result = profile(fast_profile, 1, dataset, "--remote", url)
    assert_one_line_error(result, "--remote", says)
    assert not dataset.exists()


def test_ssh_options_need_remote(fast_profile, tmp_path, sshd):
    for option in (["--ssh-config", str(sshd.config)], ["--no-host-key-check"]):
        assert_one_line_error(
            profile(fast_profile, 1, tmp_path / "lat.jsonl", *option), "needs --remote"
        )


def test_remote_python_without_onnxruntime(sshd, fast_profile, tmp_path):
    """A Python without the agent's modules (a bare venv): one line naming them; one that is not
    there: one line saying so."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bare = str(venv / "bin" / "python")
    dataset, folder = tmp_path / "lat.jsonl", tmp_path / "agent"
    result = profile(fast_profile, 1, dataset, *remote_args(sshd, bare, folder))
    assert_error_line(result, bare, "lacks onnxruntime, numpy", "pip install")
    assert not dataset.exists()
    assert_no_ssh_left(sshd)

    missing = str(tmp_path / "nowhere" / "python3")
    result = profile(fast_profile, 1, dataset, *remote_args(sshd, missing, folder))
    assert_error_line(result, "checking the Python", missing)
    assert not dataset.exists()
