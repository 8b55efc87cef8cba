"""Latency predictors compared on one dataset: accuracy and interval calibration, in one run.

On a profiled dataset (default: the shipped 500-architecture `cpu-small` ONNX Runtime CPU one),
for several splits by architecture (20% held out), with labels drift-corrected as
`mos-search predictor train` does (elasticity fitted on the training architectures):
1. HAT's predictor: one MLP with four hidden layers of 400 on log-latency (mos-search 0.1's
   default had three);
2. a quadratic least-squares model of log-latency (the ensemble's base, alone);
3. the default predictor: a bagged ensemble (quadratic base + MLP on its residual) with
   conformal out-of-bag intervals.
Prints RMSE, MAPE, the share within +-5% / +-10%, Kendall tau and the coverage of the nominal
80% / 95% intervals, per split and averaged, and writes JSON.

    python bench/predictor.py --splits 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# keep this folder from shadowing the `latency` package (bench/latency.py)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from latency.accuracy import accuracy  # noqa: E402
from latency.predictor import LatencyPredictor, quadratic_terms, split_by_arch  # noqa: E402
from mos_search.costs.predictors import (  # noqa: E402
    held_out_accuracy,
    label,
    load_datasets,
    shipped_path,
)
from mos_search.space import load_space  # noqa: E402

FIELDS = ("mape", "within_5", "within_10", "kendall_tau", "coverage_80", "coverage_95")


def hat_mlp(x_train: np.ndarray, y_train: np.ndarray, seed: int):
    """HAT's latency MLP: four hidden layers of 400 (HAT's `latency_predictor.py`: a first
    layer, then `hidden_layer_num` = 3 more) on standardised features, log-latency target."""
    from sklearn.neural_network import MLPRegressor

    mean, scale = x_train.mean(0), np.where(x_train.std(0) > 0, x_train.std(0), 1.0)
    target = np.log(y_train)
    mlp = MLPRegressor(
        hidden_layer_sizes=(400, 400, 400, 400),
        max_iter=3000,
        tol=1e-7,
        early_stopping=True,
        n_iter_no_change=100,
        random_state=seed,
    )
    mlp.fit((x_train - mean) / scale, (target - target.mean()) / target.std())
    return lambda x: np.exp(mlp.predict((x - mean) / scale) * target.std() + target.mean())


def quadratic(x_train: np.ndarray, y_train: np.ndarray):
    """Least squares of log-latency on the standardised features' quadratic terms."""
    mean, scale = x_train.mean(0), np.where(x_train.std(0) > 0, x_train.std(0), 1.0)
    coef, *_ = np.linalg.lstsq(
        quadratic_terms((x_train - mean) / scale), np.log(y_train), rcond=None
    )
    return lambda x: np.exp(quadratic_terms((x - mean) / scale) @ coef)


def one_split(records: list[dict], names: list[str], seed: int) -> dict[str, dict]:
    """The three predictors' held-out accuracy on one split (and their fitting seconds)."""
    train, test = split_by_arch(len(records), 0.2, seed)
    data = label(records, [records[i] for i in train])
    x, y = data.features, data.labels_ms
    out = {}
    for name, fit in (
        ("HAT MLP 4x400", lambda: hat_mlp(x[train], y[train], seed)),
        ("quadratic least squares", lambda: quadratic(x[train], y[train])),
    ):
        started = time.perf_counter()
        predict = fit()
        out[name] = {**accuracy(predict(x[test]), y[test]).to_dict()}
        out[name]["fit_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    ensemble = LatencyPredictor.fit(x[train], y[train], names, seed=seed)
    out["ensemble (default)"] = held_out_accuracy(ensemble, x[test], y[test]).to_dict()
    out["ensemble (default)"]["fit_seconds"] = time.perf_counter() - started
    out["elasticity"] = data.elasticity
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(shipped_path("onnxruntime-cpu", "latency.jsonl")))
    parser.add_argument("--space", default="cpu-small")
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--out", default="bench/results/predictor.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    space = load_space(args.space)
    records = load_datasets([args.dataset], space)
    names = list(space.feature_names)
    splits = [one_split(records, names, seed) for seed in range(args.splits)]
    models = [k for k in splits[0] if k != "elasticity"]
    print(f"{len(records)} records, {args.splits} splits (20% held out each)")
    print(f"{'predictor':<26}{'split':>6}" + "".join(f"{f:>13}" for f in FIELDS))
    summary = {}
    for model in models:
        for seed, result in enumerate(splits):
            row = result[model]
            print(f"{model:<26}{seed:>6}" + "".join(f"{row[f]:>13.3f}" for f in FIELDS))
        mean = {f: statistics.fmean(s[model][f] for s in splits) for f in FIELDS}
        print(f"{model:<26}{'mean':>6}" + "".join(f"{mean[f]:>13.3f}" for f in FIELDS))
        summary[model] = mean
    result = {"dataset": args.dataset, "records": len(records), "splits": splits, "mean": summary}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
