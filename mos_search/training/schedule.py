"""What each training step trains and how fast: the architectures of a step and its learning rate,
both pure functions of the step number (so every rank, and a resumed run, agrees)."""

from __future__ import annotations

import math
import random

from mos_search.arch import ArchBase
from mos_search.space import SearchSpace


class ArchSampler:
    """The architectures of each step, a pure function of (seed, step): same on every rank."""

    def __init__(
        self,
        space: SearchSpace,
        sampling: str,
        random_archs: int,
        seed: int,
        fixed: ArchBase | None = None,
    ) -> None:
        self.space, self.sampling, self.k, self.seed, self.fixed = (
            space,
            sampling,
            random_archs,
            seed,
            fixed,
        )

    def archs(self, step: int) -> list[ArchBase]:
        """Architectures trained at `step`."""
        if self.fixed is not None:
            return [self.fixed]
        rng = random.Random(self.seed * 1_000_003 + step)
        sampled = [self.space.sample(rng) for _ in range(self.k)]
        if self.sampling == "sandwich":
            return [self.space.largest(), self.space.smallest(), *sampled]
        return sampled


def inverse_sqrt_lr(step: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then decay as 1/sqrt(step)."""
    step = max(step, 1)
    if warmup <= 0:
        return peak
    return peak * min(step / warmup, math.sqrt(warmup / step))
