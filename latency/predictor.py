"""Per-device latency predictors with intervals: a bagged ensemble, saved without pickle.

Model. Each of `members` ensemble members is fitted on a bootstrap resample of the training
architectures: a quadratic least-squares model of log-latency in the standardised features,
plus a scikit-learn MLP on its residual (early stopping, L2 `alpha`). The prediction is the
mean over members of log-latency, so `predict_ms` returns a geometric mean. On the shipped
500-architecture `cpu-small` dataset the quadratic base does most of the work and the MLP adds
the interactions it misses; a bare 400-400-400 MLP (HAT's shape, one hidden layer short) was
worse on 400 noisy samples.

Intervals. Out-of-bag residual quantiles (jackknife-after-bootstrap, in the spirit of Kim, Xu &
Barber 2020, without their finite-sample guarantee): each training architecture is predicted by the
members that did not see it, and the residuals r_i = log(measured_i) - oob_mean_i are kept. A two-
sided interval at level c is mean -/+ q_c(|r|), the one-sided upper bound at confidence c is mean +
q_c(r), with the finite-sample quantile q_c = the ceil((n + 1) c)-th smallest of n values. Coverage
is marginal (over architectures like the training ones), and measured on held-out architectures by
`accuracy` (`coverage_80`, `coverage_95`).

Files. `NAME.json` holds a small header (format, feature schema, meta, the digest of the arrays)
and `NAME.npz` beside it every array; loading uses `numpy.load(allow_pickle=False)` and needs
neither pickle nor scikit-learn, and checks both files first (`latency.predictor_file`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latency.predictor_file import FORMAT, PredictorError, read_arrays, read_header

MIN_RECORDS = 10
TRANSFER_RIDGE = 10.0  # on bench/transfer.py's torch-cpu data: 1-10 did best at 20-200 records


def quadratic_terms(x: np.ndarray) -> np.ndarray:
    """[1, x_i, x_i * x_j (i <= j)] of each row of standardised features: (N, 1 + F + F(F+1)/2)."""
    n, f = x.shape
    upper = np.triu_indices(f)
    pairs = (x[:, :, None] * x[:, None, :])[:, upper[0], upper[1]]
    return np.column_stack([np.ones(n), x, pairs])


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest score; infinite when that rank exceeds n (too
    few residuals to bound at this level: under 19 for 0.95, under 9 for 0.9)."""
    if not 0 < level < 1:
        raise PredictorError(f"confidence level must be in (0, 1), found {level}")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    if len(ordered) == 0:
        raise PredictorError("this predictor holds no residuals: it gives no intervals")
    rank = math.ceil((len(ordered) + 1) * level)
    return math.inf if rank > len(ordered) else float(ordered[rank - 1])


@dataclass
class Member:
    """One ensemble member: quadratic coefficients and an MLP on the residual (numpy arrays)."""

    quadratic: np.ndarray  # (Q,)
    weights: list[np.ndarray]  # MLP layers: (F, H1), (H1, H2), ..., (Hk, 1); target scale folded
    biases: list[np.ndarray]

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        """log-milliseconds of standardised feature rows x: (N, F) -> (N,)."""
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return quadratic_terms(x) @ self.quadratic + h[:, 0]


