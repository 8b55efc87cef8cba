"""Run a search: generations with hypervolume and diversity logged, a checkpoint after each one.

A run folder holds `search.json` (the settings), `evaluations.jsonl` (every architecture scored,
appended as it happens), `state.json` (the algorithm's state and the per-generation log, rewritten
atomically after every generation) and, at the end, `front.json`. `--resume` continues from
`state.json`; the first Ctrl-C finishes the generation in progress and saves it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mos_search.arch import ArchBase
from mos_search.errors import ConfigError
from mos_search.files import check_writable_dir, read_json, write_json_atomic
from mos_search.interrupt import GracefulStop
from mos_search.search.algorithms import make_algorithm
from mos_search.search.config import QUALITY_SIGN, RESUMABLE_CHANGES, Budget, SearchConfig
from mos_search.search.hypervolume import hypervolume, hypervolume_box, pareto_front
from mos_search.search.problem import ArchEvaluator, Evaluation
from mos_search.settings import naming_file

STATE_VERSION = 1


@dataclass
class SearchResult:
    """What a search call did, and the front it found (feasible, non-dominated, scored)."""

    front: list[Evaluation]
    generations_done: int
    interrupted: bool
    history: list[dict[str, Any]]
    out: Path


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


def saved_config(out: str | Path) -> SearchConfig | None:
    """The settings of the search saved in `out` (its state's, else search.json's); None when
    `out` holds no search."""
    state_path, settings_path = Path(out) / "state.json", Path(out) / "search.json"
    if state_path.exists():
        with naming_file(state_path, "config"):
            return SearchConfig.from_dict(read_json(state_path)["config"])
    if settings_path.exists():
        with naming_file(settings_path):
            return SearchConfig.from_dict(read_json(settings_path))
    return None


def open_run(out: str | Path, config: SearchConfig, resume: bool) -> tuple[Path, dict | None]:
    """Create the run folder, or check a resumed one; the saved state, if resuming."""
    out = Path(out)
    check_writable_dir(out)  # before the model and the first generation, not after it
    state_path = out / "state.json"
    if resume:
        # no state.json yet: the run stopped in its first generation and starts again,
        # reusing the scores it had logged
        state = read_json(state_path) if state_path.exists() else None
        saved = saved_config(out)
        if saved is None:
            raise ConfigError(f"--resume: {out} holds no search (search.json)")
        changed = config.resume_changes(saved)
        if changed:
            raise ConfigError(
                f"--resume: settings differ from the saved run in {', '.join(changed)}; "
                f"only {', '.join(RESUMABLE_CHANGES.values())} may change"
            )
        write_json_atomic(out / "search.json", config.to_dict())
        return out, state
    if state_path.exists() or (out / "evaluations.jsonl").exists():
        raise ConfigError(f"{out} already holds a search; add --resume or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "search.json", config.to_dict())
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
        _check_budget_reachable(evaluator, config.seed)
        box, history = hypervolume_box(evaluator), []
    algorithm.box = box
    interrupted, done_here = False, 0
    try:
        with GracefulStop() as stop:  # first Ctrl-C: finish this generation; second: stop now
            while len(history) < config.generations and not stop.requested:
                started = time.perf_counter()
                population = algorithm.step()
                record = _generation_record(
                    len(history) + 1, population, evaluator, box, time.perf_counter() - started
                )
                record.update(algorithm.generation_info())
                history.append(record)
                write_json_atomic(
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
    interrupted = interrupted or len(history) < config.generations
    front = pareto_front(evaluator)
    if not interrupted:
        if not front:
            flags = " or ".join(b.flag for b in evaluator.budgets)
            raise ConfigError(f"no architecture the search scored met the budget; loosen {flags}")
        write_json_atomic(out / "front.json", front_records(front, evaluator))
    return SearchResult(front, len(history), interrupted, history, out)


def front_records(front: list[Evaluation], evaluator: ArchEvaluator) -> list[dict[str, Any]]:
    """The front as JSON-ready records: the arch, its quality under the metric's name, its costs
    (in the units of the search's `Cost` objectives), parameter count and, where the search
    constrains them, the upper bounds of its costs and peak memory."""
    return [
        {"arch": e.arch, evaluator.metric: e.quality, "costs": e.costs, "params": e.params}
        | ({"bounds": e.bounds} if e.bounds else {})
        for e in front
    ]


REACHABLE_SAMPLES = 2048  # members tried, beside the smallest, before a budget is refused


def _check_budget_reachable(evaluator: ArchEvaluator, seed: int = 0) -> None:
    """A clear error when no member the check tries meets every budget.

    The smallest member is not always the fastest (a deep, narrow decoder can lose to a shallow,
    wide one), so the check tries the smallest member and `REACHABLE_SAMPLES` uniform samples
    (seeded), and each budget is judged by its best value among them; costs and bounds come from
    the predictors, no oracle is asked.
    """
    rng = random.Random(seed)
    space = evaluator.space
    candidates = [space.smallest(), *(space.sample(rng) for _ in range(REACHABLE_SAMPLES))]
    best: list[tuple[float, ArchBase] | None] = [None] * len(evaluator.budgets)
    for arch in candidates:
        costs, bounds, params, violations = evaluator.constraints(arch)
        if all(v <= 0 for v in violations):
            return
        for i, budget in enumerate(evaluator.budgets):
            value = budget.value({**costs, **bounds}, params)
            if best[i] is None or value < best[i][0]:
                best[i] = (value, arch)
    parts = [
        f"{b.name}: best of {len(candidates):,} members tried {_estimate(b, evaluator)}"
        f"{b.format(value)} > budget {b.describe()}"
        for b, (value, _) in zip(evaluator.budgets, best)
        if value > b.limit
    ] or ["no member tried meets all budgets at once"]
    raise ConfigError(
        "budget cannot be met by any architecture of the space (" + "; ".join(parts) + ")"
    )


def _estimate(budget: Budget, evaluator: ArchEvaluator) -> str:
    """How the judged value is known: a predicted latency, or the upper bound of its prediction
    interval (the search's confidence); memory and parameters are exact."""
    if budget.metric != "latency":
        return ""
    return "predicted upper bound " if budget.cost_key in evaluator.bound_keys else "predicted "
