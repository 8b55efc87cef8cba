"""Per-device latency predictors: a scikit-learn MLP on architecture features, saved as JSON.

Inputs are standardised, the target is log-latency, training stops early on a held-out part of
the training split. The saved file holds weights, scaler, feature schema, space name and dataset
digest (no pickle); loading it against another schema or space is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mos-search-latency-mlp/1"


class PredictorError(ValueError):
    """A predictor file is missing, malformed, or does not fit the features it is given."""


@dataclass(frozen=True)
class Accuracy:
    """How well predictions match measurements on held-out architectures."""

    n: int
    rmse_ms: float
    mape: float
    within_5: float
    within_10: float
    kendall_tau: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return asdict(self)


def accuracy(predicted_ms: np.ndarray, measured_ms: np.ndarray) -> Accuracy:
    """RMSE, mean absolute percentage error, shares within +-5% / +-10%, Kendall tau."""
    from scipy.stats import kendalltau

    predicted_ms, measured_ms = np.asarray(predicted_ms), np.asarray(measured_ms)
    relative = np.abs(predicted_ms - measured_ms) / measured_ms
    tau = kendalltau(predicted_ms, measured_ms).statistic if len(measured_ms) > 1 else math.nan
    return Accuracy(
        len(measured_ms),
        float(np.sqrt(np.mean((predicted_ms - measured_ms) ** 2))),
        float(relative.mean() * 100),
        float((relative <= 0.05).mean() * 100),
        float((relative <= 0.10).mean() * 100),
        float(tau),
    )


class LatencyPredictor:
    """A fitted MLP that predicts milliseconds from a feature vector (numpy at predict time)."""

    def __init__(
        self,
        feature_names: list[str],
        mean: np.ndarray,
        scale: np.ndarray,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        meta: dict[str, Any],
    ) -> None:
        self.feature_names, self.mean, self.scale = list(feature_names), mean, scale
        self.weights, self.biases, self.meta = weights, biases, meta

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        latency_ms: np.ndarray,
        feature_names: list[str],
        hidden: tuple[int, ...] = (400, 400, 400),
        seed: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> LatencyPredictor:
        """Fit on log-latency with standardised inputs and early stopping."""
        from sklearn.neural_network import MLPRegressor
        from sklearn.preprocessing import StandardScaler

        features = np.asarray(features, dtype=np.float64)
        if features.shape[0] < 10:
            raise PredictorError(
                f"need at least 10 measured architectures, found {features.shape[0]}"
            )
        scaler = StandardScaler().fit(features)
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        target = np.log(np.asarray(latency_ms, dtype=np.float64))
        t_mean, t_std = float(target.mean()), float(target.std() or 1.0)
        # A tight tolerance and long patience: with sklearn's defaults Adam sometimes stopped
        # on an early plateau (26% MAPE instead of 2% on the same data in another order).
        mlp = MLPRegressor(
            hidden_layer_sizes=hidden,
            activation="relu",
            solver="adam",
            learning_rate_init=1e-3,
            max_iter=3000,
            tol=1e-7,
            early_stopping=len(target) >= 50,
            validation_fraction=0.1,
            n_iter_no_change=100,
            random_state=seed,
            alpha=1e-4,
        )
        mlp.fit((features - scaler.mean_) / scale, (target - t_mean) / t_std)
        weights = [w.copy() for w in mlp.coefs_]
        biases = [b.copy() for b in mlp.intercepts_]
        weights[-1] = weights[-1] * t_std  # fold the target standardisation into the last layer
        biases[-1] = biases[-1] * t_std + t_mean
        meta = dict(meta or {}, hidden=list(hidden))
        return cls(feature_names, scaler.mean_, scale, weights, biases, meta)

    def predict_ms(self, features: np.ndarray) -> np.ndarray:
        """Predicted milliseconds for rows of features (or one feature vector)."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if x.shape[1] != len(self.feature_names):
            raise PredictorError(
                f"predictor expects {len(self.feature_names)} features "
                f"({', '.join(self.feature_names)}), got {x.shape[1]}"
            )
        h = (x - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return np.exp(h[:, 0])

    def save(self, path: str | Path) -> None:
        """Write the predictor as JSON (weights as nested lists)."""
        data = {
            "format": FORMAT,
            "feature_names": self.feature_names,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": [w.tolist() for w in self.weights],
            "biases": [b.tolist() for b in self.biases],
            "meta": self.meta,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    @classmethod
    def load(
        cls, path: str | Path, feature_names: list[str] | None = None, space: str | None = None
    ) -> LatencyPredictor:
        """Read a saved predictor; refuse it if its schema or space differs from the expected."""
        path = Path(path)
        if not path.is_file():
            raise PredictorError(f"predictor file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PredictorError(f"{path} is not valid JSON: {exc}") from None
        if data.get("format") != FORMAT:
            raise PredictorError(f"{path} is not a latency predictor ({FORMAT})")
        if feature_names is not None and data["feature_names"] != list(feature_names):
            raise PredictorError(
                f"{path} was trained on features {data['feature_names']}, not {list(feature_names)}"
            )
        if space is not None and data["meta"].get("space") != space:
            raise PredictorError(
                f"{path} was trained for space {data['meta'].get('space')!r}, not {space!r}"
            )
        return cls(
            data["feature_names"],
            np.array(data["mean"]),
            np.array(data["scale"]),
            [np.array(w) for w in data["weights"]],
            [np.array(b) for b in data["biases"]],
            data["meta"],
        )


def split_by_arch(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train indices (in random order, so any prefix is a random subset) and test indices."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction))
    return order[n_test:], np.sort(order[:n_test])


def dataset_digest(records: list[dict[str, Any]]) -> str:
    """Digest of the measured values a predictor was trained on."""
    text = json.dumps([[r["arch"], r["latency_ms"]] for r in records], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
