"""Per-device latency predictors from profiled datasets: train, evaluate, transfer, update.

Labels are drift-corrected (each time brought to the training records' median reference speed
with an elasticity fitted on the training records), the split is by architecture, and every
report gives MAPE, +-5/10%, Kendall tau and the coverage of the nominal 80% and 95% intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from latency.accuracy import Accuracy, accuracy
from latency.dataset import (
    append_record,
    drift_corrected_ms,
    fit_drift_elasticity,
    read_records,
    record_key,
)
from latency.predictor import (
    MIN_RECORDS,
    LatencyPredictor,
    PredictorError,
    dataset_digest,
    split_by_arch,
)
from mos_search.costs.identity import check_dataset_space, load_predictor
from mos_search.models.transformer import count_parameters
from mos_search.space import SearchSpace, load_space, preset_names, space_from_dict

SHIPPED_PACKAGE = "mos_search.shipped"
# members of the ensemble: one hidden layer of 32 on the quadratic model's residual (measured
# on the shipped dataset against 400-400-400, 64-64 and 16: see the README)
DEFAULT_HIDDEN = (32,)


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
    """Held-out accuracy, the learning curve, the drift correction, where it was written."""

    test: Accuracy
    n_train: int
    curve: dict[int, Accuracy]
    elasticity: float | None  # of the drift correction; None: raw labels
    path: Path
    label: str = "test"  # what the accuracy row is measured on

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
            format_accuracy(self.label, self.test),
            *(format_accuracy(f"train {size}", acc) for size, acc in self.curve.items()),
        ]


@dataclass
class Labelled:
    """Features and drift-corrected labels of records, and the drift model that made them."""

    features: np.ndarray  # (N, F)
    labels_ms: np.ndarray  # (N,)
    elasticity: float | None
    typical_ms: float | None


def load_datasets(datasets: Sequence[str | Path], space: SearchSpace) -> list[dict]:
    """Every record of `datasets` (validated against the space's features, and checked to have
    been profiled on it), in order."""
    names = list(space.feature_names)
    records = []
    for path in datasets:
        found = read_records(path, names)
        check_dataset_space(found, space, path)
        records += found
    if len(records) < MIN_RECORDS:
        shown = ", ".join(str(d) for d in datasets)
        raise PredictorError(f"{shown}: {len(records)} records; at least {MIN_RECORDS} are needed")
    return records


def label(
    records: list[dict],
    fit_on: list[dict],
    corrected: bool = True,
    elasticity: float | None = None,
    typical_ms: float | None = None,
) -> Labelled:
    """Features and labels of `records`: raw times, or corrected to the median reference speed
    of `fit_on` with an elasticity fitted on `fit_on` (or the one given)."""
    refs = [r["reference_ms"] for r in fit_on if r.get("reference_ms")]
    if corrected and refs:
        typical_ms = typical_ms or float(np.median(refs))
        elasticity = fit_drift_elasticity(fit_on) if elasticity is None else elasticity
        labels = drift_corrected_ms(records, elasticity, typical_ms)
    else:
        elasticity = typical_ms = None
        labels = [r["latency_ms"] for r in records]
    features = np.array([r["features"] for r in records], dtype=np.float64)
    return Labelled(features, np.array(labels), elasticity, typical_ms)


def measured_vocab_size(record: dict, space: SearchSpace) -> int | None:
    """The vocabulary of a measured model, solved from its exact parameter count (linear in it,
    with the embedding tables the record says it had: records written before `share_embeddings`
    was recorded had two); None for a record without its arch and parameter count (a
    features-only dataset)."""
    if "arch" not in record or "params" not in record:
        return None
    arch = space.arch_from_dict(record["arch"])
    sharing = record.get("share_embeddings", "decoder")
    base = count_parameters(arch, 0, space.qkv_dim, sharing)
    per_token = count_parameters(arch, 1, space.qkv_dim, sharing) - base
    return round((record["params"] - base) / per_token)


def held_out_accuracy(
    predictor: LatencyPredictor, features: np.ndarray, labels_ms: np.ndarray
) -> Accuracy:
    """Accuracy with the coverage of the predictor's nominal 80% and 95% intervals."""
    intervals = {level: predictor.interval_ms(features, level) for level in (0.8, 0.95)}
    return accuracy(predictor.predict_ms(features), labels_ms, intervals)


