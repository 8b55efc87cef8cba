"""Which search space a latency predictor or dataset belongs to, by content, not by name alone.

A space's identity is its name and its `digest` (task, choices, settings): a custom space that
reuses a preset's name with other choices is another space. Predictors record the digest
(`space_digest` in their meta); dataset records do not name their space, so a dataset is
checked by what its records hold: each arch a member, each feature vector the space's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latency.predictor import LatencyPredictor
from mos_search.errors import ArchError, ConfigError
from mos_search.space import SearchSpace, load_space, preset_names


def load_predictor(path: str | Path, space: SearchSpace) -> LatencyPredictor:
    """A saved predictor, refused unless trained for `space`: its name and features (checked
    on load) and its choices (the space digest it records; one saved before digests were
    recorded that names a preset is taken to be for that preset). A custom space that reuses a
    preset's name with other choices is a ConfigError naming both."""
    predictor = LatencyPredictor.load(path, list(space.feature_names), space.name)
    name = predictor.meta.get("space")
    recorded = predictor.meta.get("space_digest")
    if recorded is None and name in preset_names():
        recorded = load_space(name).digest
    if recorded is not None and recorded != space.digest:
        raise ConfigError(
            f"{path} was trained for space {name!r} (choices {recorded}), not "
            f"{space.identity}: same name, other choices; train a predictor on this space"
        )
    return predictor


def check_dataset_space(records: list[dict], space: SearchSpace, dataset: str | Path) -> None:
    """A ConfigError naming `dataset` and both spaces when its records were profiled on another
    space than `space`. Records do not name their space, so what gives it away is an arch that
    is not a member, or features other than `space.features(arch)` (features are scaled by the
    space's largest choices); records without an arch are checked by feature count only."""
    for number, record in enumerate(records, start=1):
        problem = _space_problem(record, space)
        if problem is not None:
            presets = (load_space(name) for name in preset_names())
            other = next(
                (
                    p
                    for p in presets
                    if p.digest != space.digest
                    and all(_space_problem(r, p) is None for r in records)
                ),
                None,
            )
            profiled = f"preset space {other.identity}" if other else "another space"
            raise ConfigError(
                f"{dataset} was profiled on {profiled}, not {space.identity} (record {number}: "
                f"{problem}); give the --space it was profiled on"
            )


def _space_problem(record: dict, space: SearchSpace) -> str | None:
    """Why `record` was not profiled on `space`, or None when it may have been."""
    if record.get("arch") is None:
        return None
    try:
        arch = space.arch_from_dict(record["arch"])
    except ArchError as exc:
        return str(exc)
    expected = space.features(arch)
    if len(expected) != len(record["features"]) or not np.allclose(
        record["features"], expected, rtol=0, atol=1e-9
    ):
        return f"features {record['features']} are not this space's {expected}"
    return None
