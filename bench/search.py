"""Search methods compared by oracle calls: HAT-evo, NSGA-II, assisted NSGA-II and random search.

Every algorithm searches the same problem under the same latency budget, once per seed; each has
its own evaluator (so it counts its own oracle calls), and the oracle's scores are memoised
across them to save time. Per seed the target is HAT-evo's final hypervolume; each algorithm's
cost is the oracle calls at which it first reaches it, as a ratio of HAT-evo's calls. Reported:
the median ratio over seeds with a bootstrap interval (percentile, 2,000 resamples), the seeds
that never reached the target, and one plot of hypervolume against oracle calls for every
algorithm (mean over seeds, band: min to max). The goal of issue 27: assisted NSGA-II reaches
HAT-evo's final hypervolume with at most a third of its oracle calls.

Objectives:
- `supernet`: validation loss of a trained supernet on a fixed slice (`--ckpt`, `--limit`),
  latency from a predictor (`--predictor`); the oracle is the expensive part.
- `synthetic`: the same space and predictor, quality a fixed function of the architecture
  (loss falling with log-parameters, plus a per-architecture wobble and an encoder/decoder
  balance term, so that size alone does not rank it); cheap, for many seeds.

    python bench/search.py --objective synthetic --seeds 0,1,2,3,4
    python bench/search.py --objective supernet --ckpt pretrained/cpu-small-neuron \
        --predictor mos_search/shipped/onnxruntime-cpu/predictor.json --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

# bench/latency.py shares its name with the `latency` package: keep this folder off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from latency.predictor import LatencyPredictor  # noqa: E402
from mos_search.costs.predictors import shipped_path  # noqa: E402
from mos_search.models.transformer import count_parameters  # noqa: E402
from mos_search.search.config import Budget, SearchConfig  # noqa: E402
from mos_search.search.objectives import latency_functions  # noqa: E402
from mos_search.search.problem import ArchEvaluator  # noqa: E402
from mos_search.search.run import open_run, run_search  # noqa: E402
from mos_search.space import load_space  # noqa: E402

ALGORITHMS = ("hat-evo", "nsga2", "nsga2-assisted", "random")


class MemoOracle:
    """Quality computed once per architecture (across algorithms and seeds)."""

    def __init__(self, quality) -> None:
        self.quality, self.scores = quality, {}

    def __call__(self, arch) -> float:
        key = arch.to_json()
        if key not in self.scores:
            self.scores[key] = float(self.quality(arch))
        return self.scores[key]


def synthetic_quality(space, vocab: int):
    """Loss falling with log-parameters, an encoder/decoder balance term and a fixed wobble."""

    def quality(arch) -> float:
        params = count_parameters(arch, vocab, space.qkv_dim, space.share_embeddings)
        balance = (arch.encoder_embed_dim - arch.decoder_embed_dim) / 256
        wobble = (zlib.crc32(arch.to_json().encode()) % 1000) / 2e4
        return 9.0 - 0.45 * math.log(params) + 0.05 * balance**2 + wobble

    return quality


def run_one(algorithm, seed, args, space, quality, predictor, vocab, work) -> dict:
    """One search; its summary is kept in `work` so that a rerun of the benchmark skips it."""
    done = work / f"{algorithm}-{seed}.json"
    if done.exists():
        print(f"  seed {seed} {algorithm:<15} done before: {done}", flush=True)
        return json.loads(done.read_text())
    budgets = (Budget.latency_ms(args.budget_ms, "device"),)
    population = args.hat_population if algorithm == "hat-evo" else args.population
    generations = args.assisted_generations if algorithm == "nsga2-assisted" else args.generations
    config = SearchConfig(
        algorithm=algorithm,
        generations=generations,
        population=population,
        seed=seed,
        devices=("device",),
        budgets=budgets,
    )
    shutil.rmtree(work / f"{algorithm}-{seed}", ignore_errors=True)  # stopped: again, from cache
    out, _ = open_run(work / f"{algorithm}-{seed}", config, resume=False)
    evaluator = ArchEvaluator(
        space,
        quality=quality,
        metric="loss",
        costs=latency_functions({"device": predictor}, space),
        params=lambda a: count_parameters(a, vocab, space.qkv_dim, space.share_embeddings),
        budgets=budgets,
        log_path=out / "evaluations.jsonl",
    )
    started = time.perf_counter()
    result = run_search(config, evaluator, out, None)
    history = [
        {k: h[k] for k in ("generation", "hypervolume", "oracle_calls", "front_size")}
        | ({"surrogate": h["surrogate"]} if "surrogate" in h else {})
        for h in result.history
    ]
    print(
        f"  seed {seed} {algorithm:<15} HV {history[-1]['hypervolume']:.4f}  "
        f"oracle calls {evaluator.oracle_calls}  {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    summary = {"history": history, "oracle_calls": evaluator.oracle_calls}
    done.write_text(json.dumps(summary))
    return summary


def calls_to_reach(history: list[dict], target: float) -> int | None:
    """Oracle calls at which `history` first reaches `target` hypervolume (None: never)."""
    for h in history:
        if h["hypervolume"] >= target - 1e-12:
            return h["oracle_calls"]
    return None


def median_interval(values: list[float], resamples: int = 2000, seed: int = 0) -> dict:
    """Median with a percentile-bootstrap 95% interval; never-reached seeds count as inf."""
    data = np.array(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(data, (resamples, len(data))), axis=1)
    low, high = np.quantile(medians, [0.025, 0.975], method="inverted_cdf")  # inf stays inf
    return {"median": float(np.median(data)), "low": float(low), "high": float(high)}


def plot(runs: dict, out: Path) -> None:
    """Hypervolume against oracle calls, every algorithm, mean over seeds with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for algorithm, by_seed in runs.items():
        top = max(h["oracle_calls"] for r in by_seed.values() for h in r["history"])
        grid = np.linspace(0, top, 200)
        curves = []
        for r in by_seed.values():
            calls = [h["oracle_calls"] for h in r["history"]]
            hv = [h["hypervolume"] for h in r["history"]]
            curves.append(np.interp(grid, calls, hv, left=0.0, right=hv[-1]))
        curves = np.array(curves)
        ax.plot(grid, curves.mean(axis=0), label=algorithm)
        ax.fill_between(grid, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
    first = min(r["history"][0]["hypervolume"] for by in runs.values() for r in by.values())
    ax.set_ylim(bottom=0.95 * first)  # before its first generation an algorithm has no front
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("hypervolume (share of the fixed box)")
    ax.set_xscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def problem(args):
    """Space, quality function, latency predictor and vocabulary of the chosen objective."""
    if args.objective == "synthetic":
        space, vocab = load_space("cpu-small"), 8000
        predictor = LatencyPredictor.load(shipped_path("onnxruntime-cpu"))
        return space, synthetic_quality(space, vocab), predictor, vocab
    import torch

    from mos_search.oracle.scoring import Oracle

    torch.set_num_threads(args.threads)
    threads = args.threads
    cache = Path(args.work) / "score_cache.jsonl"  # scores survive a stopped benchmark
    cache.parent.mkdir(parents=True, exist_ok=True)
    oracle = Oracle(args.ckpt, args.data, "valid", args.limit, cache_path=cache, threads=threads)
    predictor = LatencyPredictor.load(args.predictor, list(oracle.space.feature_names))
    return oracle.space, oracle.loss, predictor, oracle.loaded.vocab_size


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", choices=["synthetic", "supernet"], default="synthetic")
    parser.add_argument("--ckpt", help="supernet objective: the supernet")
    parser.add_argument("--data")
    parser.add_argument("--predictor", help="supernet objective: the latency predictor")
    parser.add_argument("--limit", type=int, default=100, help="validation sentences scored")
    parser.add_argument("--budget-ms", type=float, help="[default: the median predicted latency]")
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument(
        "--assisted-generations",
        type=int,
        help="[default: 4 x --generations: each of its generations sends a quarter of the "
        "population to the oracle, so it asks the oracle for as many candidates as NSGA-II]",
    )
    parser.add_argument("--population", type=int, default=40, help="of every algorithm but HAT")
    parser.add_argument("--hat-population", type=int, default=125, help="HAT's published size")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="[default: bench/results/search-OBJECTIVE.json]")
    parser.add_argument(
        "--work",
        help="finished searches and the supernet's score cache, so that a rerun resumes "
        "[default: bench/work/search-OBJECTIVE]",
    )
    args = parser.parse_args()
    if args.objective == "supernet" and not (args.ckpt and args.predictor):
        parser.error("--objective supernet needs --ckpt and --predictor")
    args.out = args.out or f"bench/results/search-{args.objective}.json"
    args.work = args.work or f"bench/work/search-{args.objective}"
    args.assisted_generations = args.assisted_generations or 4 * args.generations
    return args


