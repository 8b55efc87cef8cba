"""Greedy and beam search in numpy over any *stepper*: PyTorch models and ONNX graphs alike.

A stepper computes next-token logits for growing prefixes: `start(src)` returns a decoder state
for source rows, `step(prefix, state)` the logits (N, V) of the token after `prefix` (N, t) and
the new state, `reorder(state, order)` the state of rows `order`. Arrays here are numpy (int64
tokens, float32/64 logits), so the ONNX-only `translate` path shares this code without torch.

Options follow fairseq's conventions and defaults: `lenpen` ranks finished beam hypotheses by
score / length**lenpen (length in tokens, EOS included; 1.0 = per-token mean, 0 = raw sum; it
cannot change greedy search, which ends exactly one hypothesis), and `no_repeat_ngram_size` n
gives -inf to any token that would complete an n-gram already in the hypothesis (0 = off).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mos_search.constants import BOS_ID, EOS_ID, PAD_ID
from mos_search.errors import ConfigError


class Stepper(Protocol):
    """Computes next-token logits for growing prefixes."""

    def start(self, src: np.ndarray) -> Any:
        """Decoder state for source rows `src` (N, S)."""

    def step(self, prefix: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """Logits (N, V) of the token after `prefix` (N, t), and the new state."""

    def reorder(self, state: Any, order: np.ndarray) -> Any:
        """State with rows `order`."""


def max_lengths(src: np.ndarray, a: float = 1.5, b: int = 10, cap: int | None = None) -> np.ndarray:
    """Per-row decoding limit (tokens, EOS included): a * source length + b, at most `cap`.

    Per row, so a sentence's translation never depends on the sentences batched with it.
    """
    limits = (a * (src != PAD_ID).sum(1).astype(np.float32) + b).astype(np.int64)
    return np.minimum(limits, cap) if cap is not None else limits


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32."""
    x = logits.astype(np.float32, copy=False)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def next_lprobs(logits: np.ndarray, force_eos: np.ndarray) -> np.ndarray:
    """Log-probabilities with PAD/BOS banned and only EOS allowed in rows `force_eos`."""
    lprobs = log_softmax(logits)
    lprobs[:, PAD_ID] = lprobs[:, BOS_ID] = -np.inf
    if force_eos.any():
        eos = lprobs[force_eos, EOS_ID].copy()
        lprobs[force_eos] = -np.inf
        lprobs[force_eos, EOS_ID] = eos
    return lprobs


def block_repeated_ngrams(lprobs: np.ndarray, prefix: np.ndarray, size: int) -> np.ndarray:
    """-inf (in place) for each token that would complete an n-gram (n = `size`) already in its
    row of `prefix` (N, t), BOS included as in fairseq; 0 blocks nothing. EOS ends a hypothesis,
    so it is never blocked in a live row, and a row always keeps a token to choose."""
    if size < 0:
        raise ConfigError(f"--no-repeat-ngram: expected 0 (off) or more, found {size}")
    length = prefix.shape[1]
    if size == 0 or length < size:  # no complete n-gram yet
        return lprobs
    context = prefix[:, length - size + 1 :]  # (N, n-1): the newest n-1 tokens
    windows = sliding_window_view(prefix, size - 1, axis=1)[:, : length - size + 1]  # (N, W, n-1)
    rows, starts = np.nonzero((windows == context[:, None, :]).all(axis=-1))
    lprobs[rows, prefix[rows, starts + size - 1]] = -np.inf  # the token that followed
    return lprobs


def _strip(hypothesis: list[int]) -> list[int]:
    return [tok for tok in hypothesis if tok not in (PAD_ID, EOS_ID, BOS_ID)]


