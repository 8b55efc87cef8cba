"""bench/gpu_check: the script is complete, refuses a machine without a GPU, and its chain runs
on the CPU (`--device cpu`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


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
    assert [row["check"] for row in table] == [
        "gpu tests",
        "profile onnxruntime-cpu-quick",
        "predictor",
        "profile tensorrt",
        "train fp32",
        "torchrun 2 GPUs",
    ]
    assert all(row["ok"] for row in table)
    assert "steps, loss" in table[4]["detail"]