def main() -> None:
    args = parse_args()
    space, quality, predictor, vocab = problem(args)
    if args.budget_ms is None:
        rng = random.Random(0)
        samples = sorted(
            float(predictor.predict_ms(space.features(space.sample(rng)))[0]) for _ in range(1000)
        )
        args.budget_ms = round(samples[len(samples) // 2], 1)
    seeds = [int(s) for s in args.seeds.split(",")]
    algorithms = [a for a in args.algorithms.split(",") if a]
    print(f"{args.objective}: latency budget {args.budget_ms} ms (predicted); seeds {seeds}")
    memo = MemoOracle(quality)
    runs: dict[str, dict[int, dict]] = {a: {} for a in algorithms}
    work = Path(args.work) / f"budget-{args.budget_ms}"
    work.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for algorithm in algorithms:
            runs[algorithm][seed] = run_one(
                algorithm, seed, args, space, memo, predictor, vocab, work
            )
    summary = {}
    for algorithm in algorithms:
        ratios, reached = [], 0
        for seed in seeds:
            target = runs["hat-evo"][seed]["history"][-1]["hypervolume"]
            calls = calls_to_reach(runs[algorithm][seed]["history"], target)
            hat_calls = runs["hat-evo"][seed]["oracle_calls"]
            ratios.append(math.inf if calls is None else calls / hat_calls)
            reached += calls is not None
        summary[algorithm] = {
            "ratio_of_hat_calls": median_interval(ratios),
            "ratios": ratios,
            "seeds_reaching": reached,
            "final_hypervolume": [runs[algorithm][s]["history"][-1]["hypervolume"] for s in seeds],
            "oracle_calls": [runs[algorithm][s]["oracle_calls"] for s in seeds],
        }
    print(f"\n{'algorithm':<16}{'seeds':>6}{'reached':>8}{'calls to HAT HV / HAT calls':>30}")
    for algorithm, row in summary.items():
        r = row["ratio_of_hat_calls"]
        print(
            f"{algorithm:<16}{len(seeds):>6}{row['seeds_reaching']:>8}"
            f"{r['median']:>14.3f} [{r['low']:.3f}, {r['high']:.3f}]"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": summary, "runs": runs}, indent=1))
    plot(runs, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
