"""Predictor transfer to another device against training from scratch: the learning curve.

A source predictor (default: the shipped ONNX Runtime CPU one) and a dataset profiled on another
device (e.g. `torch-cpu-quick`, eager PyTorch). The target dataset is split by architecture into
a training pool and held-out architectures; for each size N in the curve, N architectures are
drawn from the pool (several draws), and two predictors are fitted on them: `predictor transfer`
(the source mapped by a line in log space) and `predictor train` from scratch (the default
ensemble). Both are scored on the same held-out architectures, labels drift-corrected as
`predictor train` does. Prints the table and writes JSON.

    python bench/transfer.py --dataset bench/results/transfer/torch-cpu-quick.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

# keep this folder from shadowing the `latency` package (bench/latency.py)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from latency.predictor import LatencyPredictor, split_by_arch  # noqa: E402
from mos_search.costs.predictors import (  # noqa: E402
    held_out_accuracy,
    label,
    load_datasets,
    shipped_path,
)
from mos_search.space import load_space  # noqa: E402

FIELDS = ("mape", "within_10", "kendall_tau", "coverage_80")


def curve_point(source, records, pool, test, size: int, draw: int) -> dict[str, dict]:
    """Transfer and from-scratch accuracy with `size` target architectures (one draw)."""
    rng = np.random.default_rng(1000 * size + draw)
    chosen = rng.choice(pool, size, replace=False)
    data = label(records, [records[i] for i in chosen])
    x, y = data.features, data.labels_ms
    names = source.feature_names
    transferred = LatencyPredictor.transfer(source, x[chosen], y[chosen])
    out = {"transfer": held_out_accuracy(transferred, x[test], y[test]).to_dict()}
    if size >= 10:
        scratch = LatencyPredictor.fit(x[chosen], y[chosen], names, seed=draw)
        out["scratch"] = held_out_accuracy(scratch, x[test], y[test]).to_dict()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(shipped_path("onnxruntime-cpu")))
    parser.add_argument("--dataset", required=True, help="profiled on the target device")
    parser.add_argument("--space", default="cpu-small")
    parser.add_argument("--sizes", default="10,20,30,50,100,200")
    parser.add_argument("--test", type=int, default=60, help="held-out target architectures")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--out", default="bench/results/transfer/transfer.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    space = load_space(args.space)
    source = LatencyPredictor.load(args.source, list(space.feature_names), space.name)
    records = load_datasets([args.dataset], space)
    pool, test = split_by_arch(len(records), args.test / len(records), 0)
    sizes = [int(s) for s in args.sizes.split(",") if int(s) <= len(pool)]
    print(
        f"source {args.source} ({source.meta.get('device')}); target {args.dataset}: "
        f"{len(records)} archs, {len(test)} held out, {args.draws} draws per size"
    )
    print(f"{'size':>6}{'method':>10}" + "".join(f"{f:>13}" for f in FIELDS))
    table = {}
    for size in sizes:
        draws = [curve_point(source, records, pool, test, size, d) for d in range(args.draws)]
        for method in draws[0]:
            mean = {f: statistics.fmean(d[method][f] for d in draws) for f in FIELDS}
            table[f"{size}/{method}"] = {"size": size, "method": method, **mean}
            print(f"{size:>6}{method:>10}" + "".join(f"{mean[f]:>13.3f}" for f in FIELDS))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "curve": table}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
