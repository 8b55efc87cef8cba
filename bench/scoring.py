"""Parallel scoring: one generation of candidates scored sequentially vs by a pool of workers.

The same N architectures (fixed seed) of a supernet checkpoint are scored on the validation
slice twice: by one oracle at one thread, one after another, and by `--workers` processes at one
thread each (`Oracle.score_many` with a `ScoringPool`, as `search --workers` does). Neither run
uses a cache. Reports wall times (the pool's start-up separately), the speed-up, and checks that
both give the same numbers.

    python bench/scoring.py --ckpt runs/cpu-small-neuron --archs 24 --limit 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from mos_search.oracle.pool import ScoringPool
from mos_search.oracle.scoring import Oracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="runs/cpu-small-neuron")
    parser.add_argument("--data", help="corpus folder [default: the checkpoint's]")
    parser.add_argument("--archs", type=int, default=24, help="candidates (one generation)")
    parser.add_argument("--limit", type=int, default=200, help="validation sentences")
    parser.add_argument("--metric", default="loss", help="loss, perplexity (BERT) or bleu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/scoring.json")
    args = parser.parse_args()

    oracle = Oracle(args.ckpt, args.data, "valid", args.limit, cache_path=None, threads=1)
    rng = random.Random(args.seed)
    archs = []
    while len(archs) < args.archs:
        arch = oracle.space.sample(rng)
        if arch not in archs:
            archs.append(arch)

    started = time.perf_counter()
    sequential = [oracle.compute(a, args.metric, beam=1)[0]["value"] for a in archs]
    sequential_s = time.perf_counter() - started

    started = time.perf_counter()
    pool = ScoringPool(oracle.settings(), args.workers)
    pool.compute(archs[:1], args.metric, 1)  # start the workers (each loads the checkpoint)
    startup_s = time.perf_counter() - started
    started = time.perf_counter()
    parallel = [record["value"] for record, _ in pool.compute(archs, args.metric, 1)]
    parallel_s = time.perf_counter() - started
    pool.close()

    identical = parallel == sequential
    print(f"{args.archs} archs of {args.ckpt}, {args.limit} validation sentences, {args.metric}")
    print(f"{'':<28}{'seconds':>9}{'per arch':>10}")
    print(f"{'sequential, 1 thread':<28}{sequential_s:>9.1f}{sequential_s / len(archs):>10.2f}")
    label = f"{args.workers} workers, 1 thread each"
    print(f"{label:<28}{parallel_s:>9.1f}{parallel_s / len(archs):>10.2f}")
    print(f"{'pool start-up (once)':<28}{startup_s:>9.1f}")
    print(f"speed-up {sequential_s / parallel_s:.2f}x; identical scores: {identical}")
    result = {
        "args": vars(args),
        "sequential_s": sequential_s,
        "parallel_s": parallel_s,
        "startup_s": startup_s,
        "speedup": sequential_s / parallel_s,
        "identical": identical,
        "scores": sequential,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
