"""Peak inference memory of an ONNX model under ONNX Runtime (CPU), measured in a fresh process.

The child process imports ONNX Runtime and numpy, notes its resident set (VmRSS), resets the
high-water mark (`/proc/self/clear_refs`), creates the session, runs the model a few times on a
batch of `length` tokens, and reports the high-water mark (VmHWM). Peak inference memory is the
difference: weights as loaded, ONNX Runtime's arenas and the activations, without the interpreter
and libraries. A fresh process per model keeps one measurement from inheriting another's
allocations. Linux only (it reads /proc).

Run as a script: `python -m devices.memory MODEL.onnx --length 128` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from devices.base import DeviceError

STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise DeviceError(f"{STATUS} has no {field}")


def resident_kib() -> int:
    """This process's resident set now (VmRSS, KiB)."""
    return _status_kib("VmRSS")


def reset_high_water_mark() -> None:
    """Set this process's high-water mark (VmHWM) to its current resident set."""
    Path("/proc/self/clear_refs").write_text("5")


def high_water_kib() -> int:
    """The largest resident set since the last reset (VmHWM, KiB)."""
    return _status_kib("VmHWM")


def check_linux() -> None:
    """Raise DeviceError where /proc cannot give the figures (not Linux)."""
    if not STATUS.exists():
        raise DeviceError("peak memory is measured from /proc: Linux only")


def run_child(command: list[str], what: str) -> dict:
    """Run a measuring child process; its last stdout line, parsed as JSON."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"peak-memory measurement of {what} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_here(model: str, length: int, batch: int, threads: int, runs: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    before = resident_kib()
    reset_high_water_mark()
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feeds = {}
    for graph_input in session.get_inputs():
        shape = [
            d if isinstance(d, int) else (batch if i == 0 else length)
            for i, d in enumerate(graph_input.shape)
        ]
        if "int" not in graph_input.type:
            raise DeviceError(f"{model}: input {graph_input.name} is {graph_input.type}, not ids")
        feeds[graph_input.name] = np.full(shape, 5, dtype=np.int64)
    for _ in range(runs):
        session.run(None, feeds)
    peak = high_water_kib()
    return {
        "model": model,
        "length": length,
        "batch": batch,
        "threads": threads,
        "baseline_mib": before / 1024,
        "peak_mib": peak / 1024,
        "peak_inference_mib": (peak - before) / 1024,
        "onnxruntime": ort.__version__,
    }


def peak_memory(
    model: str | Path, length: int = 128, batch: int = 1, threads: int = 1, runs: int = 3
) -> dict:
    """Measure `model` in a fresh Python process; the child's JSON record (MiB figures).

    Every input is an id tensor (B, S) filled with id 5, at batch `batch` and length `length`.
    """
    if not Path(model).is_file():
        raise DeviceError(f"ONNX file not found: {model}")
    check_linux()
    command = [
        sys.executable,
        "-m",
        "devices.memory",
        str(model),
        f"--length={length}",
        f"--batch={batch}",
        f"--threads={threads}",
        f"--runs={runs}",
    ]
    return run_child(command, str(model))


def main() -> None:
    """Command-line entry of the child process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    record = _measure_here(args.model, args.length, args.batch, args.threads, args.runs)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
