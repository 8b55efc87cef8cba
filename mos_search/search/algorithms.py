"""Search algorithms behind one small interface: NSGA-II (pymoo), HAT's evolutionary search,
NSGA-II assisted by a quality surrogate (`assisted.py`), and random search as the baseline.

Each algorithm advances one generation per `step()` and can write its whole state as plain JSON
data (genes, objective values, random-generator state) and restore it, so a search resumed from
the state of generation k continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.evaluator import Evaluator
from pymoo.core.population import Population
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.sampling.rnd import IntegerRandomSampling

from mos_search.errors import ConfigError
from mos_search.search.config import ALGORITHMS
from mos_search.search.problem import ArchEvaluator, ArchProblem, Evaluation, GeneRepair


class SearchAlgorithm(ABC):
    """One generation per `step`; state in and out as plain data."""

    def __init__(self, evaluator: ArchEvaluator, population: int, seed: int) -> None:
        self.evaluator, self.population, self.seed = evaluator, population, seed
        self.space = evaluator.space
        self.box: dict | None = None  # the run's hypervolume box, set by `run.run_search`

    def generation_info(self) -> dict[str, Any]:
        """Figures of the last generation beyond the common ones, for the run's history."""
        return {}

    @abstractmethod
    def step(self) -> list[Evaluation]:
        """Run one generation; the evaluations of the population it leaves."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to continue, as JSON-ready data."""

    @abstractmethod
    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state()` of an earlier run with the same settings."""


class NSGA2Search(SearchAlgorithm):
    """pymoo's NSGA-II over the integer gene: integer sampling, SBX and polynomial mutation on
    the relaxed gene, then rounding and canonicalisation (`GeneRepair`); duplicates removed."""

    def __init__(self, evaluator: ArchEvaluator, population: int, seed: int) -> None:
        super().__init__(evaluator, population, seed)
        self.problem = ArchProblem(evaluator)
        self.algorithm = NSGA2(
            pop_size=population,
            sampling=IntegerRandomSampling(),
            crossover=SBX(prob=0.9, eta=3.0, vtype=float),
            mutation=PM(prob=1.0, eta=3.0, vtype=float),
            repair=GeneRepair(self.space),
            eliminate_duplicates=True,
        )
        # generations are counted by the caller; pymoo's own termination never triggers
        self.algorithm.setup(self.problem, termination=("n_gen", 10**9), seed=seed, verbose=False)

    def step(self) -> list[Evaluation]:
        """Ask for offspring (the initial sample first), evaluate them, and select survivors."""
        infills = self.algorithm.ask()
        if infills is None or len(infills) == 0:
            raise ConfigError("NSGA-II could not produce new distinct candidates (space exhausted)")
        self.algorithm.evaluator.eval(self.problem, infills, algorithm=self.algorithm)
        self.algorithm.tell(infills=infills)
        return self._population()

    def _population(self) -> list[Evaluation]:
        return [self.evaluator.lookup(self.space.from_gene(x)) for x in self.algorithm.pop.get("X")]

    def state(self) -> dict[str, Any]:
        """Survivors in order with their rank and crowding distance, and the generator state."""
        pop = self.algorithm.pop
        return {
            "genes": pop.get("X").astype(int).tolist(),
            # infeasible individuals carry no rank or crowding distance (None)
            "rank": [None if r is None else int(r) for r in pop.get("rank")],
            "crowding": [None if c is None else float(c) for c in pop.get("crowding")],
            "n_iter": int(self.algorithm.n_iter),
            "rng": self.algorithm.random_state.bit_generator.state,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild the population (objectives come from the evaluator's record, not the oracle)."""
        algorithm = self.algorithm
        pop = Population.new(X=np.array(state["genes"], dtype=int))
        with self.evaluator.uncounted():
            Evaluator().eval(self.problem, pop)
        pop.set(
            "rank",
            np.array(state["rank"], dtype=object),
            "crowding",
            np.array(state["crowding"], dtype=object),
        )
        algorithm.pop, algorithm.is_initialized = pop, True
        algorithm.n_iter = state["n_iter"]
        algorithm.random_state.bit_generator.state = state["rng"]
        algorithm.start_time = time.time()
        algorithm._set_optimum()


class HatEvolution(SearchAlgorithm):
    """HAT's evolutionary search: a single objective (quality) under the budgets.

    Population = parents + mutations + crossovers (HAT: 25 + 50 + 50 = 125, mutation probability
    0.3). The first generation is a random sample of candidates that meet the budgets; each later
    one keeps the best `parents` and adds mutations and crossovers of them that meet the budgets.
    """

    def __init__(
        self,
        evaluator: ArchEvaluator,
        population: int,
        seed: int,
        mutation_prob: float = 0.3,
        max_tries: int = 1000,
    ) -> None:
        super().__init__(evaluator, population, seed)
        if population < 5:
            raise ConfigError(f"hat-evo needs a population of at least 5, found {population}")
        self.parents = population // 5
        self.mutations = (population - self.parents) // 2
        self.crossovers = population - self.parents - self.mutations
        self.mutation_prob, self.max_tries = mutation_prob, max_tries
        self.rng = random.Random(seed)
        self.genes: list[list[int]] = []

    def _feasible_child(self, make: Any, what: str) -> Any:
        for _ in range(self.max_tries):
            arch = make()
            if self.evaluator.feasible(arch):
                return arch
        raise ConfigError(
            f"hat-evo: no {what} met the budget in {self.max_tries} tries; the budget is too tight "
            "for this space"
        )

    def step(self) -> list[Evaluation]:
        """Score the population: a random feasible sample first, then parents and children."""
        space, rng = self.space, self.rng
        if not self.genes:
            archs = [
                self._feasible_child(lambda: space.sample(rng), "random architecture")
                for _ in range(self.population)
            ]
        else:
            ranked = sorted(
                (self.evaluator.lookup(space.from_gene(g)) for g in self.genes),
                key=lambda e: self.evaluator.objectives(e)[0],
            )
            parents = [space.arch_from_dict(e.arch) for e in ranked[: self.parents]]
            mutated = [
                self._feasible_child(
                    lambda: space.mutate(rng.choice(parents), self.mutation_prob, rng), "mutation"
                )
                for _ in range(self.mutations)
            ]
            crossed = [
                self._feasible_child(
                    lambda: space.crossover(rng.choice(parents), rng.choice(parents), rng),
                    "crossover",
                )
                for _ in range(self.crossovers)
            ]
            archs = parents + mutated + crossed
        self.genes = [space.to_gene(a).tolist() for a in archs]
        return self.evaluator.evaluate_many(archs)

    def state(self) -> dict[str, Any]:
        """The population's genes and Python's random-generator state."""
        version, internal, gauss = self.rng.getstate()
        return {"genes": self.genes, "rng": [version, list(internal), gauss]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a saved population and generator state."""
        self.genes = [list(g) for g in state["genes"]]
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


class RandomSearch(SearchAlgorithm):
    """The baseline: each generation `population` uniform samples of the space (fixed seed),
    the front kept over everything scored. What a search method has to beat."""

    def __init__(self, evaluator: ArchEvaluator, population: int, seed: int) -> None:
        super().__init__(evaluator, population, seed)
        self.rng = random.Random(seed)

    def step(self) -> list[Evaluation]:
        """Score `population` new uniform samples."""
        archs = [self.space.sample(self.rng) for _ in range(self.population)]
        return self.evaluator.evaluate_many(archs)

    def state(self) -> dict[str, Any]:
        """Python's random-generator state."""
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue the saved generator."""
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


def make_algorithm(
    name: str, evaluator: ArchEvaluator, population: int, seed: int
) -> SearchAlgorithm:
    """The algorithm called `name` (see ALGORITHMS)."""
    if name == "nsga2":
        return NSGA2Search(evaluator, population, seed)
    if name == "random":
        return RandomSearch(evaluator, population, seed)
    if name == "nsga2-assisted":
        from mos_search.search.assisted import AssistedNSGA2

        return AssistedNSGA2(evaluator, population, seed)
    if name == "hat-evo":
        if not evaluator.budgets:
            raise ConfigError(
                "hat-evo optimises quality under a budget: give --max-latency-ms, "
                "--max-memory-mib or --max-params"
            )
        return HatEvolution(evaluator, population, seed)
    raise ConfigError(f"algorithm: expected one of {', '.join(ALGORITHMS)}, found {name!r}")
