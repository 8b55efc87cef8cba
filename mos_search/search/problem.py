"""The search problem: score an architecture once (quality, predicted latency, size) under budgets.

`ArchEvaluator` is shared by every algorithm. It checks the cheap constraints first (the
`Budget`s on predicted latency, exact memory or parameter count) and calls the expensive quality
oracle only for feasible candidates;
each architecture is scored at most once per run, and every score is appended to a JSON-lines
file, so a resumed search never calls the oracle again for what it already knows.
`ArchProblem` is the pymoo view of the same evaluator over the integer gene.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from mos_search.arch import ArchBase
from mos_search.errors import ConfigError
from mos_search.files import append_jsonl, read_text, split_lines, write_lines_atomic
from mos_search.search.config import QUALITY_SIGN, Budget
from mos_search.space import SearchSpace

# Objective value of an infeasible candidate's quality: never compared (pymoo ranks infeasible
# candidates by constraint violation alone) and never reported; it only has to be finite.
UNSCORED = 1e6


@dataclass(frozen=True)
class Evaluation:
    """Everything the search knows of one architecture."""

    arch: dict[str, Any]
    costs: dict[str, float]  # cost objectives by key (units: the search's `Cost` objectives)
    params: int
    violations: list[float]  # one per budget, in order; <= 0 where the budget is met
    quality: float | None  # None: infeasible, so the oracle was not asked
    # upper bounds of costs at the search's confidence (budgets constrain on them), by cost key
    bounds: dict[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        """Whether every budget is met."""
        return all(v <= 0 for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        """Inverse of `to_dict` (runs of mos-search 0.1 logged the costs as `latency_ms`)."""
        if "latency_ms" in data and "costs" not in data:
            data = {**data, "costs": data["latency_ms"]}
            del data["latency_ms"]
        return cls(**data)


def evaluation_key(arch: dict[str, Any]) -> str:
    """The key an evaluator files an architecture (a dict) under: canonical JSON."""
    return json.dumps(arch, sort_keys=True)


class Constraints(NamedTuple):
    """An architecture's costs, upper bounds, parameter count and budget violations."""

    costs: dict[str, float]
    bounds: dict[str, float]
    params: int
    violations: list[float]


