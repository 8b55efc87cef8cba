"""Greedy and beam search over a decoder, with an incremental key/value cache or without one.

A *stepper* hides how the next-token logits of a prefix are computed: `CachedStepper` feeds one
token per step to a standalone model's incremental decoder; `FullStepper` re-runs any
`forward(src, prev)` over the whole prefix (the reference the cache is checked against, and the
way a supernet decodes without extraction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from mos_search.data.batches import EncodedSplit, pad, token_batches
from mos_search.data.corpus import BOS_ID, EOS_ID, PAD_ID
from mos_search.transformer import TranslationTransformer


class Stepper(Protocol):
    """Computes next-token logits for growing prefixes."""

    def start(self, src: Tensor) -> Any:
        """Decoder state for source rows `src` (N, S)."""

    def step(self, prefix: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Logits (N, V) of the token after `prefix` (N, t), and the new state."""

    def reorder(self, state: Any, order: Tensor) -> Any:
        """State with rows `order`."""


class CachedStepper:
    """Incremental decoding: one new token per step, self-attention keys/values cached."""

    def __init__(self, model: TranslationTransformer) -> None:
        self.model = model

    def start(self, src: Tensor) -> Any:
        """Encode once; cross-attention keys/values are projected here."""
        return self.model.start_decoder(self.model.encode(src))

    def step(self, prefix: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed only the newest token; the cache holds the rest."""
        logits, state = self.model.decode(prefix[:, -1:], state)
        return logits[:, -1], state

    def reorder(self, state: Any, order: Tensor) -> Any:
        """Beam rows never change sentence, so cross-attention caches stay in place."""
        return state.reorder(order, same_sources=True)


class FullStepper:
    """No cache: the whole prefix is re-decoded every step."""

    def __init__(self, forward: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.forward = forward

    def start(self, src: Tensor) -> Any:
        """The state is the source itself."""
        return src

    def step(self, prefix: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Re-run the whole prefix; keep the last position's logits."""
        return self.forward(state, prefix)[:, -1], state

    def reorder(self, state: Any, order: Tensor) -> Any:
        """Reorder the source rows."""
        return state.index_select(0, order)


def max_lengths(src: Tensor, a: float = 1.5, b: int = 10, cap: int | None = None) -> Tensor:
    """Per-row decoding limit (tokens, EOS included): a * source length + b, at most `cap`.

    Per row, so a sentence's translation never depends on the sentences batched with it.
    """
    limits = (a * (src != PAD_ID).sum(1).float() + b).long()
    return limits.clamp(max=cap) if cap is not None else limits


def _next_lprobs(logits: Tensor, force_eos: Tensor) -> Tensor:
    """Log-probabilities with PAD/BOS banned and only EOS allowed in rows `force_eos`."""
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    lprobs[:, PAD_ID] = lprobs[:, BOS_ID] = -torch.inf
    if bool(force_eos.any()):
        eos = lprobs[force_eos, EOS_ID].clone()
        lprobs[force_eos] = -torch.inf
        lprobs[force_eos, EOS_ID] = eos
    return lprobs


@torch.no_grad()
def greedy_search(stepper: Stepper, src: Tensor, max_len: int | None = None) -> list[list[int]]:
    """Most likely next token at every step, per source row; outputs exclude BOS and EOS."""
    n, limits = src.shape[0], max_lengths(src, cap=max_len)
    state = stepper.start(src)
    prefix = torch.full((n, 1), BOS_ID, dtype=torch.long)
    finished = torch.zeros(n, dtype=torch.bool)
    for t in range(int(limits.max())):
        logits, state = stepper.step(prefix, state)
        token = _next_lprobs(logits, limits - 1 == t).argmax(-1)
        token = torch.where(finished, torch.full_like(token, PAD_ID), token)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        finished |= token == EOS_ID
        if bool(finished.all()):
            break
    return [[tok for tok in row[1:].tolist() if tok not in (PAD_ID, EOS_ID)] for row in prefix]


@torch.no_grad()
def beam_search(
    stepper: Stepper, src: Tensor, beam: int = 5, lenpen: float = 1.0, max_len: int | None = None
) -> list[list[int]]:
    """Beam search per source row; the best finished hypothesis by score / length**lenpen.

    A sentence is done once `beam` hypotheses have ended (EOS among the top `beam` candidates).
    """
    b, k, limits = src.shape[0], beam, max_lengths(src, cap=max_len)
    row_limits = limits.repeat_interleave(k)
    state = stepper.start(src.repeat_interleave(k, dim=0))
    prefix = torch.full((b * k, 1), BOS_ID, dtype=torch.long)
    scores = torch.full((b, k), -torch.inf)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    for t in range(int(limits.max())):
        logits, state = stepper.step(prefix, state)
        lprobs = _next_lprobs(logits, row_limits - 1 == t)  # (b*k, V)
        vocab = lprobs.shape[1]
        candidates = (scores.view(-1, 1) + lprobs).view(b, k * vocab)
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (b, 2k)
        origin, tokens = top_index // vocab, top_index % vocab
        keep_rows, keep_tokens, new_scores = [], [], torch.full((b, k), -torch.inf)
        for s in range(b):
            alive = 0
            done = len(finished[s]) >= k
            for rank in range(2 * k):
                score, row = float(top_scores[s, rank]), s * k + int(origin[s, rank])
                if score == -torch.inf or alive == k:
                    break
                if int(tokens[s, rank]) == EOS_ID:
                    if rank < k and not done:
                        hypothesis = prefix[row, 1:].tolist()
                        finished[s].append((score / (t + 1) ** lenpen, hypothesis))
                    continue
                keep_rows.append(row)
                keep_tokens.append(int(tokens[s, rank]))
                new_scores[s, alive] = -torch.inf if done else score
                alive += 1
            while alive < k:  # pad with a dead copy so every sentence keeps k rows
                keep_rows.append(s * k)
                keep_tokens.append(PAD_ID)
                alive += 1
        order = torch.tensor(keep_rows)
        prefix = torch.cat([prefix[order], torch.tensor(keep_tokens)[:, None]], dim=1)
        state, scores = stepper.reorder(state, order), new_scores  # rows stay in their sentence
        if all(len(f) >= k for f in finished):
            break
    out = []
    for s in range(b):
        if finished[s]:
            out.append(max(finished[s], key=lambda item: item[0])[1])
        else:  # nothing ended within the limit: best live hypothesis
            out.append(prefix[s * k, 1:].tolist())
    return [[tok for tok in hyp if tok not in (PAD_ID, EOS_ID, BOS_ID)] for hyp in out]


def translate_ids(
    model: TranslationTransformer,
    data: EncodedSplit,
    beam: int = 1,
    lenpen: float = 1.0,
    max_tokens: int = 2048,
    cache: bool = True,
) -> list[list[int]]:
    """Hypothesis ids for every source of `data`, in data order, batched by length."""
    stepper = CachedStepper(model) if cache else FullStepper(model)
    out: list[list[int]] = [[] for _ in range(len(data))]
    budget = max(max_tokens // max(beam, 1), 1)
    for indices in token_batches(data, budget, by_source=True):
        src = pad([data.sources[i] for i in indices])
        hyps = greedy_search(stepper, src) if beam == 1 else beam_search(stepper, src, beam, lenpen)
        for i, hyp in zip(indices, hyps):
            out[i] = hyp
    return out
