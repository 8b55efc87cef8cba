"""GPU checks in one go: the `gpu` tests, a CUDA latency profile, TensorRT, bf16 supernet training.

Run by `bench/gpu_check.sh` on a machine with an NVIDIA GPU (about 5-8 minutes on one GPU):

1. `pytest -m "gpu or tensorrt"`: the CUDA device contract, bf16 training on the GPU, TensorRT
   engines (skipped, with the reason, when TensorRT is not importable).
2. `mos-search profile --device cuda` on N architectures of the HAT space, then a predictor
   trained on them (held-out error printed; 50 archs is a smoke test, not a predictor).
3. `mos-search profile --device tensorrt` on a few architectures, if `import tensorrt` works.
4. A short neuron-wise supernet training in bf16 on a synthetic corpus (no download needed):
   steps, tokens/s and the loss before and after; with 2+ GPUs also 2 ranks under torchrun (NCCL).

Every step's output goes to `--out`; the last thing printed is one table. `--device cpu` runs
the same chain on the CPU (tiny sizes) to check the script itself where no GPU is at hand.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
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


def run(name: str, command: list[str], log: Path, timeout: float) -> tuple[bool, float, str]:
    """Run one check; (passed, seconds, last line of its output)."""
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
    return ok, time.time() - started, lines[-1][:110] if lines else ""


def training_summary(run_dir: Path) -> str:
    """Steps, throughput and loss from a run's metrics.jsonl."""
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
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
    table: list[tuple[str, bool, float, str]] = []

    def check(name: str, command: list[str], timeout: float, summary=None) -> bool:
        ok, seconds, last = run(name, command, out / f"{name.replace(' ', '_')}.log", timeout)
        table.append((name, ok, seconds, summary() if ok and summary else last))
        return ok

    import torch

    if gpu and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to PyTorch: run this on a GPU machine (or --device cpu)")
    gpus = torch.cuda.device_count() if gpu else 0
    name = torch.cuda.get_device_name(0) if gpu else "CPU (script check only)"
    print(f"device: {name}; GPUs: {gpus}; torch {torch.__version__}", flush=True)

    marker = "gpu or tensorrt"
    check("gpu tests", [sys.executable, "-m", "pytest", "-m", marker, "-q", "-rs"], 300)

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
    try:
        import tensorrt  # noqa: F401

        has_tensorrt = True
    except ImportError:
        has_tensorrt = False
    if has_tensorrt and gpu:
        check(
            "profile tensorrt",
            [*mos, "profile", "--device", "tensorrt", "--space", space, "-n", "5",
             "--out", str(out / "tensorrt-latency.jsonl")],
            300,
        )  # fmt: skip
    else:
        table.append(("profile tensorrt", True, 0.0, "skipped: TensorRT is not importable here"))

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
    else:
        table.append(("torchrun 2 GPUs", True, 0.0, f"skipped: {gpus} GPU(s) visible"))

    print(f"\nGPU check on {name}")
    print(f"{'check':<20}{'result':<8}{'seconds':>9}  detail")
    for check_name, ok, seconds, detail in table:
        print(f"{check_name:<20}{'ok' if ok else 'FAILED':<8}{seconds:>9.1f}  {detail}")
    (out / "table.json").write_text(
        json.dumps([dict(zip(("check", "ok", "seconds", "detail"), row)) for row in table])
    )
    sys.exit(0 if all(ok for _, ok, _, _ in table) else 1)


if __name__ == "__main__":
    main()
