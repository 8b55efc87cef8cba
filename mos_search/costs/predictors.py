"""Train and evaluate per-device latency predictors from a profiled dataset."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from latency.dataset import drift_corrected_ms, fit_drift_elasticity, read_records
from latency.predictor import (
    Accuracy,
    LatencyPredictor,
    PredictorError,
    accuracy,
    dataset_digest,
    split_by_arch,
)
from mos_search.models.transformer import count_parameters
from mos_search.space import SearchSpace, load_space

SHIPPED_PACKAGE = "mos_search.shipped"


def shipped_path(profile: str, name: str = "predictor.json") -> Path | None:
    """A file shipped for a device profile (`predictor.json`, `latency.jsonl`), or None.

    Found inside the installed package (`importlib.resources`), whatever the current folder.
    """
    candidate = resources.files(SHIPPED_PACKAGE).joinpath(profile, name)
    return Path(str(candidate)) if candidate.is_file() else None


def predictor_path(profile: str, given: str | None) -> Path:
    """The predictor file for a device profile: the one given, else the shipped one."""
    if given:
        return Path(given)
    shipped = shipped_path(profile)
    if shipped is None:
        raise PredictorError(
            f"no latency predictor ships for {profile}: run `mos-search profile --device "
            f"{profile}` and `mos-search predictor train`, then give --predictor PATH"
        )
    return shipped


@dataclass
class PredictorReport:
    """Held-out accuracy, the learning curve, and the labels' own repeatability."""

    test: Accuracy
    n_train: int
    curve: dict[int, Accuracy]
    elasticity: float | None  # of the drift correction; None: raw labels
    path: Path  # where the predictor was written

    def lines(self) -> list[str]:
        """What was written, then the accuracy table (held-out split, learning curve)."""
        labels = (
            f"labels drift-corrected with elasticity {self.elasticity:.2f}"
            if self.elasticity is not None
            else "raw labels"
        )
        return [
            f"wrote {self.path} (trained on {self.n_train} archs, {labels})",
            ACCURACY_HEADER,
            format_accuracy("test", self.test),
            *(format_accuracy(f"train {size}", acc) for size, acc in self.curve.items()),
        ]


def _labels(records: list[dict], elasticity: float | None, typical_ms: float | None) -> np.ndarray:
    """Raw times (`elasticity` None) or times corrected to the typical machine speed."""
    if elasticity is None:
        return np.array([r["latency_ms"] for r in records])
    return np.array(drift_corrected_ms(records, elasticity, typical_ms))


def measured_vocab_size(record: dict, space: SearchSpace) -> int:
    """The vocabulary of a measured model, solved from its exact parameter count (linear in it)."""
    arch = space.arch_from_dict(record["arch"])
    base = count_parameters(arch, 0, space.qkv_dim)
    per_token = count_parameters(arch, 1, space.qkv_dim) - base
    return round((record["params"] - base) / per_token)


def train_latency_predictor(
    dataset: str | Path,
    out: str | Path | None,
    space_name: str,
    test_fraction: float = 0.2,
    seed: int = 0,
    corrected: bool = True,
    curve_sizes: tuple[int, ...] = (100, 200, 500),
    hidden: tuple[int, ...] = (400, 400, 400),
) -> PredictorReport:
    """Fit on a split by architecture, save to `out` (None: `predictor.json` beside the
    dataset), and report test accuracy and the learning curve."""
    out = Path(out) if out is not None else Path(dataset).with_name("predictor.json")
    records = read_records(dataset)
    if len(records) < 10:
        raise PredictorError(f"{dataset}: {len(records)} records; at least 10 are needed")
    space = load_space(space_name)
    space.require_task("translation", "a latency predictor")
    names = list(space.feature_names)
    features = np.array([r["features"] for r in records])
    if features.shape[1] != len(names):
        raise PredictorError(
            f"{dataset} holds {features.shape[1]} features per record, space "
            f"{space.name!r} has {len(names)}"
        )
    train, test = split_by_arch(len(records), test_fraction, seed)
    train_records = [records[i] for i in train]
    refs = [r["reference_ms"] for r in train_records if r.get("reference_ms")]
    typical = float(np.median(refs)) if refs else None
    # the drift model is fitted on the training architectures only
    elasticity = fit_drift_elasticity(train_records) if corrected and refs else None
    labels = _labels(records, elasticity, typical)
    meta = {
        "space": space.name,
        "device": records[0].get("profile"),
        "dataset_digest": dataset_digest(records),
        "drift_corrected": elasticity is not None,
        "drift_elasticity": elasticity,
        "reference_ms": typical,
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
    return PredictorReport(report_test, len(train), curve, elasticity, out)


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
    elasticity = predictor.meta.get("drift_elasticity") if corrected else None
    labels = _labels(records, elasticity, predictor.meta.get("reference_ms"))
    return accuracy(predictor.predict_ms(features), labels)


def format_accuracy(label: str, acc: Accuracy) -> str:
    """One table row."""
    return (
        f"{label:<14}{acc.n:>6}{acc.rmse_ms:>10.2f}{acc.mape:>8.2f}%{acc.within_5:>8.1f}%"
        f"{acc.within_10:>8.1f}%{acc.kendall_tau:>8.3f}"
    )


ACCURACY_HEADER = f"{'':<14}{'n':>6}{'RMSE ms':>10}{'MAPE':>9}{'<=5%':>9}{'<=10%':>9}{'tau':>8}"