def train_latency_predictor(
    dataset: str | Path | Sequence[str | Path],
    out: str | Path | None,
    space_name: str | SearchSpace,
    test_fraction: float = 0.2,
    seed: int = 0,
    corrected: bool = True,
    curve_sizes: tuple[int, ...] = (100, 200, 500),
    hidden: tuple[int, ...] = DEFAULT_HIDDEN,
    members: int = 8,
) -> PredictorReport:
    """Fit on a split by architecture, save to `out` (None: `predictor.json` beside the first
    dataset), and report held-out accuracy with interval coverage, and the learning curve."""
    datasets = [dataset] if isinstance(dataset, str | Path) else list(dataset)
    out = Path(out) if out is not None else Path(datasets[0]).with_name("predictor.json")
    space = space_name if isinstance(space_name, SearchSpace) else load_space(space_name)
    space.require_task("translation", "a latency predictor")
    records = load_datasets(datasets, space)
    keys = [record_key(r) for r in records]  # an arch measured in several passes is one group
    train, test = split_by_arch(len(records), test_fraction, seed, keys)
    # the drift model is fitted on the training architectures only
    data = label(records, [records[i] for i in train], corrected)
    meta = {
        "space": space.name,
        "space_digest": space.digest,  # the name alone does not tell two spaces apart
        "space_definition": space.to_dict(),  # so update and transfer need no --space
        "device": records[0].get("profile"),
        "datasets": [str(Path(d).resolve()) for d in datasets],
        "dataset_digest": dataset_digest(records),
        "drift_corrected": data.elasticity is not None,
        "drift_elasticity": data.elasticity,
        "reference_ms": data.typical_ms,
        "vocab_size": measured_vocab_size(records[0], space),
        "n_train": len(train),
        "seed": seed,
    }
    x, y, names = data.features, data.labels_ms, list(space.feature_names)

    def fit(rows: np.ndarray, info: dict | None = None) -> LatencyPredictor:
        groups = [keys[i] for i in rows]
        return LatencyPredictor.fit(
            x[rows], y[rows], names, hidden, seed, info, members, groups=groups
        )

    predictor = fit(train, meta)
    predictor.save(out)
    curve = {
        size: held_out_accuracy(fit(train[:size]), x[test], y[test])
        for size in curve_sizes
        if size <= len(train)
    }
    test_accuracy = held_out_accuracy(predictor, x[test], y[test])
    return PredictorReport(test_accuracy, len(train), curve, data.elasticity, out)


def is_shipped(path: str | Path) -> bool:
    """Whether `path` lies in the package's shipped data (read-only once installed)."""
    root = Path(str(resources.files(SHIPPED_PACKAGE))).resolve()
    return root in Path(path).resolve().parents


def append_verification(
    predictor_file: str | Path, measured: str | Path, run: str
) -> tuple[Path | None, int]:
    """Append a search's verification measurements (`RUN/measured_PROFILE.jsonl`) to the
    dataset the predictor was trained on, each marked `source: "verification"` with its `run`;
    records already there (same architecture, pass and run) are skipped, so a rerun adds
    nothing twice. Returns (dataset, records added); (None, 0) when the predictor or its dataset
    ships with the package (read-only data), or its dataset (an absolute path since this
    version) is not there."""
    datasets = LatencyPredictor.load(predictor_file).meta.get("datasets") or []
    dataset = Path(datasets[0]) if datasets else None
    if (
        dataset is None
        or is_shipped(predictor_file)
        or is_shipped(dataset)
        or not dataset.is_file()
    ):
        return None, 0
    run = str(Path(run).resolve())
    seen = {
        (record_key(r), r.get("pass"), r.get("run"))
        for r in read_records(dataset)
        if r.get("source") == "verification"
    }
    added = 0
    for record in read_records(measured):
        if (record_key(record), record.get("pass"), run) not in seen:
            append_record(dataset, {**record, "source": "verification", "run": run})
            added += 1
    return dataset, added


def predictor_space(path: str | Path, meta: dict, space_option: str | None = None) -> SearchSpace:
    """The space a saved predictor was trained for: `space_option` (a preset name or .toml
    path; `load_predictor` then checks its digest), else the definition the predictor keeps,
    else (a predictor saved before it kept one) the preset it names; a PredictorError naming
    `path` when none of these gives it."""
    if space_option is not None:
        return load_space(space_option)
    if isinstance(meta.get("space_definition"), dict):
        return space_from_dict(meta["space_definition"], f"{path} (its space_definition)")
    name = meta.get("space")
    if name in preset_names():
        return load_space(name)
    raise PredictorError(
        f"{path} was trained for space {name!r}, which is not a preset, and keeps no definition "
        "of it (saved before predictors kept their space): give --space FILE.toml"
    )


