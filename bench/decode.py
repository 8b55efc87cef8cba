"""Decoding speed with vs without the incremental key/value cache, same model, same sentences.

Greedy and beam search over N validation sentences (spread over the split), cached and uncached
alternated run by run through the measuring protocol (`latency.protocol.measure_pair`; warm-ups
likewise); the speed-up is the median of the per-round ratios uncached/cached, with its
order-statistic interval. Both must produce identical output (checked). Prints a table, writes
JSON.

    python bench/decode.py --ckpt bench/work/gap/supernet-neuron --sentences 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# bench/latency.py shares its name with the `latency` package: keep this folder from shadowing it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from devices import DeviceProfile, open_device  # noqa: E402
from latency.protocol import measure_pair  # noqa: E402
from mos_search.oracle.decode import translate_ids  # noqa: E402
from mos_search.oracle.scoring import Oracle  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data")
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmups", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/decode.json")
    args = parser.parse_args()

    oracle = Oracle(
        args.ckpt, args.data, "valid", limit=args.sentences, cache_path=None, threads=args.threads
    )
    torch.set_num_threads(args.threads)
    profile = DeviceProfile(
        name="decode",
        backend="torch-cpu",
        threads=args.threads,
        warmups=args.warmups,
        repeats=args.repeats,
        retries=0,
    )
    clock = open_device(profile)  # the CPU clock; the models run in this process
    rows = []
    for label, arch in (("largest", oracle.space.largest()), ("smallest", oracle.space.smallest())):
        model = oracle.loaded.sub_network(arch)
        for beam in args.beams:
            outputs = {}

            def decode(cache: bool, model=model, beam=beam, outputs=outputs):
                def run() -> None:
                    outputs[cache] = translate_ids(model, oracle.data, beam=beam, cache=cache)

                return run

            pair = measure_pair(clock, decode(True), clock, decode(False), profile)
            assert outputs[True] == outputs[False], "cached and uncached decoding differ"
            tokens = sum(len(h) + 1 for h in outputs[True])
            rows.append(
                {
                    "arch": label,
                    "beam": beam,
                    "cached_s": pair.a.seconds,
                    "uncached_s": pair.b.seconds,
                    "cached_interval_s": [pair.a.low_seconds, pair.a.high_seconds],
                    "uncached_interval_s": [pair.b.low_seconds, pair.b.high_seconds],
                    "speedup": pair.ratio,
                    "speedup_interval": [pair.ratio_low, pair.ratio_high],
                    "speedup_coverage": pair.ratio_coverage,
                    "output_tokens": tokens,
                }
            )
    print(
        f"{args.sentences} valid sentences, {args.threads} thread(s), median of {args.repeats} "
        "alternated runs"
    )
    print(
        f"{'arch':<10}{'beam':>5}{'cached s':>10}{'no cache s':>12}{'speed-up':>10}"
        f"{'interval':>16}{'tok/s':>8}"
    )
    for r in rows:
        low, high = r["speedup_interval"]
        print(
            f"{r['arch']:<10}{r['beam']:>5}{r['cached_s']:>10.2f}{r['uncached_s']:>12.2f}"
            f"{r['speedup']:>9.2f}x{f'[{low:.2f}, {high:.2f}]':>16}"
            f"{r['output_tokens'] / r['cached_s']:>8.0f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
