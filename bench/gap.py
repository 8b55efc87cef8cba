"""Supernet-vs-standalone gap: the experiment the MoS paper is about, on our default corpus.

For each mode (shared, layer, neuron by default) a supernet is trained with the same budget; K
architectures (fixed seed, largest and smallest included) are each also trained alone with the
same number of steps. Every architecture is then scored twice, inherited from each supernet and
standalone, on the validation split: translation spaces give the loss (NLL per target token) and
greedy BLEU; BERT spaces give the masked-LM loss (NLL per masked token, fixed masks) and
perplexity. Reported per mode: mean absolute and signed difference (inherited - standalone) and
Kendall tau of the two rankings.

Every training is a resumable `mos-search train` run and every score is cached, so an interrupted
benchmark continues where it stopped. Two trainings run at once (one thread each).

    python bench/gap.py --data data/bible-4k --space cpu-tiny --steps 400 --archs 6
    python bench/gap.py --data data/bible-en --space bert-cpu --modes shared,neuron --archs 4 \\
        --steps 300 --work bench/work/gap-bert --out bench/results/gap-bert.json
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

from mos_search.constants import MODES
from mos_search.models.checkpoint import read_state
from mos_search.oracle.scoring import Oracle
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
    parser.add_argument("--archs", type=int, default=6, help="K, incl. largest and smallest")
    parser.add_argument("--modes", default=",".join(MODES), help="supernet modes, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bleu-limit", type=int, default=500, help="validation sentences for BLEU")
    parser.add_argument("--workers", type=int, default=2, help="trainings at once")
    parser.add_argument("--work", default="bench/work/gap", help="run folders and logs")
    parser.add_argument("--out", default="bench/results/gap.json")
    args = parser.parse_args()

    space = load_space(args.space)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {sorted(unknown)}; choose from {', '.join(MODES)}")
    bert = space.task == "bert"
    second = "perplexity" if bert else "bleu"
    rng = random.Random(args.seed)
    archs = [space.largest(), space.smallest()]
    while len(archs) < args.archs:
        candidate = space.sample(rng)
        if candidate not in archs:
            archs.append(candidate)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "archs.json").write_text(json.dumps([a.to_dict() for a in archs], indent=1))

    jobs = [(work / f"supernet-{m}", ["--mode", m]) for m in modes]
    for i, arch in enumerate(archs):
        arch_file = work / f"arch{i}.json"
        arch_file.write_text(arch.to_json())
        jobs.append((work / f"standalone-{i}", ["--arch", str(arch_file)]))
    started = time.time()
    with ThreadPoolExecutor(args.workers) as pool:
        seconds = list(pool.map(lambda job: run_training(job[0], args, job[1]), jobs))
    train_minutes = {job[0].name: round(s / 60, 1) for job, s in zip(jobs, seconds)}
    print(f"training done in {(time.time() - started) / 60:.1f} min wall")

    def scores(run: Path, which: list) -> dict[str, list[float]]:
        oracle = Oracle(run, args.data, "valid")
        if bert:
            return {
                "loss": [oracle.loss(a) for a in which],
                second: [oracle.perplexity(a) for a in which],
            }
        limited = Oracle(run, args.data, "valid", limit=args.bleu_limit)
        return {
            "loss": [oracle.loss(a) for a in which],
            "bleu": [limited.bleu(a, beam=1).score for a in which],
        }

    standalone = {"loss": [], second: []}
    for i, arch in enumerate(archs):
        for metric, values in scores(work / f"standalone-{i}", [arch]).items():
            standalone[metric].append(values[0])
    signature = None
    if not bert:
        signature = (
            Oracle(work / "standalone-0", args.data, "valid", limit=args.bleu_limit)
            .bleu(archs[0], beam=1)
            .signature
        )

    table, inherited = {}, {}
    for mode in modes:
        inherited[mode] = scores(work / f"supernet-{mode}", archs)
        row = {}
        for metric in ("loss", second):
            diffs = [a - b for a, b in zip(inherited[mode][metric], standalone[metric])]
            tau = kendalltau(inherited[mode][metric], standalone[metric]).statistic
            row[metric] = {
                "mean_abs": statistics.fmean(abs(d) for d in diffs),
                "mean_signed": statistics.fmean(diffs),
                "kendall_tau": float(tau),
            }
        table[mode] = row

    scored = (
        "loss = valid NLL per masked token (fixed masks), perplexity = exp(loss)"
        if bert
        else f"loss = valid NLL/token, BLEU greedy on {args.bleu_limit} valid (spread)"
    )
    print(
        f"\n{args.space}, {args.data}, {args.steps} steps x {args.max_tokens} tokens per run, "
        f"K={len(archs)}; {scored}"
    )
    short = "PPL" if bert else "BLEU"
    print(
        f"{'mode':<8}{'|dLoss|':>9}{'dLoss':>9}{'tau(L)':>8}"
        f"{'|d' + short + '|':>9}{'d' + short:>9}{'tau(' + short[0] + ')':>8}"
    )
    for mode, row in table.items():
        lo, q = row["loss"], row[second]
        print(
            f"{mode:<8}{lo['mean_abs']:>9.3f}{lo['mean_signed']:>+9.3f}{lo['kendall_tau']:>8.2f}"
            f"{q['mean_abs']:>9.2f}{q['mean_signed']:>+9.2f}{q['kendall_tau']:>8.2f}"
        )
    print(f"\nper arch: standalone loss / {short}, then inherited per mode")
    for i in range(len(archs)):
        inh = "  ".join(
            f"{m} {inherited[m]['loss'][i]:.3f}/{inherited[m][second][i]:.1f}" for m in modes
        )
        print(f"arch{i}: standalone {standalone['loss'][i]:.3f}/{standalone[second][i]:.1f}  {inh}")
    if signature:
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
