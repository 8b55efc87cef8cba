"""Train and evaluate per-device latency predictors from a profiled dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency.dataset import drift_corrected_ms, read_records
from latency.predictor import (
    Accuracy,
    LatencyPredictor,
    PredictorError,
    accuracy,
    dataset_digest,
    split_by_arch,
)
from mos_search.space import SearchSpace, load_space
from mos_search.transformer import count_parameters


@dataclass
class PredictorReport:
    """Held-out accuracy, the learning curve, and the labels' own repeatability."""

    test: Accuracy
    n_train: int
    curve: dict[int, Accuracy]
    corrected: bool


def _labels(records: list[dict], corrected: bool) -> np.ndarray:
    return np.array(
        drift_corrected_ms(records) if corrected else [r["latency_ms"] for r in records]
    )


def measured_vocab_size(record: dict, space: SearchSpace) -> int:
    """The vocabulary of a measured model, solved from its exact parameter count (linear in it)."""
    arch = space.arch_from_dict(record["arch"])
    base = count_parameters(arch, 0, space.qkv_dim)
    per_token = count_parameters(arch, 1, space.qkv_dim) - base
    return round((record["params"] - base) / per_token)


def train_latency_predictor(
    dataset: str | Path,
    out: str | Path,
    space_name: str,
    test_fraction: float = 0.2,
    seed: int = 0,
    corrected: bool = True,
    curve_sizes: tuple[int, ...] = (100, 200, 500),
    hidden: tuple[int, ...] = (400, 400, 400),
) -> PredictorReport:
    """Fit on a split by architecture, save, and report test accuracy and the learning curve."""
    records = read_records(dataset)
    if len(records) < 10:
        raise PredictorError(f"{dataset}: {len(records)} records; at least 10 are needed")
    space = load_space(space_name)
    names = list(space.feature_names)
    features = np.array([r["features"] for r in records])
    if features.shape[1] != len(names):
        raise PredictorError(
            f"{dataset} holds {features.shape[1]} features per record, space "
            f"{space.name!r} has {len(names)}"
        )
    labels = _labels(records, corrected)
    train, test = split_by_arch(len(records), test_fraction, seed)
    refs = [r["reference_ms"] for r in records if r.get("reference_ms")]
    meta = {
        "space": space.name,
        "device": records[0].get("profile"),
        "dataset_digest": dataset_digest(records),
        "drift_corrected": corrected,
        "reference_ms": float(np.median(refs)) if refs else None,
        "vocab_size": measured_vocab_size(records[0], space),
        "n_train": len(train),
    }
    predictor = LatencyPredictor.fit(features[train], labels[train], names, hidden, seed, meta)
    predictor.save(out)
    report_test = accuracy(predictor.predict_ms(features[test]), labels[test])
    curve = {}
    for size in curve_sizes:
        if size <= len(train):
            subset = train[:size]
            small = LatencyPredictor.fit(features[subset], labels[subset], names, hidden, seed)
            curve[size] = accuracy(small.predict_ms(features[test]), labels[test])
    return PredictorReport(report_test, len(train), curve, corrected)


def evaluate_predictor(
    predictor_path: str | Path, dataset: str | Path, space_name: str, corrected: bool = True
) -> Accuracy:
    """Accuracy of a saved predictor on every record of a dataset."""
    space = load_space(space_name)
    predictor = LatencyPredictor.load(predictor_path, list(space.feature_names), space.name)
    records = read_records(dataset)
    if not records:
        raise PredictorError(f"{dataset}: no records")
    features = np.array([r["features"] for r in records])
    return accuracy(predictor.predict_ms(features), _labels(records, corrected))


def format_accuracy(label: str, acc: Accuracy) -> str:
    """One table row."""
    return (
        f"{label:<14}{acc.n:>6}{acc.rmse_ms:>10.2f}{acc.mape:>8.2f}%{acc.within_5:>8.1f}%"
        f"{acc.within_10:>8.1f}%{acc.kendall_tau:>8.3f}"
    )


ACCURACY_HEADER = f"{'':<14}{'n':>6}{'RMSE ms':>10}{'MAPE':>9}{'<=5%':>9}{'<=10%':>9}{'tau':>8}"
