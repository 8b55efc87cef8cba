"""Supernet-vs-standalone gap: the experiment the MoS paper is about, on our default corpus.

For each mode (shared, layer, neuron) a supernet is trained with the same budget; K architectures
(fixed seed, largest and smallest included) are each also trained alone with the same number of
steps. Every architecture is then scored twice, inherited from each supernet and standalone:
validation loss (NLL per target token) and greedy BLEU on the validation split. Reported per mode:
mean absolute and signed difference (inherited - standalone) and Kendall tau of the two rankings.

Every training is a resumable `mos-search train` run and every score is cached, so an interrupted
benchmark continues where it stopped. Two trainings run at once (one thread each).

    python bench/gap.py --data data/bible-4k --space cpu-tiny --steps 400 --archs 6
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scipy.stats import kendalltau

from mos_search.checkpoint import read_state
from mos_search.constants import MODES
from mos_search.oracle import Oracle
from mos_search.space import load_space


def run_training(out: Path, args: argparse.Namespace, extra: list[str]) -> float:
    """Train (or resume) one run to `args.steps`; returns wall seconds spent now."""
    cmd = [
        sys.executable,
        "-m",
        "mos_search.cli",
        "train",
        "--data",
        args.data,
        "--out",
        str(out),
        "--space",
        args.space,
        "--max-steps",
        str(args.steps),
        "--max-tokens",
        str(args.max_tokens),
        "--lr",
        str(args.lr),
        "--warmup",
        str(args.warmup),
        "--valid-every",
        "0",
        "--save-every",
        "50",
        "--threads",
        "1",
        *extra,
    ]
    if (out / "checkpoints").exists():
        if read_state(out)["step"] >= args.steps:
            return 0.0
        cmd.append("--resume")
    started = time.time()
    log = (out.parent / f"{out.name}.log").open("a")
    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/bible-4k")
    parser.add_argument("--space", default="cpu-tiny")
    parser.add_argument("--steps", type=int, default=400, help="steps of every training run")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--archs", type=int, default=6, help="K >= 6 incl. largest and smallest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bleu-limit", type=int, default=500, help="validation sentences for BLEU")
    parser.add_argument("--workers", type=int, default=2, help="trainings at once")
    parser.add_argument("--work", default="bench/work/gap", help="run folders and logs")
    parser.add_argument("--out", default="bench/results/gap.json")
    args = parser.parse_args()

    space = load_space(args.space)
    rng = random.Random(args.seed)
    archs = [space.largest(), space.smallest()]
    while len(archs) < args.archs:
        candidate = space.sample(rng)
        if candidate not in archs:
            archs.append(candidate)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "archs.json").write_text(json.dumps([a.to_dict() for a in archs], indent=1))

    jobs = [(work / f"supernet-{m}", ["--mode", m]) for m in MODES]
    for i, arch in enumerate(archs):
        arch_file = work / f"arch{i}.json"
        arch_file.write_text(arch.to_json())
        jobs.append((work / f"standalone-{i}", ["--arch", str(arch_file)]))
    started = time.time()
    with ThreadPoolExecutor(args.workers) as pool:
        seconds = list(pool.map(lambda job: run_training(job[0], args, job[1]), jobs))
    train_minutes = {job[0].name: round(s / 60, 1) for job, s in zip(jobs, seconds)}
    print(f"training done in {(time.time() - started) / 60:.1f} min wall")

    def scores(run: Path) -> dict[str, list[float]]:
        oracle = Oracle(run, args.data, "valid")
        limited = Oracle(run, args.data, "valid", limit=args.bleu_limit)
        return {
            "loss": [oracle.loss(a) for a in archs],
            "bleu": [limited.bleu(a, beam=1).score for a in archs],
        }

    standalone = {"loss": [], "bleu": []}
    for i, arch in enumerate(archs):
        oracle = Oracle(work / f"standalone-{i}", args.data, "valid")
        limited = Oracle(work / f"standalone-{i}", args.data, "valid", limit=args.bleu_limit)
        standalone["loss"].append(oracle.loss(arch))
        standalone["bleu"].append(limited.bleu(arch, beam=1).score)
    signature = (
        Oracle(work / "standalone-0", args.data, "valid", limit=args.bleu_limit)
        .bleu(archs[0], beam=1)
        .signature
    )

    table, inherited = {}, {}
    for mode in MODES:
        inherited[mode] = scores(work / f"supernet-{mode}")
        row = {}
        for metric in ("loss", "bleu"):
            diffs = [a - b for a, b in zip(inherited[mode][metric], standalone[metric])]
            tau = kendalltau(inherited[mode][metric], standalone[metric]).statistic
            row[metric] = {
                "mean_abs": statistics.fmean(abs(d) for d in diffs),
                "mean_signed": statistics.fmean(diffs),
                "kendall_tau": float(tau),
            }
        table[mode] = row

    print(
        f"\n{args.space}, {args.data}, {args.steps} steps x {args.max_tokens} tokens per run, "
        f"K={len(archs)}; loss = valid NLL/token, BLEU greedy on {args.bleu_limit} valid (spread)"
    )
    print(
        f"{'mode':<8}{'|dLoss|':>9}{'dLoss':>9}{'tau(L)':>8}{'|dBLEU|':>9}{'dBLEU':>8}{'tau(B)':>8}"
    )
    for mode, row in table.items():
        lo, bl = row["loss"], row["bleu"]
        print(
            f"{mode:<8}{lo['mean_abs']:>9.3f}{lo['mean_signed']:>+9.3f}{lo['kendall_tau']:>8.2f}"
            f"{bl['mean_abs']:>9.2f}{bl['mean_signed']:>+8.2f}{bl['kendall_tau']:>8.2f}"
        )
    print("\nper arch: standalone loss / BLEU, then inherited loss per mode")
    for i in range(len(archs)):
        inh = "  ".join(
            f"{m} {inherited[m]['loss'][i]:.3f}/{inherited[m]['bleu'][i]:.1f}" for m in MODES
        )
        print(f"arch{i}: standalone {standalone['loss'][i]:.3f}/{standalone['bleu'][i]:.1f}  {inh}")
    print(f"sacreBLEU signature: {signature}")
    result = {
        "args": vars(args),
        "archs": [a.to_dict() for a in archs],
        "table": table,
        "standalone": standalone,
        "inherited": inherited,
        "train_minutes": train_minutes,
        "bleu_signature": signature,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
