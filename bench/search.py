"""NSGA-II vs HAT's evolutionary search on the same problem: hypervolume reached per evaluation.

Both algorithms search the same trained supernet (validation loss on a fixed slice) and the same
latency predictor under the same latency budget, in one run. Each gets its own evaluator (so
each counts its own oracle calls, requests and cache hits); the oracle's scores are memoised
across the two to save time, and each algorithm is charged the oracle seconds of the
architectures it scored itself, so the compared times are what each would cost alone.

Prints a table (hypervolume against oracle calls, per generation) and writes JSON. Goal: NSGA-II
reaches HAT-evo's final hypervolume with at most a third of HAT-evo's oracle calls.

    python bench/search.py --ckpt runs/supernet \
        --predictor mos_search/shipped/onnxruntime-cpu/predictor.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# bench/latency.py shares its name with the `latency` package: keep this folder off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from latency.predictor import LatencyPredictor  # noqa: E402
from mos_search.models.transformer import count_parameters  # noqa: E402
from mos_search.oracle.scoring import Oracle  # noqa: E402
from mos_search.search.config import Budget, SearchConfig  # noqa: E402
from mos_search.search.objectives import latency_functions  # noqa: E402
from mos_search.search.problem import ArchEvaluator  # noqa: E402
from mos_search.search.run import open_run, run_search  # noqa: E402


class MemoOracle:
    """Validation loss, computed once per architecture; remembers what each score cost."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle, self.scores, self.seconds = oracle, {}, {}

    def charged(self, ledger: list[float]):
        def quality(arch) -> float:
            key = arch.to_json()
            if key not in self.scores:
                started = time.perf_counter()
                self.scores[key] = self.oracle.loss(arch)
                self.seconds[key] = time.perf_counter() - started
            ledger.append(self.seconds[key])
            return self.scores[key]

        return quality


def run_one(name, algorithm, population, generations, args, memo, predictor, work):
    oracle = memo.oracle
    space, vocab = oracle.space, oracle.loaded.vocab_size
    budgets = (Budget.latency_ms(args.budget_ms, "device"),)
    ledger: list[float] = []
    config = SearchConfig(
        algorithm=algorithm,
        generations=generations,
        population=population,
        seed=args.seed,
        devices=("device",),
        budgets=budgets,
    )
    out, _ = open_run(work / name, config, resume=False)
    evaluator = ArchEvaluator(
        space,
        quality=memo.charged(ledger),
        metric="loss",
        costs=latency_functions({"device": predictor}, space),
        params=lambda a: count_parameters(a, vocab, space.qkv_dim, space.share_embeddings),
        budgets=budgets,
        log_path=out / "evaluations.jsonl",
    )
    started = time.perf_counter()
    oracle_seconds = []

    def on_generation(record):
        oracle_seconds.append(sum(ledger))
        print(
            f"  {name} gen {record['generation']:>2}: HV {record['hypervolume']:.4f}  "
            f"oracle calls {record['oracle_calls']}  requests {record['requests']}",
            flush=True,
        )

    result = run_search(config, evaluator, out, None, on_generation)
    history = [dict(h, oracle_seconds=s) for h, s in zip(result.history, oracle_seconds)]
    return {
        "algorithm": algorithm,
        "population": population,
        "generations": generations,
        "history": history,
        "final_hypervolume": history[-1]["hypervolume"],
        "oracle_calls": evaluator.oracle_calls,
        "requests": evaluator.requests,
        "cache_hits": evaluator.cache_hits,
        "oracle_seconds": sum(ledger),
        "wall_seconds": time.perf_counter() - started,
        "front_size": len(result.front),
    }


def calls_to_reach(history: list[dict], target: float) -> tuple[int | None, int | None]:
    """Oracle calls and generation at which `history` first reaches `target` hypervolume."""
    for h in history:
        if h["hypervolume"] >= target - 1e-12:
            return h["oracle_calls"], h["generation"]
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data")
    parser.add_argument("--predictor", required=True)
    parser.add_argument("--limit", type=int, default=100, help="validation sentences scored")
    parser.add_argument("--budget-ms", type=float, help="[default: the median predicted latency]")
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--nsga2-population", type=int, default=40)
    parser.add_argument("--hat-population", type=int, default=125)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/search.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    oracle = Oracle(
        args.ckpt, args.data, "valid", args.limit, cache_path=None, threads=args.threads
    )
    predictor = LatencyPredictor.load(args.predictor, list(oracle.space.feature_names))
    if args.budget_ms is None:
        import random

        rng = random.Random(0)
        samples = sorted(
            float(predictor.predict_ms(oracle.space.features(oracle.space.sample(rng)))[0])
            for _ in range(1000)
        )
        args.budget_ms = round(samples[len(samples) // 2], 1)
    print(f"latency budget {args.budget_ms} ms (predicted); validation slice {args.limit}")
    memo = MemoOracle(oracle)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hat = run_one(
            "hat-evo", "hat-evo", args.hat_population, args.generations, args, memo, predictor, work
        )
        nsga = run_one(
            "nsga2", "nsga2", args.nsga2_population, args.generations, args, memo, predictor, work
        )
    target = hat["final_hypervolume"]
    calls, generation = calls_to_reach(nsga["history"], target)
    ratio = None if calls is None else calls / hat["oracle_calls"]
    print()
    print(
        f"{'':<10}{'final HV':>10}{'oracle calls':>14}{'requests':>10}{'cache hits':>12}"
        f"{'oracle s':>10}{'wall s':>9}"
    )
    for r in (hat, nsga):
        print(
            f"{r['algorithm']:<10}{r['final_hypervolume']:>10.4f}{r['oracle_calls']:>14}"
            f"{r['requests']:>10}{r['cache_hits']:>12}{r['oracle_seconds']:>10.1f}"
            f"{r['wall_seconds']:>9.1f}"
        )
    if calls is None:
        print(f"NSGA-II did not reach HAT-evo's final hypervolume {target:.4f}")
    else:
        print(
            f"NSGA-II reached HAT-evo's final hypervolume {target:.4f} at generation {generation} "
            f"with {calls} oracle calls: {ratio:.2f} of HAT-evo's {hat['oracle_calls']} "
            f"(goal <= 0.33)"
        )
    result = {
        "args": vars(args),
        "hat_evo": hat,
        "nsga2": nsga,
        "nsga2_calls_to_hat_final_hv": calls,
        "ratio_of_hat_calls": ratio,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