def greedy_search(
    stepper: Stepper, src: np.ndarray, max_len: int | None = None, no_repeat_ngram_size: int = 0
) -> list[list[int]]:
    """Most likely (unblocked) next token at every step, per source row; outputs exclude BOS
    and EOS."""
    n, limits = src.shape[0], max_lengths(src, cap=max_len)
    state = stepper.start(src)
    prefix = np.full((n, 1), BOS_ID, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)
    for t in range(int(limits.max())):
        logits, state = stepper.step(prefix, state)
        lprobs = next_lprobs(logits, limits - 1 == t)
        token = block_repeated_ngrams(lprobs, prefix, no_repeat_ngram_size).argmax(-1)
        token = np.where(finished, PAD_ID, token)
        prefix = np.concatenate([prefix, token[:, None]], axis=1)
        finished |= token == EOS_ID
        if finished.all():
            break
    return [_strip(row[1:].tolist()) for row in prefix]


def _top_candidates(scores: np.ndarray, lprobs: np.ndarray, count: int) -> tuple[np.ndarray, ...]:
    """Per sentence, the `count` best (score, beam row, token), best first (ties: lower index)."""
    b, k = scores.shape
    vocab = lprobs.shape[1]
    candidates = (scores.reshape(-1, 1) + lprobs).reshape(b, k * vocab)
    top = np.argpartition(-candidates, count - 1, axis=1)[:, :count]
    # order the few kept: best score first, lower index first among equal scores
    keys = np.lexsort((top, -np.take_along_axis(candidates, top, axis=1)), axis=1)
    index = np.take_along_axis(top, keys, axis=1)
    return np.take_along_axis(candidates, index, axis=1), index // vocab, index % vocab


def beam_search(
    stepper: Stepper,
    src: np.ndarray,
    beam: int = 5,
    lenpen: float = 1.0,
    max_len: int | None = None,
    no_repeat_ngram_size: int = 0,
) -> list[list[int]]:
    """Beam search per source row; the best finished hypothesis by score / length**lenpen
    (fairseq's normalisation; length counts EOS), tokens completing a repeated n-gram blocked.

    A sentence is done once `beam` hypotheses have ended (EOS among the top `beam` candidates).
    """
    b, k, limits = src.shape[0], beam, max_lengths(src, cap=max_len)
    row_limits = np.repeat(limits, k)
    state = stepper.start(np.repeat(src, k, axis=0))
    prefix = np.full((b * k, 1), BOS_ID, dtype=np.int64)
    scores = np.full((b, k), -np.inf, dtype=np.float32)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    for t in range(int(limits.max())):
        logits, state = stepper.step(prefix, state)
        lprobs = next_lprobs(logits, row_limits - 1 == t)  # (b*k, V)
        block_repeated_ngrams(lprobs, prefix, no_repeat_ngram_size)
        top_scores, origin, tokens = _top_candidates(scores, lprobs, 2 * k)
        keep_rows, keep_tokens = [], []
        new_scores = np.full((b, k), -np.inf, dtype=np.float32)
        for s in range(b):
            alive = 0
            done = len(finished[s]) >= k
            for rank in range(2 * k):
                score, row = float(top_scores[s, rank]), s * k + int(origin[s, rank])
                if score == -np.inf or alive == k:
                    break
                if int(tokens[s, rank]) == EOS_ID:
                    if rank < k and not done:
                        hypothesis = prefix[row, 1:].tolist()
                        finished[s].append((score / (t + 1) ** lenpen, hypothesis))
                    continue
                keep_rows.append(row)
                keep_tokens.append(int(tokens[s, rank]))
                new_scores[s, alive] = -np.inf if done else score
                alive += 1
            while alive < k:  # pad with a dead copy so every sentence keeps k rows
                keep_rows.append(s * k)
                keep_tokens.append(PAD_ID)
                alive += 1
        order = np.array(keep_rows, dtype=np.int64)
        prefix = np.concatenate([prefix[order], np.array(keep_tokens)[:, None]], axis=1)
        state, scores = stepper.reorder(state, order), new_scores  # rows stay in their sentence
        if all(len(f) >= k for f in finished):
            break
    out = []
    for s in range(b):
        if finished[s]:
            out.append(max(finished[s], key=lambda item: item[0])[1])
        else:  # nothing ended within the limit: best live hypothesis
            out.append(prefix[s * k, 1:].tolist())
    return [_strip(hyp) for hyp in out]