def _fit_member(
    x: np.ndarray, log_ms: np.ndarray, hidden: tuple[int, ...], alpha: float, seed: int
) -> Member:
    """Quadratic least squares, then an MLP (scikit-learn) on what it leaves. With fewer than
    two records per quadratic term the base is linear (its pair coefficients stay 0): a quadratic
    fitted on a few dozen records extrapolated wildly."""
    from sklearn.neural_network import MLPRegressor

    terms = quadratic_terms(x)
    used = terms.shape[1] if len(log_ms) >= 2 * terms.shape[1] else 1 + x.shape[1]
    quadratic = np.zeros(terms.shape[1])
    quadratic[:used], *_ = np.linalg.lstsq(terms[:, :used], log_ms, rcond=None)
    residual = log_ms - quadratic_terms(x) @ quadratic
    r_mean, r_std = float(residual.mean()), float(residual.std() or 1.0)
    # a tight tolerance and long patience: with sklearn's defaults Adam sometimes stopped on an
    # early plateau
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden,
        alpha=alpha,
        learning_rate_init=1e-3,
        max_iter=3000,
        tol=1e-7,
        early_stopping=len(log_ms) >= 50,
        validation_fraction=0.1,
        n_iter_no_change=100,
        random_state=seed,
    )
    mlp.fit(x, (residual - r_mean) / r_std)
    weights = [w.copy() for w in mlp.coefs_]
    biases = [b.copy() for b in mlp.intercepts_]
    weights[-1] = weights[-1] * r_std  # fold the residual's standardisation into the last layer
    biases[-1] = biases[-1] * r_std + r_mean
    return Member(quadratic, weights, biases)


