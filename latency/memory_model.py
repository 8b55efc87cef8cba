"""A per-device model of peak deployment memory, fitted on profiled records.

The records of `mos-search profile --memory` carry `peak_memory_mib` (`latency.memory`: the
high-water growth of a fresh process running the device's workload) and `memory_terms`, the
weights the deployed graphs hold, by kind (translation: the embedding tables that are looked up,
and the matrices that are multiplied, which ONNX Runtime also keeps pre-packed; see
`mos_search.costs.memory.translation_memory_terms`). Peak memory is close to linear in them; the
model is ordinary least squares (scikit-learn's `LinearRegression`) on the terms. What is left is
mostly the arena's allocation granularity (cpu-small: about 4% MAPE).

Its upper bound is split-conformal on cross-validated residuals (Vovk et al., "Algorithmic
Learning in a Random World", 2005; Lei et al., JASA 2018): the model is refitted on K-1 folds,
each record's residual taken on the fold it was left out of, and the bound at confidence `c` adds
the ceil(c (n + 1))-th smallest residual to the prediction. Saved as JSON (coefficients and the
sorted residuals), never pickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
MIN_RECORDS = 10
FOLDS = 5


class MemoryModelError(ValueError):
    """A memory model that cannot be fitted, read or applied."""


@dataclass
class MemoryModel:
    """Peak memory in MiB from named memory terms (MiB); see the module docstring."""

    coefficients: list[float]
    intercept: float
    residuals_mib: list[float]  # cross-validated, sorted: measured minus predicted
    term_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, records: list[dict[str, Any]], seed: int = 0) -> MemoryModel:
        """Fit on the records with `peak_memory_mib` and `memory_terms` (the same names in all).

        Raises MemoryModelError with fewer than MIN_RECORDS such records or differing terms.
        """
        from sklearn.linear_model import LinearRegression
        from sklearn.model_selection import KFold

        rows = [r for r in records if r.get("peak_memory_mib") is not None]
        if len(rows) < MIN_RECORDS:
            raise MemoryModelError(
                f"{len(rows)} records measure peak memory; at least {MIN_RECORDS} are needed: "
                "profile with `mos-search profile --memory`"
            )
        names = sorted(rows[0].get("memory_terms") or {})
        if not names or any(sorted(r.get("memory_terms") or {}) != names for r in rows):
            raise MemoryModelError(
                "every record measuring peak memory needs the same memory_terms; "
                f"the first has {names}"
            )
        x = np.array([[r["memory_terms"][n] for n in names] for r in rows], dtype=float)
        y = np.array([r["peak_memory_mib"] for r in rows], dtype=float)
        residuals = np.empty_like(y)
        folds = KFold(n_splits=min(FOLDS, len(rows)), shuffle=True, random_state=seed)
        for train, held_out in folds.split(x):
            fold = LinearRegression().fit(x[train], y[train])
            residuals[held_out] = y[held_out] - fold.predict(x[held_out])
        full = LinearRegression().fit(x, y)
        meta = {
            "records": len(rows),
            "cv_mape": float(np.mean(np.abs(residuals) / y)),
            "cv_max_abs_error_mib": float(np.max(np.abs(residuals))),
            "measured_mib": [float(y.min()), float(y.max())],
        }
        for key in ("profile", "profile_digest", "device", "vocab_size"):
            values = {r.get(key) for r in rows}
            if len(values) == 1:
                meta[key] = values.pop()
        return cls(
            [float(c) for c in full.coef_],
            float(full.intercept_),
            sorted(float(r) for r in residuals),
            names,
            meta,
        )

    def predict_mib(self, terms: dict[str, float]) -> float:
        """Predicted peak memory (MiB) of one architecture from its memory terms."""
        missing = sorted(set(self.term_names) - set(terms))
        if missing:
            raise MemoryModelError(f"memory model needs the terms {missing}")
        x = np.array([terms[n] for n in self.term_names], dtype=float)
        return float(self.intercept + np.dot(self.coefficients, x))

    def margin_mib(self, confidence: float) -> float:
        """What the upper bound adds to a prediction at `confidence` (split-conformal; with too
        few residuals for that confidence, twice the largest one). Never negative."""
        if not 0 < confidence < 1:
            raise MemoryModelError(f"confidence must be in (0, 1), found {confidence}")
        n = len(self.residuals_mib)
        rank = math.ceil(confidence * (n + 1))
        margin = self.residuals_mib[rank - 1] if rank <= n else 2 * max(self.residuals_mib)
        return max(margin, 0.0)

    def upper_mib(self, terms: dict[str, float], confidence: float) -> float:
        """MiB the measurement stays below with `confidence`: prediction plus `margin_mib`."""
        return self.predict_mib(terms) + self.margin_mib(confidence)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format": FORMAT,
            "kind": "peak-memory",
            "coefficients": self.coefficients,
            "intercept": self.intercept,
            "residuals_mib": self.residuals_mib,
            "term_names": self.term_names,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> MemoryModel:
        """Read a saved model; a missing or malformed file is a MemoryModelError naming it."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise MemoryModelError(f"memory model not found: {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise MemoryModelError(f"{path}: not a memory model ({exc})") from None
        if not isinstance(data, dict) or data.get("kind") != "peak-memory":
            raise MemoryModelError(f"{path}: not a memory model (kind 'peak-memory')")
        if data.get("format") != FORMAT:
            raise MemoryModelError(
                f"{path}: memory model format {data.get('format')}, not {FORMAT}"
            )
        try:
            return cls(
                data["coefficients"],
                data["intercept"],
                data["residuals_mib"],
                data["term_names"],
                data.get("meta", {}),
            )
        except KeyError as exc:
            raise MemoryModelError(f"{path}: memory model lacks {exc}") from None
