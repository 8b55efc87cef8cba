"""Dropout whose mask costs a sixth of PyTorch's on the CPU.

`F.dropout` on the CPU draws one Mersenne-Twister number per element (`bernoulli_`): 16.5 ms for
a 2048 x 1024 float32 tensor on 2 cores, against 0.3 ms for a multiply, and 18% of a cpu-small
supernet training step (bench/throughput.py). Here one 64-bit draw gives four 15-bit uniform
numbers u in [0, 32768), an element is dropped when u < t with t = round(p * 32768), so the drop
rate is t / 32768 (within 1.6e-5 of p) and kept elements are scaled by 32768 / (32768 - t):
unbiased, E[dropout(x)] = x. The mask comes from the default generator, so `torch.manual_seed`
makes it repeatable. Off the CPU, `F.dropout` runs (its GPU kernel is fast already).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

LEVELS = 1 << 15  # uniform levels per element: the low 15 bits of each 16-bit quarter
_reference = False  # inside `reference_dropout()`: F.dropout everywhere


@contextmanager
def reference_dropout() -> Iterator[None]:
    """Within the block, `dropout` is `F.dropout` on the CPU too (for benchmarks and tests that
    compare the two)."""
    global _reference
    before, _reference = _reference, True
    try:
        yield
    finally:
        _reference = before


def drop_threshold(p: float) -> int:
    """Integer threshold t: an element is dropped when its level u < t (drop rate t / LEVELS)."""
    return round(p * LEVELS)


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """A bool tensor of `shape`, each element True with probability 1 - drop_threshold(p) / 2^15."""
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()
    levels = words.view(torch.int16)[:count].bitwise_and(LEVELS - 1)  # (count,) in [0, 2^15)
    return levels.ge(drop_threshold(p)).view(shape)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout of `x` (any shape) with drop rate `p`, as `F.dropout(x, p, training)`."""
    if not training or p <= 0:
        return x
    if _reference or x.device.type != "cpu" or p >= 1:
        return F.dropout(x, p, True)
    threshold = drop_threshold(p)
    if threshold == 0:
        return x
    scale = LEVELS / (LEVELS - threshold)
    return x * keep_mask(x.shape, p, x.device).to(x.dtype).mul_(scale)