class ArchEvaluator:
    """Scores architectures once each: quality from an oracle, costs from predictors or counts."""

    def __init__(
        self,
        space: SearchSpace,
        quality: Callable[[ArchBase], float],
        metric: str,
        costs: dict[str, Callable[[ArchBase], float]],
        params: Callable[[ArchBase], int],
        budgets: Sequence[Budget] = (),
        log_path: str | Path | None = None,
        bounds: dict[str, Callable[[ArchBase], float]] | None = None,
    ) -> None:
        """`costs` give each cost objective (predicted mean latency, memory); `bounds`, where
        given, the upper bound of a cost that its budget constrains on (the prediction
        interval's bound at the search's confidence), so a budget is met with that confidence;
        a bound without a cost (peak memory) is a constraint, not an objective."""
        if metric not in QUALITY_SIGN:
            raise ConfigError(
                f"quality metric: expected one of {sorted(QUALITY_SIGN)}, found {metric!r}"
            )
        if not costs:
            raise ConfigError("at least one cost objective (a device's latency) is needed")
        self.budgets = tuple(budgets)
        unknown = {b.cost_key for b in self.budgets} - {*costs, *(bounds or {}), None}
        if unknown:
            raise ConfigError(f"budget on {sorted(unknown)}, which is not a cost of the search")
        self.space, self.metric = space, metric
        self._quality, self._costs, self._params = quality, costs, params
        self._bounds = dict(bounds or {})
        self.bound_keys = set(self._bounds)
        self._quality_many: Callable[[list[ArchBase]], list[float]] | None = None
        self._precomputed: dict[str, float] = {}
        self.closers: list[Callable[[], None]] = []
        self.cost_keys = list(costs)
        self.log_path = Path(log_path) if log_path else None
        self.known: dict[str, Evaluation] = {}
        self.requests = self.oracle_calls = self.cache_hits = self.logged = 0
        # scores written by an earlier process, not yet asked for in this one
        self._earlier: list[Evaluation] = []
        if self.log_path and self.log_path.exists():
            for line in split_lines(read_text(self.log_path)):
                try:
                    self._earlier.append(Evaluation.from_dict(json.loads(line)))
                except (json.JSONDecodeError, TypeError):
                    break  # a line cut short by a crash: scores from there on are redone
        self._earlier_by_key = {self._key(e.arch): e for e in self._earlier}

    def counters(self) -> dict[str, int]:
        """Requests, oracle calls, cache hits, and log lines written (saved with a search state)."""
        return {
            "requests": self.requests,
            "oracle_calls": self.oracle_calls,
            "cache_hits": self.cache_hits,
            "logged": self.logged,
        }

    def resume(self, counters: dict[str, int]) -> None:
        """Continue counting from a saved state: its first `logged` scores are known already;
        later ones (made after that state, before a crash) count as oracle calls when asked for,
        exactly as in an uninterrupted run, without calling the oracle again."""
        if len(self._earlier) < counters["logged"]:
            raise ConfigError(
                f"{self.log_path} holds {len(self._earlier)} scores, the saved state counts "
                f"{counters['logged']}: the log was changed; start a new run"
            )
        self.requests, self.oracle_calls = counters["requests"], counters["oracle_calls"]
        self.cache_hits, self.logged = counters["cache_hits"], counters["logged"]
        for e in self._earlier[: self.logged]:
            self.known[self._key(e.arch)] = e
        self._earlier_by_key = {self._key(e.arch): e for e in self._earlier[self.logged :]}
        if self.log_path and self.log_path.exists():  # drop lines after the state: redone
            kept = split_lines(read_text(self.log_path))[: self.logged]
            write_lines_atomic(self.log_path, kept)

    @staticmethod
    def _key(arch: dict[str, Any]) -> str:
        return evaluation_key(arch)

    @property
    def n_objectives(self) -> int:
        """Quality plus one per cost (latency per device, or memory)."""
        return 1 + len(self.cost_keys)

    def constraints(self, arch: ArchBase) -> Constraints:
        """The costs, their upper bounds, parameter count, and one violation per budget (<= 0:
        met; a budget on a cost with an upper bound constrains the bound)."""
        costs = {key: float(cost(arch)) for key, cost in self._costs.items()}
        bounds = {key: float(bound(arch)) for key, bound in self._bounds.items()}
        params = int(self._params(arch))
        violations = [b.value({**costs, **bounds}, params) - b.limit for b in self.budgets]
        return Constraints(costs, bounds, params, violations)

    def feasible(self, arch: ArchBase) -> bool:
        """Whether `arch` meets every budget (predictors only; no oracle call)."""
        return all(v <= 0 for v in self.constraints(arch).violations)

    def evaluate(self, arch: ArchBase, force_quality: bool = False) -> Evaluation:
        """Score `arch` (from memory when it was scored before in this run)."""
        self.requests += 1
        key = self._key(arch.to_dict())
        known = self.known.get(key)
        if known is not None and (known.quality is not None or not force_quality):
            self.cache_hits += 1
            return known
        costs, bounds, params, violations = self.constraints(arch)
        quality = None
        if force_quality or all(v <= 0 for v in violations):
            earlier = self._earlier_by_key.pop(key, None)
            quality = earlier.quality if earlier and earlier.quality is not None else None
            if quality is None and key in self._precomputed:
                quality = self._precomputed.pop(key)
            if quality is None:
                quality = float(self._quality(arch))
            self.oracle_calls += 1
            if not math.isfinite(quality):
                raise ConfigError(f"the oracle returned {quality} for {arch.to_json()}")
        result = Evaluation(arch.to_dict(), costs, params, violations, quality, bounds)
        self.known[key] = result
        if self.log_path:
            append_jsonl(self.log_path, result.to_dict())
            self.logged += 1
        return result

    def evaluate_many(self, archs: Sequence[ArchBase]) -> list[Evaluation]:
        """`evaluate` each arch in order; with `quality_many`, the oracle calls this will make
        are made first, all at once, so the results and counters equal sequential evaluation."""
        if self._quality_many is not None:
            todo: dict[str, ArchBase] = {}
            for arch in archs:
                key = self._key(arch.to_dict())
                earlier = self._earlier_by_key.get(key)
                if (
                    key in self.known
                    or key in todo
                    or (earlier is not None and earlier.quality is not None)
                    or not self.feasible(arch)
                ):
                    continue
                todo[key] = arch
            if todo:
                values = self._quality_many(list(todo.values()))
                self._precomputed.update(zip(todo, (float(v) for v in values)))
        return [self.evaluate(arch) for arch in archs]

    def score_in_batches(
        self, quality_many: Callable[[list[ArchBase]], list[float]], close: Callable[[], None]
    ) -> None:
        """Score the new candidates of each `evaluate_many` call at once with `quality_many`
        (a worker pool); `close` releases it when the search ends."""
        self._quality_many = quality_many
        self.closers.append(close)

    def close(self) -> None:
        """Release what the quality functions hold (a worker pool)."""
        for close in self.closers:
            close()
        self.closers.clear()

    @contextmanager
    def uncounted(self) -> Iterator[None]:
        """Look-ups inside the block (re-reading a restored population) leave the counters."""
        saved = self.counters()
        try:
            yield
        finally:
            self.requests, self.cache_hits = saved["requests"], saved["cache_hits"]

    def lookup(self, arch: ArchBase) -> Evaluation:
        """The evaluation of an architecture scored earlier (not counted as a request)."""
        return self.known[self._key(arch.to_dict())]

    def objectives(self, result: Evaluation) -> list[float]:
        """Minimised objective vector: signed quality, then each cost."""
        quality = UNSCORED if result.quality is None else QUALITY_SIGN[self.metric] * result.quality
        return [quality, *(result.costs[key] for key in self.cost_keys)]

    def scored(self) -> list[Evaluation]:
        """Every feasible, scored architecture so far, in the order they were first scored."""
        return [e for e in self.known.values() if e.quality is not None and e.feasible]


class GeneRepair(Repair):
    """Rounds, clips and canonicalises genes so every candidate is a member of the space."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem: Problem, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.array([self.space.canonical_gene(x) for x in X])


class ArchProblem(Problem):
    """pymoo problem over the space's integer gene; fills `F` (minimised) and `G` (<= 0)."""

    def __init__(self, evaluator: ArchEvaluator) -> None:
        low, high = evaluator.space.gene_bounds()
        super().__init__(
            n_var=len(low),
            n_obj=evaluator.n_objectives,
            n_ieq_constr=len(evaluator.budgets),
            xl=low,
            xu=high,
            vtype=int,
        )
        self.evaluator = evaluator

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        space = self.evaluator.space
        results = self.evaluator.evaluate_many([space.from_gene(x) for x in X])
        out["F"] = np.array([self.evaluator.objectives(r) for r in results], dtype=float)
        if self.n_ieq_constr:
            out["G"] = np.array([r.violations for r in results], dtype=float)


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (all objectives minimised)."""
    array = np.asarray(points, dtype=float)
    keep = []
    for i, p in enumerate(array):
        dominated = np.any(np.all(array <= p, axis=1) & np.any(array < p, axis=1))
        if not dominated:
            keep.append(i)
    return keep