def update_predictor(
    predictor_path: str | Path,
    datasets: Sequence[str | Path] = (),
    out: str | Path | None = None,
    space_option: str | None = None,
) -> PredictorReport:
    """Refit a predictor with its settings on `datasets` (default: the ones it was trained on,
    which verification appends to; or its own dataset plus, say, `RUN/measured_PROFILE.jsonl`);
    its space as `predictor_space` finds it."""
    old = LatencyPredictor.load(predictor_path)
    if old.meta.get("transferred_from") is not None:
        raise PredictorError(
            f"{predictor_path} was transferred from {old.meta['transferred_from']}: run "
            "`mos-search predictor transfer` again with the larger dataset"
        )
    space = predictor_space(predictor_path, old.meta, space_option)
    load_predictor(predictor_path, space)  # the choices it recorded
    datasets = list(datasets) or list(old.meta.get("datasets") or [])
    if not datasets:
        raise PredictorError(f"{predictor_path} names no dataset: give --dataset")
    return train_latency_predictor(
        datasets,
        out or predictor_path,
        space,
        seed=int(old.meta.get("seed", 0)),
        corrected=bool(old.meta.get("drift_corrected", True)),
        curve_sizes=(),
        hidden=tuple(old.meta.get("hidden", DEFAULT_HIDDEN)),
        members=int(old.meta.get("members", 8)),
    )


def transfer_predictor(
    source_path: str | Path,
    dataset: str | Path,
    out: str | Path,
    corrected: bool = True,
    space_option: str | None = None,
    space: SearchSpace | None = None,
) -> PredictorReport:
    """A predictor for another device from its (few) measurements and an existing predictor:
    the source's log-latency mapped by a line fitted on the target's records (all of them;
    `predictor eval` on other records measures it); the space `space`, else as
    `predictor_space` finds it."""
    if space is None:
        meta = LatencyPredictor.load(source_path).meta
        space = predictor_space(source_path, meta, space_option)
    source = load_predictor(source_path, space)
    records = _records_for_transfer(dataset, space)
    data = label(records, records, corrected)
    meta = {
        "device": records[0].get("profile"),
        "vocab_size": measured_vocab_size(records[0], space),
        "space_definition": space.to_dict(),
        "datasets": [str(Path(dataset).resolve())],
        "dataset_digest": dataset_digest(records),
        "drift_corrected": data.elasticity is not None,
        "drift_elasticity": data.elasticity,
        "reference_ms": data.typical_ms,
        "n_train": len(records),
    }
    predictor = LatencyPredictor.transfer(source, data.features, data.labels_ms, meta)
    predictor.save(out)
    return PredictorReport(
        held_out_accuracy(predictor, data.features, data.labels_ms),
        len(records),
        {},
        data.elasticity,
        Path(out),
        "in-sample",
    )


def _records_for_transfer(dataset: str | Path, space: SearchSpace) -> list[dict]:
    records = read_records(dataset, list(space.feature_names))
    check_dataset_space(records, space, dataset)
    if len(records) < 3:
        raise PredictorError(f"{dataset}: {len(records)} records; transfer needs at least 3")
    return records


def evaluate_predictor(
    predictor_path: str | Path,
    dataset: str | Path,
    space_name: str | SearchSpace,
    corrected: bool = True,
) -> Accuracy:
    """Accuracy (with interval coverage) of a saved predictor on every record of a dataset,
    labels corrected with the predictor's own drift model. The predictor and the dataset must
    both be of the space (by content, not only by name): else a ConfigError, not a MAPE."""
    space = space_name if isinstance(space_name, SearchSpace) else load_space(space_name)
    predictor = load_predictor(predictor_path, space)
    records = read_records(dataset, list(space.feature_names))
    if not records:
        raise PredictorError(f"{dataset}: no records")
    check_dataset_space(records, space, dataset)
    elasticity = predictor.meta.get("drift_elasticity") if corrected else None
    data = label(
        records, records, elasticity is not None, elasticity, predictor.meta.get("reference_ms")
    )
    return held_out_accuracy(predictor, data.features, data.labels_ms)


def format_accuracy(label: str, acc: Accuracy) -> str:
    """One table row: beside each interval's coverage its mean width (% of the prediction)."""
    return (
        f"{label:<14}{acc.n:>6}{acc.rmse_ms:>10.2f}{acc.mape:>8.2f}%{acc.within_5:>8.1f}%"
        f"{acc.within_10:>8.1f}%{acc.kendall_tau:>8.3f}{acc.coverage_80:>8.1f}%"
        f"{acc.width_80:>8.1f}%{acc.coverage_95:>8.1f}%{acc.width_95:>8.1f}%"
    )


ACCURACY_HEADER = (
    f"{'':<14}{'n':>6}{'RMSE ms':>10}{'MAPE':>9}{'<=5%':>9}{'<=10%':>9}{'tau':>8}"
    f"{'in 80%':>9}{'width':>9}{'in 95%':>9}{'width':>9}"
)
