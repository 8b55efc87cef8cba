"""Hypervolume in a fixed box, and the Pareto front of what a search has scored.

The box is fixed per run from the space's largest and smallest members, so hypervolumes of
generations, runs and algorithms on the same problem compare; it is saved in the run's state.
"""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV

from mos_search.search.problem import ArchEvaluator, Evaluation, non_dominated


def hypervolume_box(evaluator: ArchEvaluator) -> dict[str, list[float]]:
    """A fixed box to measure hypervolume in, from the space's largest and smallest members.

    The quality range is theirs widened by 10% each way; each cost runs from 0.9x the smallest's
    to 1.1x the largest's. Both corners are scored once (they are in every run's record).
    """
    big = evaluator.evaluate(evaluator.space.largest(), force_quality=True)
    small = evaluator.evaluate(evaluator.space.smallest(), force_quality=True)
    q_big, q_small = (evaluator.objectives(e)[0] for e in (big, small))
    span = abs(q_small - q_big) or abs(q_small) * 0.1 or 1.0
    low_q, high_q = min(q_big, q_small) - 0.1 * span, max(q_big, q_small) + 0.1 * span
    utopia = [low_q] + [0.9 * small.costs[key] for key in evaluator.cost_keys]
    reference = [high_q] + [1.1 * big.costs[key] for key in evaluator.cost_keys]
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
    """Feasible scored architectures no other one dominates, in order of the first cost."""
    scored = evaluator.scored()
    keep = non_dominated([evaluator.objectives(e) for e in scored])
    front = [scored[i] for i in keep]
    return sorted(front, key=lambda e: e.costs[evaluator.cost_keys[0]])
