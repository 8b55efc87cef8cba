"""Predictor-assisted NSGA-II (`--algorithm nsga2-assisted`): a quality surrogate, refitted as the
oracle answers, screens candidates so that only the most promising reach the oracle.

Generation 1 scores `population` random members with the oracle, as NSGA-II does. Each later
generation:
1. fits the surrogate (`QualitySurrogate`: scikit-learn's ExtraTreesRegressor, seeded, on the
   space's feature vectors -> the minimised quality of every feasible architecture the oracle
   has scored); its uncertainty is the spread of the trees' predictions;
2. runs an inner NSGA-II (pymoo) for `INNER_GENERATIONS` on the surrogate's optimistic quality
   (mean - `KAPPA` x spread: a lower confidence bound, quality being minimised) and the search's
   cost objectives under the same budgets (costs and budgets are the cheap predictors, so no
   oracle call), starting from the survivors of everything the oracle has scored;
3. sends to the oracle the `calls_per_generation` unscored candidates of the inner search's last
   population whose optimistic points add the most hypervolume to the front of oracle scores,
   chosen greedily (each chosen point joins the front before the next choice; with nothing left
   that adds any, the lowest optimistic quality), and records the rest as screened out;
4. records the surrogate's accuracy on the candidates it sent, predicted before the oracle
   answered: mean absolute error, Kendall tau, and the share within mean +- 2 spreads.

Every step is seeded by (seed, generation) and the surrogate is refitted from the evaluator's
record, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.optimize import minimize

from mos_search.arch import ArchBase
from mos_search.errors import ConfigError
from mos_search.search.hypervolume import hypervolume
from mos_search.search.problem import (
    ArchEvaluator,
    ArchProblem,
    Evaluation,
    GeneRepair,
    evaluation_key,
    non_dominated,
)

INNER_GENERATIONS = 10
KAPPA = 1.0  # spreads subtracted from the surrogate's mean: how optimistic the screening is
TREES = 64
POOL = "all"
MIN_TRAIN = 4  # feasible oracle scores before the surrogate screens anything


class QualitySurrogate:
    """Minimised quality from features: an ExtraTrees ensemble, its trees' spread as the
    uncertainty (Geurts et al. 2006, scikit-learn's `ExtraTreesRegressor`)."""

    def __init__(self, seed: int) -> None:
        from sklearn.ensemble import ExtraTreesRegressor

        self.model = ExtraTreesRegressor(
            n_estimators=TREES, min_samples_leaf=2, random_state=seed, n_jobs=1
        )

    def fit(self, features: np.ndarray, quality: np.ndarray) -> QualitySurrogate:
        """Fit on (n, d) features and (n,) minimised quality."""
        self.model.fit(features, quality)
        return self

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (std over trees) of the minimised quality, each (n,)."""
        per_tree = np.stack([tree.predict(features) for tree in self.model.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)


class SurrogateProblem(ArchProblem):
    """The search's objectives with the oracle replaced by the surrogate's optimistic quality;
    costs and budget violations are the evaluator's cheap ones (cached per architecture)."""

    def __init__(self, evaluator: ArchEvaluator, surrogate: QualitySurrogate) -> None:
        super().__init__(evaluator)
        self.surrogate = surrogate
        self.cache: dict[str, tuple[list[float], list[float]]] = {}

    def costs(self, arch: ArchBase) -> tuple[list[float], list[float]]:
        """Cost objectives and budget violations of `arch` (predictors only)."""
        key = arch.to_json()
        if key not in self.cache:
            constraints = self.evaluator.constraints(arch)
            costs = [constraints.costs[k] for k in self.evaluator.cost_keys]
            self.cache[key] = (costs, list(constraints.violations))
        return self.cache[key]

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        space = self.evaluator.space
        archs = [space.from_gene(x) for x in X]
        mean, spread = self.surrogate.predict(np.array([space.features(a) for a in archs]))
        costs = [self.costs(a) for a in archs]
        out["F"] = np.column_stack([mean - KAPPA * spread, [c for c, _ in costs]])
        if self.n_ieq_constr:
            out["G"] = np.array([v for _, v in costs], dtype=float)


def greedy_by_hypervolume(
    candidates: list[list[float]], front: list[list[float]], box: dict, count: int
) -> list[int]:
    """Indices of `count` candidates (minimised objective vectors) chosen one by one for the
    largest hypervolume they add to `front` plus those chosen before; when none adds any, the
    remaining one with the lowest first objective."""
    chosen: list[int] = []
    current = [list(p) for p in front]
    for _ in range(min(count, len(candidates))):
        base = hypervolume(current, box)
        left = [i for i in range(len(candidates)) if i not in chosen]
        gains = [hypervolume([*current, candidates[i]], box) - base for i in left]
        best = int(np.argmax(gains))
        pick = left[best] if gains[best] > 0 else min(left, key=lambda i: candidates[i][0])
        chosen.append(pick)
        current.append(list(candidates[pick]))
    return chosen


class AssistedNSGA2:
    """See the module docstring; the `SearchAlgorithm` interface (`step`, `state`, `restore`)."""

    def __init__(
        self,
        evaluator: ArchEvaluator,
        population: int,
        seed: int,
        calls_per_generation: int | None = None,
    ) -> None:
        self.evaluator, self.population, self.seed = evaluator, population, seed
        self.space = evaluator.space
        self.calls = calls_per_generation or max(2, population // 4)
        self.box: dict | None = None  # the run's hypervolume box, set by `run.run_search`
        self.generation = 0
        self.genes: list[list[int]] = []  # the survivors of what the oracle scored
        self.log: list[dict[str, Any]] = []  # per generation: accuracy, sent and screened

    def step(self) -> list[Evaluation]:
        """Generation 1: a random sample scored by the oracle; later: screened candidates."""
        self.generation += 1
        rng = np.random.default_rng([self.seed, self.generation])
        if len(self.evaluator.scored()) < MIN_TRAIN:  # the first generation, or a space whose
            # random members rarely meet the budgets: another random sample
            archs = self._random_members(rng)
            self.log.append({"generation": self.generation, "sent": len(archs), "screened": []})
            evaluations = self.evaluator.evaluate_many(archs)
        else:
            evaluations = self._screened_step(rng)
        self.genes = self._survivors()
        return evaluations

    def generation_info(self) -> dict[str, Any]:
        """The surrogate's figures of the last generation, for the run's history."""
        last = self.log[-1] if self.log else {}
        return {k: last[k] for k in ("sent", "surrogate") if k in last}

    def _random_unscored(
        self, rng: np.random.Generator, taken: set[str], count: int
    ) -> list[ArchBase]:
        """Up to `count` random members outside `taken` that meet the budgets."""
        out: list[ArchBase] = []
        for _ in range(20):
            for arch in self._random_members(rng):
                key = evaluation_key(arch.to_dict())
                if key not in taken and self.evaluator.feasible(arch):
                    out.append(arch)
                    taken.add(key)
                if len(out) == count:
                    return out
        return out

    def _random_members(self, rng: np.random.Generator) -> list[ArchBase]:
        low, high = self.space.gene_bounds()
        seen, archs = set(), []
        for _ in range(100 * self.population):
            gene = rng.integers(low, high + 1)
            arch = self.space.from_gene(self.space.canonical_gene(gene))
            if arch.to_json() not in seen:
                seen.add(arch.to_json())
                archs.append(arch)
            if len(archs) == self.population:
                break
        return archs

    def _screened_step(self, rng: np.random.Generator) -> list[Evaluation]:
        scored = self.evaluator.scored()
        space, objectives = self.space, self.evaluator.objectives
        features = np.array([space.features(space.arch_from_dict(e.arch)) for e in scored])
        surrogate = QualitySurrogate(int(rng.integers(2**31))).fit(
            features, np.array([objectives(e)[0] for e in scored])
        )
        problem = SurrogateProblem(self.evaluator, surrogate)
        inner = NSGA2(
            pop_size=self.population,
            sampling=np.array(self.genes, dtype=int),
            crossover=SBX(prob=0.9, eta=3.0, vtype=float),
            mutation=PM(prob=1.0, eta=3.0, vtype=float),
            repair=GeneRepair(space),
            eliminate_duplicates=True,
        )
        offspring: list[Population] = []  # every candidate the inner search made

        def keep_offspring(algorithm: Any) -> None:
            if POOL == "all" and algorithm.off is not None:
                offspring.append(algorithm.off)

        result = minimize(
            problem,
            inner,
            ("n_gen", INNER_GENERATIONS),
            seed=int(rng.integers(2**31)),
            callback=keep_offspring,
        )
        seen = Population.merge(result.pop, *offspring) if offspring else result.pop
        known = {
            evaluation_key(e.arch) for e in self.evaluator.known.values() if e.quality is not None
        }
        pool, points = [], []
        for x, f, g in zip(seen.get("X"), seen.get("F"), _violations(seen)):
            arch = space.from_gene(x)
            if evaluation_key(arch.to_dict()) in known or any(v > 0 for v in g):
                continue
            if any(a == arch for a in pool):
                continue
            pool.append(arch)
            points.append([float(v) for v in f])
        front = [objectives(scored[i]) for i in non_dominated([objectives(e) for e in scored])]
        chosen = greedy_by_hypervolume(points, front, self.box, self.calls)
        sent = [pool[i] for i in chosen]
        filled = self.calls - len(sent)
        if filled > 0:  # the inner search converged on what is scored already: random
            # unscored members that meet the budgets keep the oracle calls per generation
            taken = known | {evaluation_key(a.to_dict()) for a in sent}
            sent += self._random_unscored(rng, taken, filled)
        if not sent:
            raise ConfigError("nsga2-assisted: no unscored member meets the budgets (exhausted)")
        mean, spread = surrogate.predict(np.array([space.features(a) for a in sent]))
        evaluations = self.evaluator.evaluate_many(sent)
        truth = np.array([objectives(e)[0] for e in evaluations])
        screened = [
            {"arch": pool[i].to_dict(), "optimistic": points[i]}
            for i in range(len(pool))
            if i not in chosen
        ]
        self.log.append(
            {
                "generation": self.generation,
                "sent": len(sent),
                "random_fill": max(filled, 0),
                "surrogate": surrogate_accuracy(mean, spread, truth, len(scored)),
                "predicted": [[float(m), float(s)] for m, s in zip(mean, spread)],
                "screened": screened,
            }
        )
        return evaluations

    def _survivors(self) -> list[list[int]]:
        """NSGA-II's survival (rank, then crowding) over every feasible oracle-scored
        architecture: the inner search's starting population."""
        scored = self.evaluator.scored()
        genes = np.array([self.space.to_gene(self.space.arch_from_dict(e.arch)) for e in scored])
        pop = Population.new(X=genes)
        pop.set("F", np.array([self.evaluator.objectives(e) for e in scored], dtype=float))
        keep = RankAndCrowding().do(
            _NoProblem(self.evaluator.n_objectives),
            pop,
            n_survive=min(self.population, len(pop)),
            random_state=np.random.default_rng([self.seed, self.generation, 1]),  # crowding ties
        )
        return keep.get("X").astype(int).tolist()

    def state(self) -> dict[str, Any]:
        """Generation count, survivors and the per-generation log (all plain data)."""
        return {"generation": self.generation, "genes": self.genes, "log": self.log}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue after generation `state["generation"]` (the evaluator holds the scores)."""
        self.generation = int(state["generation"])
        self.genes = [list(g) for g in state["genes"]]
        self.log = list(state["log"])


class _NoProblem(Problem):
    """RankAndCrowding asks for a problem only for its number of objectives (no constraints:
    every architecture it ranks is feasible)."""

    def __init__(self, n_obj: int) -> None:
        super().__init__(n_var=1, n_obj=n_obj)


def _violations(pop: Population) -> np.ndarray:
    g = pop.get("G")
    return np.zeros((len(pop), 0)) if g is None or np.size(g) == 0 else g


def surrogate_accuracy(
    mean: np.ndarray, spread: np.ndarray, truth: np.ndarray, n_train: int
) -> dict[str, Any]:
    """Prospective accuracy on the candidates sent: MAE (quality units), Kendall tau (None for
    fewer than 2 or constant values), share within mean +- 2 spreads, training-set size."""
    from scipy.stats import kendalltau

    tau = None
    if len(truth) >= 2 and np.ptp(truth) > 0 and np.ptp(mean) > 0:
        tau = float(kendalltau(mean, truth).statistic)
    return {
        "n_train": n_train,
        "n": len(truth),
        "mae": float(np.mean(np.abs(mean - truth))) if len(truth) else None,
        "kendall_tau": tau,
        "within_2_spreads": float(np.mean(np.abs(mean - truth) <= 2 * spread))
        if len(truth)
        else None,
    }
