"""Decoding speed with vs without the incremental key/value cache, same model, same sentences.

Greedy and beam search over N validation sentences (spread over the split), cached and uncached
interleaved per repeat; both must produce identical output (checked). Prints a table, writes JSON.

    python bench/decode.py --ckpt bench/work/gap/supernet-neuron --sentences 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mos_search.oracle.decode import translate_ids
from mos_search.oracle.scoring import Oracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data")
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/decode.json")
    args = parser.parse_args()

    oracle = Oracle(
        args.ckpt, args.data, "valid", limit=args.sentences, cache_path=None, threads=args.threads
    )
    torch.set_num_threads(args.threads)
    rows = []
    for label, arch in (("largest", oracle.space.largest()), ("smallest", oracle.space.smallest())):
        model = oracle.loaded.sub_network(arch)
        for beam in args.beams:
            times: dict[bool, list[float]] = {True: [], False: []}
            outputs = {}
            for _ in range(args.repeats):
                for cache in (True, False):
                    start = time.perf_counter()
                    outputs[cache] = translate_ids(model, oracle.data, beam=beam, cache=cache)
                    times[cache].append(time.perf_counter() - start)
            assert outputs[True] == outputs[False], "cached and uncached decoding differ"
            cached, full = statistics.median(times[True]), statistics.median(times[False])
            tokens = sum(len(h) + 1 for h in outputs[True])
            rows.append(
                {
                    "arch": label,
                    "beam": beam,
                    "cached_s": cached,
                    "uncached_s": full,
                    "speedup": full / cached,
                    "output_tokens": tokens,
                }
            )
    print(f"{args.sentences} valid sentences, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'arch':<10}{'beam':>5}{'cached s':>10}{'no cache s':>12}{'speed-up':>10}{'tok/s':>8}")
    for r in rows:
        print(
            f"{r['arch']:<10}{r['beam']:>5}{r['cached_s']:>10.2f}{r['uncached_s']:>12.2f}"
            f"{r['speedup']:>9.2f}x{r['output_tokens'] / r['cached_s']:>8.0f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
