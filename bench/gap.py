"""Supernet-vs-standalone gap: train the supernets and K architectures alone with one budget,
then `mos-search fidelity` (mos_search/fidelity/gap.py) on them: the gap and Kendall tau with
bootstrap intervals, a scatter plot and JSON.

For each mode (shared, layer, neuron by default) and each expert init (`--expert-inits`, MoS
modes only) a supernet is trained with the same budget; K architectures (fixed seed, largest
and smallest included) are each also trained alone with the same budget: `--steps`, or
`--minutes` where that ends first (then the steps each run reached depend on what shared the
device with it; the JSON's `steps_done` has them all). Every training is a resumable
`mos-search train` run and every score is cached, so an interrupted benchmark continues where
it stopped; `--workers` trainings run at once.

    python bench/gap.py --data data/bible --space cpu-tiny --steps 400 --archs 6
    python bench/gap.py --expert-inits independent,scaled --lr 1e-3 --warmup 400 --steps 800
    bash bench/gap_gpu.sh          # the GPU run: cpu-small, 10 archs, bf16, about 8 minutes
    python bench/gap.py --device cpu --tiny    # a check, in bench/work/gap-tiny
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# bench/latency.py shares its name with the `latency` package: keep this folder off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mos_search.constants import EXPERT_INITS, MODES  # noqa: E402
from mos_search.costs.profiling import sample_archs  # noqa: E402
from mos_search.data.corpus import open_corpus  # noqa: E402
from mos_search.fidelity import fidelity, table_lines  # noqa: E402
from mos_search.fidelity.size_quality import spread_by_size  # noqa: E402
from mos_search.files import write_json_atomic  # noqa: E402
from mos_search.models.build import count_arch_parameters  # noqa: E402
from mos_search.models.checkpoint import read_state  # noqa: E402
from mos_search.space import load_space  # noqa: E402

HERE = Path(__file__).resolve().parent


def tiny_corpus(out: Path) -> Path:
    """The synthetic word-for-word corpus of bench/gpu_check.py (no download)."""
    spec = importlib.util.spec_from_file_location("gpu_check", HERE / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    if not (out / "corpus.json").exists():
        module.synthetic_corpus(out)
    return out


def run_training(out: Path, args: argparse.Namespace, extra: list[str]) -> None:
    """Train (or resume) one run to `args.steps`."""
    cmd = [sys.executable, "-m", "mos_search.cli", "train", "--data", args.data, "--out", str(out)]
    cmd += ["--space", args.space, "--max-steps", str(args.steps)]
    cmd += ["--max-tokens", str(args.max_tokens), "--lr", str(args.lr)]
    cmd += ["--warmup", str(args.warmup), "--valid-every", "0"]
    cmd += ["--save-every", str(args.save_every)]
    cmd += ["--threads", str(args.threads), "--device", args.device]
    cmd += ["--precision", args.precision, *extra]
    if args.minutes:
        cmd += ["--minutes", str(args.minutes)]
    if (out / "checkpoints").exists():
        if read_state(out)["step"] >= args.steps:
            return
        cmd.append("--resume")
    with (out.parent / f"{out.name}.log").open("a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)


def select_archs(space, args: argparse.Namespace) -> tuple[list, list[int]]:
    """The K architectures trained alone and their parameter counts: spread over the parameter
    range (`--select size`: one per size stratum, as `mos-search size-quality` spreads them) or
    largest, smallest and uniform samples."""
    vocab = open_corpus(args.data).vocab_size

    def count(arch) -> int:
        return count_arch_parameters(space, arch, vocab)

    if args.select == "uniform":
        archs = sample_archs(space, args.archs, args.seed)
    else:
        archs = spread_by_size(space, count, args.archs, args.seed)
    return archs, [count(arch) for arch in archs]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/bible")
    parser.add_argument("--space", default="cpu-tiny")
    parser.add_argument("--steps", type=int, default=400, help="steps of every training run")
    parser.add_argument("--minutes", type=float, help="also stop every run after this long")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--archs", type=int, default=6, help="K, incl. largest and smallest")
    parser.add_argument(
        "--select",
        default="size",
        choices=["size", "uniform"],
        help="size: the K spread evenly over the parameter range (size strata); "
        "uniform: largest, smallest, then uniform samples",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="supernet modes, comma-separated")
    parser.add_argument(
        "--expert-inits", default="independent", help=f"of MoS modes: {', '.join(EXPERT_INITS)}"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bleu-limit", type=int, default=500, help="validation sentences for BLEU")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--workers", type=int, default=2, help="trainings at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument(
        "--save-every", type=int, default=50, help="checkpoint interval (a run always saves last)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="check the script: synthetic corpus, cpu-tiny, 3 archs, 4 steps (fp32 on a CPU)",
    )
    parser.add_argument(
        "--work", help="run folders and logs [default: bench/work/gap, with --tiny gap-tiny]"
    )
    parser.add_argument("--out", help="[default: bench/results/gap.json; --tiny: in --work]")
    args = parser.parse_args()
    # a check never writes where a real run keeps its runs and results
    args.work = args.work or ("bench/work/gap-tiny" if args.tiny else "bench/work/gap")
    args.out = args.out or (f"{args.work}/gap.json" if args.tiny else "bench/results/gap.json")
    if args.tiny:
        args.space, args.archs, args.steps, args.max_tokens = "cpu-tiny", 3, 4, 512
        args.bleu_limit, args.resamples, args.warmup = 20, 200, 2
        if args.device == "cpu":
            args.precision, args.threads, args.workers = "fp32", 1, 2
        args.data = str(tiny_corpus(Path(args.work) / "corpus"))
    return args


def main() -> None:
    args = parse_args()
    space = load_space(args.space)
    modes = [m for m in args.modes.split(",") if m]
    inits = [i for i in args.expert_inits.split(",") if i]
    unknown = (set(modes) - set(MODES)) | (set(inits) - set(EXPERT_INITS))
    if unknown or not modes or (not inits and set(modes) - {"shared"}):
        sys.exit(f"give known modes and expert inits (unknown: {sorted(unknown)})")
    archs, params = select_archs(space, args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    supernets: dict[str, Path] = {}
    jobs = []
    for mode in modes:
        for init in ["independent"] if mode == "shared" else inits:
            # the init is in the label unless it is the default, so runs keep their folder
            # whichever --expert-inits a rerun lists
            label = mode if init == "independent" else f"{mode}-{init}"
            supernets[label] = work / f"supernet-{label}"
            jobs.append((supernets[label], ["--mode", mode, "--expert-init", init]))
    standalones = []
    for i, arch in enumerate(archs):
        (work / f"arch{i}.json").write_text(arch.to_json())
        standalones.append(work / f"standalone-{i}")
        jobs.append((standalones[-1], ["--arch", str(work / f"arch{i}.json")]))
    started = time.time()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda job: run_training(job[0], args, job[1]), jobs))
    # each run's training time over all its sessions (wall clock, beside whatever else ran)
    train_minutes = {
        path.name: round(read_state(path)["elapsed_seconds"] / 60, 2) for path, _ in jobs
    }
    trained_s = time.time() - started
    print(f"training done in {trained_s / 60:.1f} min wall")
    result = fidelity(supernets, standalones, work, args.data, args.bleu_limit, args.resamples)
    print(f"\n{args.space}, {args.data}, {args.steps} steps x {args.max_tokens} tokens per run")
    for line in table_lines(result):
        print(line)
    summary = {
        "args": vars(args),
        "train_minutes": train_minutes,
        "train_wall_minutes_this_call": round(trained_s / 60, 2),
        "total_wall_minutes_this_call": round((time.time() - started) / 60, 2),
        "params": params,
        "steps_done": {
            **{name: read_state(path)["step"] for name, path in supernets.items()},
            **{path.name: read_state(path)["step"] for path in standalones},
        },
        **result,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, summary)
    shutil.copyfile(work / "fidelity.png", out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
