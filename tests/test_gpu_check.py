"""bench/gpu_check: the script is complete, refuses a machine without a GPU, its chain runs on the
CPU (`--device cpu`), and its table claims only what ran: a check that did not run reads
`skipped` with the reason, never `ok`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SKIPPING_TESTS = """
import pytest

def test_needs_a_gpu():
    pytest.skip("no CUDA device")

@pytest.mark.skipif(True, reason="TensorRT is not installed")
def test_needs_tensorrt():
    pass
"""


@pytest.fixture(scope="module")
def gpu_check():
    """bench/gpu_check.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["gpu_check"]


def test_shell_entry_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")], check=False)
    assert done.returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the real check applies")
def test_without_a_gpu_it_says_so_and_fails(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--out", str(tmp_path / "g")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "no CUDA device" in done.stderr


@pytest.mark.parametrize(
    ("tests", "status", "detail"),
    [
        pytest.param(
            SKIPPING_TESTS + "\ndef test_runs():\n    pass\n", "ok", "1 passed, 2 skipped", id="ran"
        ),
        pytest.param(
            "def test_breaks():\n    assert False\n\ndef test_runs():\n    pass\n",
            "FAILED",
            "1 passed, 1 failed, 0 skipped: ",
            id="failed",
        ),
        pytest.param("", "FAILED", "0 passed, 0 skipped: no tests ran", id="none-selected"),
    ],
)
def test_the_tests_row_reads_pytests_report(gpu_check, tmp_path, tests, status, detail):
    """(Every test skipped: test_a_cpu_run_claims_only_what_ran.)"""
    (tmp_path / "test_gpu_stand_in.py").write_text(tests)
    row = gpu_check.pytest_row("gpu tests", [str(tmp_path / "test_gpu_stand_in.py")], tmp_path, 60)
    assert (row.check, row.status) == ("gpu tests", status)
    assert row.detail.startswith(detail)


def fake_checks(
    gpu_check, monkeypatch, tmp_path, failing: str = "", real_pytest: bool = True
) -> list[list[str]]:
    """Stand-ins for the slow steps of `main`: every command 'passes' at once (or fails, when
    it contains `failing`), except pytest, which runs for real on tests that all skip."""
    real_run, commands = gpu_check.run, []
    stand_in = tmp_path / "test_gpu_stand_in.py"
    stand_in.write_text(SKIPPING_TESTS)

    def run(name, command, log, timeout):
        commands.append(command)
        if "pytest" in command and real_pytest:
            return real_run(name, command, log, timeout)
        status = "FAILED" if failing and failing in command else "ok"
        return gpu_check.Row(name, status, 0.1, "stand-in")

    monkeypatch.setattr(gpu_check, "run", run)
    monkeypatch.setattr(gpu_check, "GPU_TESTS", [str(stand_in)])
    monkeypatch.setattr(gpu_check, "synthetic_corpus", lambda out: out)
    return commands


def run_main(gpu_check, monkeypatch, out: Path) -> int:
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--out", str(out)])
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main()
    return stopped.value.code


def test_a_cpu_run_claims_only_what_ran(gpu_check, monkeypatch, tmp_path, capsys):
    commands = fake_checks(gpu_check, monkeypatch, tmp_path)
    code = run_main(gpu_check, monkeypatch, tmp_path / "g")
    table = json.loads((tmp_path / "g" / "table.json").read_text())
    assert {row["check"]: (row["status"], row["detail"]) for row in table} == {
        "gpu tests": ("skipped", "all 2 tests skipped: no CUDA device; TensorRT is not installed"),
        "profile onnxruntime-cpu-quick": ("ok", "stand-in"),
        "predictor": ("ok", "stand-in"),
        "profile tensorrt": ("skipped", "--device cpu checks the script, not TensorRT"),
        "train fp32": ("ok", "no metrics.jsonl"),
        "torchrun 2 GPUs": ("skipped", "--device cpu checks the script, not NCCL"),
    }
    assert code == 0  # skipped rows do not fail the run...
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == (  # ...and the summary does not count them as passed
        "3 ok, 0 FAILED, 3 skipped; not checked: gpu tests, profile tensorrt, torchrun 2 GPUs"
    )
    assert any(line.split()[:3] == ["profile", "tensorrt", "skipped"] for line in printed)
    assert not any("tensorrt" in c or "torch.distributed.run" in c for c in commands)


def test_a_failed_profile_fails_the_run_and_skips_the_predictor(gpu_check, monkeypatch, tmp_path):
    fake_checks(gpu_check, monkeypatch, tmp_path, failing="profile", real_pytest=False)
    code = run_main(gpu_check, monkeypatch, tmp_path / "g")
    rows = {r["check"]: r for r in json.loads((tmp_path / "g" / "table.json").read_text())}
    assert code == 1
    assert rows["profile onnxruntime-cpu-quick"]["status"] == "FAILED"
    assert rows["predictor"]["status"] == "skipped"
    assert "profile onnxruntime-cpu-quick failed" in rows["predictor"]["detail"]


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["ok", "skipped", "skipped"], 0),
        (["ok", "FAILED", "skipped"], 1),
        (["skipped", "skipped"], 1),  # nothing ran: nothing was checked
    ],
)
def test_exit_status(gpu_check, statuses, code):
    rows = [gpu_check.Row(f"check {i}", s, 0.0, "") for i, s in enumerate(statuses)]
    assert gpu_check.exit_status(rows) == code


@pytest.mark.slow
def test_the_chain_runs_on_the_cpu(tmp_path):
    out = tmp_path / "g"
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--out", str(out),
         "--train-minutes", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    table = json.loads((out / "table.json").read_text())
    # without CUDA every `gpu`/`tensorrt` test skips, so that row must say so
    gpu_tests = "ok" if torch.cuda.is_available() else "skipped"
    assert [(row["check"], row["status"]) for row in table] == [
        ("gpu tests", gpu_tests),
        ("profile onnxruntime-cpu-quick", "ok"),
        ("predictor", "ok"),
        ("profile tensorrt", "skipped"),
        ("train fp32", "ok"),
        ("torchrun 2 GPUs", "skipped"),
    ]
    assert all(row["detail"] for row in table)  # a skipped row gives its reason
    if gpu_tests == "skipped":
        assert table[0]["detail"].startswith("all ") and "no CUDA device" in table[0]["detail"]
    assert "steps, loss" in table[4]["detail"]
    assert done.stdout.splitlines()[-1].startswith("3 ok, 0 FAILED, 3 skipped; not checked: ")
