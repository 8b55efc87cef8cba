"""PyTorch steppers for the numpy search in `beam.py`, with a key/value cache or without one.

`CachedStepper` feeds one token per step to a standalone model's incremental decoder;
`FullStepper` re-runs any `forward(src, prev)` over the whole prefix (the reference the cache is
checked against, and the way a supernet decodes without extraction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mos_search.data.batches import pad, token_batches
from mos_search.data.encoded import EncodedSplit
from mos_search.models.transformer import TranslationTransformer
from mos_search.oracle.beam import beam_search, greedy_search


class CachedStepper:
    """Incremental decoding: one new token per step, self-attention keys/values cached."""

    def __init__(self, model: TranslationTransformer) -> None:
        self.model = model

    @torch.no_grad()
    def start(self, src: np.ndarray) -> Any:
        """Encode once; cross-attention keys/values are projected here."""
        return self.model.start_decoder(self.model.encode(torch.from_numpy(src)))

    @torch.no_grad()
    def step(self, prefix: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """Feed only the newest token; the cache holds the rest."""
        logits, state = self.model.decode(torch.from_numpy(prefix[:, -1:]), state)
        return logits[:, -1].numpy(), state

    def reorder(self, state: Any, order: np.ndarray) -> Any:
        """Beam rows never change sentence, so cross-attention caches stay in place."""
        return state.reorder(torch.from_numpy(order), same_sources=True)


class FullStepper:
    """No cache: the whole prefix is re-decoded every step."""

    def __init__(self, forward: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.forward = forward

    def start(self, src: np.ndarray) -> Any:
        """The state is the source itself."""
        return torch.from_numpy(src)

    @torch.no_grad()
    def step(self, prefix: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """Re-run the whole prefix; keep the last position's logits."""
        return self.forward(state, torch.from_numpy(prefix))[:, -1].numpy(), state

    def reorder(self, state: Any, order: np.ndarray) -> Any:
        """Reorder the source rows."""
        return state.index_select(0, torch.from_numpy(order))


def translate_ids(
    model: TranslationTransformer,
    data: EncodedSplit,
    beam: int = 1,
    lenpen: float = 1.0,
    max_tokens: int = 2048,
    cache: bool = True,
    no_repeat_ngram_size: int = 0,
) -> list[list[int]]:
    """Hypothesis ids for every source of `data`, in data order, batched by length (decoding
    options: `beam.py`)."""
    stepper = CachedStepper(model) if cache else FullStepper(model)
    out: list[list[int]] = [[] for _ in range(len(data))]
    budget = max(max_tokens // max(beam, 1), 1)
    blocked = {"no_repeat_ngram_size": no_repeat_ngram_size}
    for indices in token_batches(data, budget, by_source=True):
        src = pad([data.sources[i] for i in indices]).numpy()
        if beam == 1:
            hyps = greedy_search(stepper, src, **blocked)
        else:
            hyps = beam_search(stepper, src, beam, lenpen, **blocked)
        for i, hyp in zip(indices, hyps):
            out[i] = hyp
    return out
