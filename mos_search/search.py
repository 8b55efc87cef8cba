"""Run a search: generations with hypervolume and diversity logged, a checkpoint after each one.

A run folder holds `search.json` (the settings), `evaluations.jsonl` (every architecture scored,
appended as it happens), `state.json` (the algorithm's state and the per-generation log, rewritten
atomically after every generation) and, at the end, `front.json`. `--resume` continues from
`state.json`; the first Ctrl-C finishes the generation in progress and saves it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.indicators.hv import HV

from mos_search.algorithms import ALGORITHMS, make_algorithm
from mos_search.errors import ConfigError
from mos_search.problem import QUALITY_SIGN, ArchEvaluator, Evaluation, non_dominated

STATE_VERSION = 1
# settings a resumed run may change: only how long it goes on
RESUMABLE_CHANGES = ("generations",)
RESUMABLE_EXTRA = ("workers",)  # scoring in parallel gives the same numbers


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how; saved in the run folder, so a run can be resumed exactly."""

    algorithm: str = "nsga2"
    generations: int = 20
    population: int = 40
    seed: int = 0
    metric: str = "loss"
    devices: tuple[str, ...] = ("onnxruntime-cpu",)
    max_latency_ms: dict[str, float] = field(default_factory=dict)
    max_params: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # oracle and predictor settings

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"algorithm: expected one of {', '.join(ALGORITHMS)}, found {self.algorithm!r}"
            )
        if self.generations < 1 or self.population < 2:
            raise ConfigError(
                f"generations and population must be >= 1 and >= 2, found {self.generations} "
                f"and {self.population}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "devices": list(self.devices)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"search settings: unknown keys {sorted(unknown)}")
        return cls(**{**data, "devices": tuple(data.get("devices", ()))})


@dataclass
class SearchResult:
    """What a search call did, and the front it found (feasible, non-dominated, scored)."""

    front: list[Evaluation]
    generations_done: int
    interrupted: bool
    history: list[dict[str, Any]]
    out: Path


def hypervolume_box(evaluator: ArchEvaluator) -> dict[str, list[float]]:
    """A fixed box to measure hypervolume in, from the space's largest and smallest members.

    The quality range is theirs widened by 10% each way; latency runs from 0.9x the smallest's to
    1.1x the largest's. Both corners are scored once (they are in every run's record).
    """
    big = evaluator.evaluate(evaluator.space.largest(), force_quality=True)
    small = evaluator.evaluate(evaluator.space.smallest(), force_quality=True)
    q_big, q_small = (evaluator.objectives(e)[0] for e in (big, small))
    span = abs(q_small - q_big) or abs(q_small) * 0.1 or 1.0
    low_q, high_q = min(q_big, q_small) - 0.1 * span, max(q_big, q_small) + 0.1 * span
    utopia = [low_q] + [0.9 * small.latency_ms[d] for d in evaluator.devices]
    reference = [high_q] + [1.1 * big.latency_ms[d] for d in evaluator.devices]
    return {"utopia": utopia, "reference": reference}


def hypervolume(points: list[list[float]], box: dict[str, list[float]]) -> float:
    """Share of the box (0..1) that `points` (minimised objectives) dominate."""
    if not points:
        return 0.0
    low, high = np.array(box["utopia"]), np.array(box["reference"])
    scaled = np.maximum((np.asarray(points, dtype=float) - low) / (high - low), 0.0)
    inside = scaled[np.all(scaled < 1.0, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=np.ones(scaled.shape[1])).do(inside))


def pareto_front(evaluator: ArchEvaluator) -> list[Evaluation]:
    """Feasible scored architectures no other one dominates, by the first device's latency."""
    scored = evaluator.scored()
    keep = non_dominated([evaluator.objectives(e) for e in scored])
    front = [scored[i] for i in keep]
    return sorted(front, key=lambda e: e.latency_ms[evaluator.devices[0]])


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _generation_record(
    generation: int, population: list[Evaluation], evaluator: ArchEvaluator, box: dict, spent: float
) -> dict[str, Any]:
    feasible = [e for e in population if e.quality is not None and e.feasible]
    front = pareto_front(evaluator)
    best = min((evaluator.objectives(e)[0] for e in feasible), default=None)
    return {
        "generation": generation,
        "hypervolume": hypervolume([evaluator.objectives(e) for e in front], box),
        "front_size": len(front),
        "distinct": len({json.dumps(e.arch, sort_keys=True) for e in population}),
        "population": len(population),
        "feasible": len(feasible),
        "best_quality": None if best is None else best * QUALITY_SIGN[evaluator.metric],
        **evaluator.counters(),
        "seconds": round(spent, 3),
    }


class _StopFlag:
    """First Ctrl-C: stop after the generation in progress; second: stop at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def _comparable(config: SearchConfig) -> dict[str, Any]:
    data = config.to_dict()
    data["extra"] = {k: v for k, v in data["extra"].items() if k not in RESUMABLE_EXTRA}
    return data


def open_run(out: str | Path, config: SearchConfig, resume: bool) -> tuple[Path, dict | None]:
    """Create the run folder, or check a resumed one; the saved state, if resuming."""
    out = Path(out)
    state_path = out / "state.json"
    if resume:
        # no state.json yet: the run stopped in its first generation and starts again,
        # reusing the scores it had logged
        state = json.loads(state_path.read_text()) if state_path.exists() else None
        settings_path = out / "search.json"
        if state is None and not settings_path.exists():
            raise ConfigError(f"--resume: {out} holds no search (search.json)")
        saved = SearchConfig.from_dict(
            state["config"] if state else json.loads(settings_path.read_text())
        )
        wanted, before = _comparable(config), _comparable(saved)
        changed = [k for k, v in wanted.items() if before[k] != v and k not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(
                f"--resume: settings differ from the saved run in {', '.join(sorted(changed))}; "
                f"only {', '.join(RESUMABLE_CHANGES)} may change"
            )
        _write_json(settings_path, config.to_dict())
        return out, state
    if state_path.exists() or (out / "evaluations.jsonl").exists():
        raise ConfigError(f"{out} already holds a search; add --resume or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "search.json", config.to_dict())
    return out, None


def run_search(
    config: SearchConfig,
    evaluator: ArchEvaluator,
    out: str | Path,
    state: dict | None = None,
    on_generation: Callable[[dict[str, Any]], None] | None = None,
    stop_after: int | None = None,
) -> SearchResult:
    """Run (or continue from `state`) up to `config.generations` generations, saving each.

    `stop_after` ends the call after that many generations of this call, as a Ctrl-C would
    (for tests and for splitting a long run).
    """
    out = Path(out)
    algorithm = make_algorithm(config.algorithm, evaluator, config.population, config.seed)
    if state is not None:
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"{out}/state.json: version {state.get('version')}, expected 1")
        evaluator.resume(state["counters"])
        algorithm.restore(state["algorithm"])
        box, history = state["box"], state["history"]
    else:
        evaluator.resume({"requests": 0, "oracle_calls": 0, "cache_hits": 0, "logged": 0})
        _check_budget_reachable(evaluator)
        box, history = hypervolume_box(evaluator), []
    stop = _StopFlag()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, stop) if in_main else None
    interrupted, done_here = False, 0
    try:
        while len(history) < config.generations and not stop.requested:
            started = time.perf_counter()
            population = algorithm.step()
            record = _generation_record(
                len(history) + 1, population, evaluator, box, time.perf_counter() - started
            )
            history.append(record)
            _write_json(
                out / "state.json",
                {
                    "version": STATE_VERSION,
                    "config": config.to_dict(),
                    "generation": len(history),
                    "algorithm": algorithm.state(),
                    "counters": evaluator.counters(),
                    "box": box,
                    "history": history,
                },
            )
            if on_generation:
                on_generation(record)
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    interrupted = interrupted or len(history) < config.generations
    front = pareto_front(evaluator)
    if not interrupted:
        if not front:
            option = (
                "--max-memory-mib" if evaluator.cost_key == "memory_mib" else "--max-latency-ms"
            )
            raise ConfigError(
                f"no architecture the search scored met the budget; loosen {option} or --max-params"
            )
        _write_json(out / "front.json", front_records(front, evaluator))
    return SearchResult(front, len(history), interrupted, history, out)


def front_records(front: list[Evaluation], evaluator: ArchEvaluator) -> list[dict[str, Any]]:
    """The front as JSON-ready records (quality under its metric name, costs under the
    evaluator's cost key: `predicted_latency_ms` or `memory_mib`)."""
    return [
        {
            "arch": e.arch,
            evaluator.metric: e.quality,
            evaluator.cost_key: e.latency_ms,
            "params": e.params,
        }
        for e in front
    ]


def _check_budget_reachable(evaluator: ArchEvaluator) -> None:
    """A clear error when not even the smallest member meets the budget."""
    smallest = evaluator.space.smallest()
    latency, params, violations = evaluator.constraints(smallest)
    if all(v <= 0 for v in violations):
        return
    memory = evaluator.cost_key == "memory_mib"
    unit, how = ("MiB", "") if memory else ("ms", "predicted ")
    parts = [
        f"{d}: smallest {how}{latency[d]:.2f} {unit} > budget {limit:g} {unit}"
        for d, limit in evaluator.budget.max_latency_ms.items()
        if latency[d] > limit
    ]
    if evaluator.budget.max_params is not None and params > evaluator.budget.max_params:
        parts.append(f"params: smallest {params:,} > budget {evaluator.budget.max_params:,}")
    raise ConfigError(
        "budget cannot be met by any architecture of the space (" + "; ".join(parts) + ")"
    )