class LatencyPredictor:
    """A bagged ensemble that predicts milliseconds, with conformal intervals (see the module)."""

    def __init__(
        self,
        feature_names: list[str],
        mean: np.ndarray,
        scale: np.ndarray,
        members: list[Member],
        residuals: np.ndarray,
        meta: dict[str, Any],
        output_map: tuple[float, float] = (0.0, 1.0),
        correction: np.ndarray | None = None,
        occasion_residuals: np.ndarray | None = None,
    ) -> None:
        self.feature_names, self.mean, self.scale = list(feature_names), mean, scale
        self.members, self.residuals, self.meta = members, np.asarray(residuals), meta
        # a transferred predictor: log ms -> a + b * log ms + correction . x (standardised x)
        self.output_map = output_map
        self.correction = np.zeros(len(mean)) if correction is None else np.asarray(correction)
        # log ratios of one architecture's drift-corrected latency between two occasions
        # (`with_occasions`); empty: intervals of the profiling occasion alone
        self.occasion_residuals = (
            np.zeros(0) if occasion_residuals is None else np.asarray(occasion_residuals)
        )

    def with_occasions(self, log_ratios: np.ndarray) -> LatencyPredictor:
        """This predictor with intervals that also hold on another occasion: their scores become
        every sum r_i + d_j of a residual r_i and a between-occasion log ratio d_j (both signs:
        either occasion may be the profiling one), the convolution of the two errors taken as
        independent (`bench/drift.py` measures the d_j and checks coverage leaving each
        occasion out)."""
        d = np.asarray(log_ratios, dtype=np.float64)
        return LatencyPredictor(
            self.feature_names,
            self.mean,
            self.scale,
            self.members,
            self.residuals,
            self.meta,
            self.output_map,
            self.correction,
            np.concatenate([d, -d]),
        )

    def _scores(self) -> np.ndarray:
        """Signed scores of the intervals: the residuals, convolved with the occasion term."""
        if not len(self.occasion_residuals):
            return self.residuals
        return (self.residuals[:, None] + self.occasion_residuals[None, :]).ravel()

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        latency_ms: np.ndarray,
        feature_names: list[str],
        hidden: tuple[int, ...] = (32,),
        seed: int = 0,
        meta: dict[str, Any] | None = None,
        members: int = 8,
        alpha: float = 0.1,
        groups: list[str] | None = None,
    ) -> LatencyPredictor:
        """Fit `members` members on bootstrap resamples; keep the out-of-bag residuals. With
        `groups` (one key per record), architectures are resampled, not records, so repeated
        measurements of one architecture are in or out of a member's bag together."""
        x_raw = np.asarray(features, dtype=np.float64)
        log_ms = np.log(np.asarray(latency_ms, dtype=np.float64))
        n = x_raw.shape[0]
        if n < MIN_RECORDS:
            raise PredictorError(f"need at least {MIN_RECORDS} measured architectures, found {n}")
        if members < 2:
            raise PredictorError(f"an ensemble needs at least 2 members, found {members}")
        keys = np.array(list(range(n)) if groups is None else groups, dtype=object)
        unique = np.array(list(dict.fromkeys(keys.tolist())), dtype=object)
        mean = x_raw.mean(axis=0)
        scale = np.where(x_raw.std(axis=0) > 0, x_raw.std(axis=0), 1.0)
        x = (x_raw - mean) / scale
        rng = np.random.default_rng(seed)
        fitted, out_of_bag = [], []
        for k in range(members):
            drawn = unique[rng.integers(0, len(unique), len(unique))]
            counts = dict(zip(*np.unique(drawn, return_counts=True)))
            chosen = np.array([i for i in range(n) for _ in range(counts.get(keys[i], 0))])
            fitted.append(_fit_member(x[chosen], log_ms[chosen], hidden, alpha, seed + k))
            out_of_bag.append(np.array([keys[i] not in counts for i in range(n)]))
        predictions = np.array([m.predict_log(x) for m in fitted])  # (K, N)
        oob = np.array(out_of_bag)
        seen = oob.any(axis=0)
        oob_mean = (predictions * oob).sum(axis=0)[seen] / oob.sum(axis=0)[seen]
        residuals = log_ms[seen] - oob_mean
        meta = dict(meta or {}, hidden=list(hidden), members=members, alpha=alpha)
        return cls(feature_names, mean, scale, fitted, residuals, meta)

    @classmethod
    def transfer(
        cls,
        source: LatencyPredictor,
        features: np.ndarray,
        latency_ms: np.ndarray,
        meta: dict[str, Any] | None = None,
        ridge: float = TRANSFER_RIDGE,
    ) -> LatencyPredictor:
        """A predictor for another device from few measurements there: the source's log-latency
        mapped by a line, plus a linear correction in the standardised features,
        log ms' = a + b * log ms_source(x) + c . x, fitted by least squares with a ridge penalty
        `ridge` on c only (so 10-30 records are enough: with few, c stays near 0). Intervals
        come from its leave-one-out residuals e_i / (1 - h_ii), exact for a linear smoother."""
        features = np.asarray(features, dtype=np.float64)
        y = np.log(np.asarray(latency_ms, dtype=np.float64))
        if len(y) < 3:
            raise PredictorError(
                f"transfer needs at least 3 measured architectures, found {len(y)}"
            )
        x = source._standardised(features)
        design = np.column_stack([np.ones_like(y), source._log_mean(features), x])
        inverse = np.linalg.pinv(design.T @ design + np.diag([0.0, 0.0, *([ridge] * x.shape[1])]))
        coef = inverse @ design.T @ y
        leverage = np.einsum("ij,jk,ik->i", design, inverse, design)
        residuals = (y - design @ coef) / np.clip(1.0 - leverage, 1e-6, None)
        a, b = float(coef[0]), float(coef[1])
        meta = {**source.meta, **(meta or {}), "transferred_from": source.meta.get("device")}
        a0, b0 = source.output_map
        return cls(
            source.feature_names,
            source.mean,
            source.scale,
            source.members,
            residuals,
            meta,
            (a + b * a0, b * b0),
            b * source.correction + coef[2:],
        )

    # ------------------------------------------------------------------ predicting
    def _standardised(self, features: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if x.shape[1] != len(self.feature_names):
            raise PredictorError(
                f"predictor expects {len(self.feature_names)} features "
                f"({', '.join(self.feature_names)}), got {x.shape[1]}"
            )
        return (x - self.mean) / self.scale

    def _log_mean(self, features: np.ndarray) -> np.ndarray:
        x = self._standardised(features)
        log_ms = np.mean([m.predict_log(x) for m in self.members], axis=0)
        a, b = self.output_map
        return a + b * log_ms + x @ self.correction

    def predict_ms(self, features: np.ndarray) -> np.ndarray:
        """Predicted milliseconds (geometric mean over members) for rows of features."""
        return np.exp(self._log_mean(features))

    def interval_ms(
        self, features: np.ndarray, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) milliseconds: a two-sided interval holding the measurement with
        probability `level` (conformal, see the module docstring)."""
        log_ms, q = self._log_mean(features), conformal_quantile(np.abs(self._scores()), level)
        return np.exp(log_ms - q), np.exp(log_ms + q)

    def upper_ms(self, features: np.ndarray, confidence: float = 0.9) -> np.ndarray:
        """Milliseconds the measurement stays below with probability `confidence`."""
        return np.exp(self._log_mean(features) + conformal_quantile(self._scores(), confidence))

    # ------------------------------------------------------------------ files
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "mean": self.mean,
            "scale": self.scale,
            "residuals": self.residuals,
            "output_map": np.array(self.output_map),
            "correction": self.correction,
            "occasion_residuals": self.occasion_residuals,
        }
        for k, member in enumerate(self.members):
            arrays[f"m{k}.quadratic"] = member.quadratic
            for i, (w, b) in enumerate(zip(member.weights, member.biases)):
                arrays[f"m{k}.w{i}"], arrays[f"m{k}.b{i}"] = w, b
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write `path` (a JSON header) and the arrays beside it (`.npz`, no pickle); both
        atomically, the arrays first. Returns the path of the arrays."""
        path = Path(path)
        arrays_path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **self._arrays())
        blob = buffer.getvalue()
        header = {
            "format": FORMAT,
            "feature_names": self.feature_names,
            "members": len(self.members),
            "layers": len(self.members[0].weights) if self.members else 0,
            "arrays": arrays_path.name,
            "arrays_sha256": hashlib.sha256(blob).hexdigest(),
            "meta": self.meta,
        }
        for target, data in ((arrays_path, blob), (path, json.dumps(header, indent=1).encode())):
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return arrays_path

    @classmethod
    def load(
        cls, path: str | Path, feature_names: list[str] | None = None, space: str | None = None
    ) -> LatencyPredictor:
        """Read a saved predictor (both files checked: `latency.predictor_file`); refuse it if its
        schema or space differs from the expected."""
        path = Path(path)
        header = read_header(path)
        if feature_names is not None and header["feature_names"] != list(feature_names):
            raise PredictorError(
                f"{path} was trained on features {header['feature_names']}, "
                f"not {list(feature_names)}"
            )
        if space is not None and header["meta"].get("space") != space:
            raise PredictorError(
                f"{path} was trained for space {header['meta'].get('space')!r}, not {space!r}"
            )
        arrays = read_arrays(path.with_name(header["arrays"]), header)
        members = [
            Member(
                arrays[f"m{k}.quadratic"],
                [arrays[f"m{k}.w{i}"] for i in range(header["layers"])],
                [arrays[f"m{k}.b{i}"] for i in range(header["layers"])],
            )
            for k in range(header["members"])
        ]
        a, b = (float(v) for v in arrays["output_map"])
        return cls(
            header["feature_names"],
            arrays["mean"],
            arrays["scale"],
            members,
            arrays["residuals"],
            header["meta"],
            (a, b),
            arrays["correction"],
            arrays.get("occasion_residuals"),
        )


def split_by_arch(
    n: int, test_fraction: float, seed: int, groups: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Train indices (in random order, so any prefix is a random subset) and test indices.

    With `groups` (one key per record: `latency.dataset.record_key`), records of one
    architecture (measured in several passes) fall on the same side; about `test_fraction` of
    the architectures are held out."""
    keys = list(range(n)) if groups is None else list(groups)
    unique = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(unique))
    held = {unique[i] for i in order[: max(1, round(len(unique) * test_fraction))]}
    rank = {unique[i]: r for r, i in enumerate(order)}
    train = sorted((i for i in range(n) if keys[i] not in held), key=lambda i: (rank[keys[i]], i))
    test = [i for i in range(n) if keys[i] in held]
    return np.array(train, dtype=int), np.array(test, dtype=int)


def dataset_digest(records: list[dict[str, Any]]) -> str:
    """Digest of the measured values a predictor was trained on."""
    from latency.dataset import record_key

    text = json.dumps([[record_key(r), r["latency_ms"]] for r in records], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
