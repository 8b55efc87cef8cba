"""bench/gap_gpu.sh, the GPU gap run of issue 20, checked on the CPU (`--device cpu --tiny`):
it trains every supernet and standalone, runs `fidelity` and writes its table and plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_gap_script_runs_tiny_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    env["WORK"] = str(tmp_path / "work")
    command = ["bash", str(ROOT / "bench" / "gap_gpu.sh"), "--device", "cpu", "--tiny"]
    command += ["--modes", "shared,neuron"]  # two supernets keep it short
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "gap.json").read_text())
    assert summary["args"]["expert_inits"] == "scaled" and summary["args"]["device"] == "cpu"
    assert set(summary["table"]) == {"shared", "neuron-scaled"} and len(summary["archs"]) == 3
    # one architecture per size stratum: smallest, middle, largest
    assert summary["args"]["select"] == "size" and summary["params"] == sorted(summary["params"])
    assert len(set(summary["params"])) == 3
    steps = {"shared": 4, "neuron-scaled": 4, **{f"standalone-{i}": 4 for i in range(3)}}
    assert summary["steps_done"] == steps
    for row in summary["table"].values():
        for entry in row["loss"].values():
            assert entry["low"] <= entry["value"] <= entry["high"]
    assert "neuron-scaled loss" in done.stdout
    assert (tmp_path / "out" / "gap.png").stat().st_size > 10_000
    run = tmp_path / "work" / "supernet-neuron-scaled"
    config = json.loads((run / "train_config.json").read_text())
    assert config["expert_init"] == "scaled"
