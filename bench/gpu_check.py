"""GPU checks in one go: the `gpu` tests, a CUDA latency profile, TensorRT, bf16 supernet training.

Run by `bench/gpu_check.sh` on a machine with an NVIDIA GPU (about 5-8 minutes on one GPU):

1. `pytest -m "gpu or tensorrt"`: the CUDA device contract, bf16 training on the GPU, TensorRT
   engines (skipped, with the reason, when TensorRT is not importable).
2. `mos-search profile --device cuda` on N architectures of the HAT space, then a predictor
   trained on them (held-out error printed; 50 archs is a smoke test, not a predictor).
3. `mos-search profile --device tensorrt` on a few architectures, if `import tensorrt` works.
4. A short neuron-wise supernet training in bf16 on a synthetic corpus (no download needed):
   steps, tokens/s and the loss before and after; with 2+ GPUs also 2 ranks under torchrun (NCCL).

Every step's output goes to `--out`; the last thing printed is one table, whose rows read `ok`
(ran and passed), `FAILED`, or `skipped` with why the check did not run here (no TensorRT, fewer
than 2 GPUs, every selected test skipped, ...), then a summary line. Skipped rows do not fail the
run (exit status 1 only for a FAILED row, or when nothing ran at all) but never count as passed.
`--device cpu` runs the same chain on the CPU (tiny sizes) to check the script itself where no
GPU is at hand: there the GPU-only rows read `skipped`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

MT_WORDS = {
    "uno": "one", "dos": "two", "tres": "three", "casa": "house", "perro": "dog",
    "gato": "cat", "rojo": "red", "verde": "green", "grande": "big", "come": "eats",
    "ve": "sees", "el": "the", "y": "and", "sol": "sun", "agua": "water", "mar": "sea",
}  # fmt: skip


def synthetic_corpus(out: Path) -> Path:
    """A word-for-word Spanish->English corpus a supernet learns in minutes."""
    from mos_search.data.corpus import build_corpus

    def pairs(n: int, seed: int) -> list[tuple[str, str]]:
        rng, words = random.Random(seed), sorted(MT_WORDS)
        rows = []
        for _ in range(n):
            chosen = [rng.choice(words) for _ in range(rng.randint(5, 25))]
            rows.append((" ".join(chosen), " ".join(MT_WORDS[w] for w in chosen) + "."))
        return rows

    splits = {"train": pairs(20_000, 0), "valid": pairs(300, 1), "test": pairs(300, 2)}
    build_corpus(out, splits, "es", "en", vocab_size=200)
    return out


OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"
GPU_TESTS = ["-m", "gpu or tensorrt"]  # what the "gpu tests" row runs (pytest arguments)


@dataclass(frozen=True)
class Row:
    """One row of the table: a check and how it ended, `ok`, `FAILED` or `skipped` (not run)."""

    check: str
    status: str
    seconds: float
    detail: str

    def __post_init__(self) -> None:
        assert self.status in (OK, FAILED, SKIPPED), self.status


def skipped(check: str, reason: str) -> Row:
    """A row for a check that did not run here; its detail is `reason`, why not."""
    return Row(check, SKIPPED, 0.0, reason)


def run(name: str, command: list[str], log: Path, timeout: float) -> Row:
    """Run one check: `ok` when it exits 0, else `FAILED`; the detail is its last output line."""
    started = time.time()
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        output, ok = done.stdout + done.stderr, done.returncode == 0
    except subprocess.TimeoutExpired as exc:
        output, ok = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout:.0f} s", False
    log.write_text(output)
    print(output[-3000:], flush=True)
    lines = [line for line in output.splitlines() if line.strip()]
    last = lines[-1][:110] if lines else ""
    return Row(name, OK if ok else FAILED, time.time() - started, last)


@dataclass(frozen=True)
class PytestCounts:
    """What a pytest run did, read from its `--junitxml` report."""

    passed: int
    failed: int
    errors: int
    skipped: int
    skip_reasons: tuple[str, ...]  # distinct, in order of appearance

    @classmethod
    def read(cls, path: Path) -> PytestCounts:
        """The counts of a JUnit XML report as pytest writes it (an xfail counts as skipped)."""
        root = ElementTree.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        total = {
            key: sum(int(suite.get(key, 0)) for suite in suites)
            for key in ("tests", "failures", "errors", "skipped")
        }
        reasons = [e.get("message", "") for suite in suites for e in suite.iter("skipped")]
        return cls(
            passed=total["tests"] - total["failures"] - total["errors"] - total["skipped"],
            failed=total["failures"],
            errors=total["errors"],
            skipped=total["skipped"],
            skip_reasons=tuple(dict.fromkeys(r for r in reasons if r)),
        )

    def tally(self) -> str:
        """`3 passed, 1 skipped` (failures and errors named when there are any)."""
        parts = [f"{self.passed} passed"]
        parts += [
            f"{n} {what}" for n, what in ((self.failed, "failed"), (self.errors, "errors")) if n
        ]
        return ", ".join([*parts, f"{self.skipped} skipped"])


def pytest_row(name: str, args: list[str], out: Path, timeout: float) -> Row:
    """Run pytest on `args`. `ok` when it exits 0 and a test passed; `skipped` when it exits 0
    and every selected test skipped (the detail lists their reasons); `FAILED` otherwise
    (failures, errors, nothing selected, a timeout, no report)."""
    stem = name.replace(" ", "_")
    report = out / f"{stem}.xml"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", *args, "-q", "-rs", f"--junitxml={report}"]
    row = run(name, command, out / f"{stem}.log", timeout)
    if not report.is_file():
        return replace(row, status=FAILED, detail=f"no test report: {row.detail}")
    counts = PytestCounts.read(report)
    if row.status == OK and counts.passed:
        return replace(row, detail=counts.tally())
    if row.status == OK and counts.skipped:
        reasons = "; ".join(counts.skip_reasons) or "no reason given"
        return replace(row, status=SKIPPED, detail=f"all {counts.skipped} tests skipped: {reasons}")
    return replace(row, status=FAILED, detail=f"{counts.tally()}: {row.detail}")


def summary(rows: list[Row]) -> str:
    """One line: how many rows passed, failed and were skipped, naming the skipped ones."""
    named = {
        status: [r.check for r in rows if r.status == status] for status in (OK, FAILED, SKIPPED)
    }
    line = f"{len(named[OK])} ok, {len(named[FAILED])} FAILED, {len(named[SKIPPED])} skipped"
    if named[FAILED]:
        line += f"; failed: {', '.join(named[FAILED])}"
    if named[SKIPPED]:
        line += f"; not checked: {', '.join(named[SKIPPED])}"
    return line


def exit_status(rows: list[Row]) -> int:
    """1 when a check failed or none ran at all; skipped checks alone do not fail the run."""
    failed = any(r.status == FAILED for r in rows)
    return 1 if failed or not any(r.status == OK for r in rows) else 0


def training_summary(run_dir: Path) -> str:
    """Steps, throughput and loss from a run's metrics.jsonl."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return "no metrics.jsonl"
    records = [json.loads(x) for x in metrics.read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    if not losses:
        return "no steps logged"
    speed = sorted(r["tokens_per_s"] for r in losses)[len(losses) // 2]
    return (
        f"{losses[-1]['step']} steps, loss {losses[0]['loss']:.2f} -> {losses[-1]['loss']:.2f}, "
        f"median {speed:,} target tok/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/gpu_check")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--archs", type=int, default=50, help="architectures of the CUDA profile")
    parser.add_argument("--train-minutes", type=float, default=1.5)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    gpu = args.device == "cuda"
    mos = [sys.executable, "-m", "mos_search.cli"]
    table: list[Row] = []

    def check(
        name: str, command: list[str], timeout: float, detail: Callable[[], str] | None = None
    ) -> bool:
        row = run(name, command, out / f"{name.replace(' ', '_')}.log", timeout)
        if row.status == OK and detail is not None:
            row = replace(row, detail=detail())
        table.append(row)
        return row.status == OK

    import torch

    from devices import device_class

    if gpu and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to PyTorch: run this on a GPU machine (or --device cpu)")
    gpus = torch.cuda.device_count() if gpu else 0
    name = torch.cuda.get_device_name(0) if gpu else "CPU (script check only)"
    print(f"device: {name}; GPUs: {gpus}; torch {torch.__version__}", flush=True)

    table.append(pytest_row("gpu tests", GPU_TESTS, out, 300))

    space, device = ("hat-wmt14", "cuda") if gpu else ("cpu-tiny", "onnxruntime-cpu-quick")
    dataset = out / f"{device}-latency.jsonl"
    archs = args.archs if gpu else 12
    profiled = check(
        f"profile {device}",
        [*mos, "profile", "--device", device, "--space", space, "-n", str(archs),
         "--out", str(dataset)],
        300,
    )  # fmt: skip
    if profiled:
        check(
            "predictor",
            [*mos, "predictor", "train", "--dataset", str(dataset), "--space", space,
             "--out", str(out / "predictor.json")],
            120,
        )  # fmt: skip
    else:
        table.append(skipped("predictor", f"profile {device} failed: no dataset to train on"))
    no_tensorrt = device_class("tensorrt").unavailable_reason()
    if not gpu:
        table.append(skipped("profile tensorrt", "--device cpu checks the script, not TensorRT"))
    elif no_tensorrt:
        table.append(skipped("profile tensorrt", no_tensorrt))
    else:
        check(
            "profile tensorrt",
            [*mos, "profile", "--device", "tensorrt", "--space", space, "-n", "5",
             "--out", str(out / "tensorrt-latency.jsonl")],
            300,
        )  # fmt: skip

    data = synthetic_corpus(out / "corpus")
    train_space = "cpu-small" if gpu else "cpu-tiny"
    precision = "bf16" if gpu else "fp32"
    run_dir = out / "train-bf16" if gpu else out / "train-fp32"
    common = [
        "--data", str(data), "--space", train_space, "--mode", "neuron",
        "--max-tokens", "8192" if gpu else "1024", "--lr", "2e-3", "--warmup", "50",
        "--max-steps", "100000", "--valid-every", "0", "--save-every", "200",
        "--log-every", "5" if gpu else "1", "--precision", precision,
        "--device", "cuda" if gpu else "cpu",
    ]  # fmt: skip
    check(
        f"train {precision}",
        [*mos, "train", "--out", str(run_dir), "--minutes", str(args.train_minutes), *common],
        args.train_minutes * 60 + 240,
        lambda: training_summary(run_dir),
    )
    if gpus >= 2:
        ddp_dir = out / "train-ddp"
        check(
            "torchrun 2 GPUs",
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
             "mos_search.cli", "train", "--out", str(ddp_dir), "--minutes", "1", *common],
            300,
            lambda: training_summary(ddp_dir),
        )  # fmt: skip
    elif not gpu:
        table.append(skipped("torchrun 2 GPUs", "--device cpu checks the script, not NCCL"))
    else:
        table.append(skipped("torchrun 2 GPUs", f"NCCL needs 2 GPUs; {gpus} visible"))

    print(f"\nGPU check on {name}")
    print(f"{'check':<20}{'result':<8}{'seconds':>9}  detail")
    for row in table:
        print(f"{row.check:<20}{row.status:<8}{row.seconds:>9.1f}  {row.detail}")
    print(summary(table))
    (out / "table.json").write_text(json.dumps([asdict(row) for row in table], indent=1))
    sys.exit(exit_status(table))


if __name__ == "__main__":
    main()
