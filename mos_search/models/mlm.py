"""Masked-LM: BERT's masking (15% of tokens; 80% `<mask>`, 10% random, 10% kept), loss, perplexity.

Masks are drawn per sentence from a generator seeded by (seed, epoch, sentence index), so they do
not depend on how sentences are batched, on the process, or on the rank: training is resumable
to the same result, and a validation slice (seeded by `EVAL_MASK_SEED`) is masked identically
every time, which is what makes perplexities of different architectures comparable.
Logits are computed at the masked positions only (about 7x less work for the output layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from mos_search.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from mos_search.data.batches import pad, token_batches
from mos_search.data.encoded import EncodedSplit

MASK_RATE = 0.15
EVAL_MASK_SEED = 20_231_129
FIRST_WORD_ID = 5  # ids below are pad/unk/bos/eos/<mask>: never drawn as random replacements
SPECIAL_IDS = (PAD_ID, BOS_ID, EOS_ID)

MaskedForward = Callable[[Tensor, Tensor], Tensor]  # (tokens, positions) -> (N, V) logits


def mask_row(
    row: np.ndarray, vocab_size: int, mask_id: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of one sentence: targets hold the original id at the chosen positions
    and PAD elsewhere; at least one token is chosen when the sentence has any."""
    eligible = np.flatnonzero(~np.isin(row, SPECIAL_IDS))
    inputs, targets = row.copy(), np.full_like(row, PAD_ID)
    if len(eligible) == 0:
        return inputs, targets
    count = max(1, round(MASK_RATE * len(eligible)))
    chosen = rng.choice(eligible, size=count, replace=False)
    targets[chosen] = row[chosen]
    action = rng.random(count)
    inputs[chosen[action < 0.8]] = mask_id
    randomised = chosen[(action >= 0.8) & (action < 0.9)]
    inputs[randomised] = rng.integers(FIRST_WORD_ID, vocab_size, size=len(randomised))
    return inputs, targets


def masked_batch(
    data: EncodedSplit,
    indices: list[int],
    vocab_size: int,
    mask_id: int,
    seed: int,
    epoch: int,
) -> tuple[Tensor, Tensor]:
    """Padded (inputs, targets) of sentences `indices`, each masked by its own seeded generator."""
    rows = [
        mask_row(data.sources[i], vocab_size, mask_id, np.random.default_rng((seed, epoch, i)))
        for i in indices
    ]
    return pad([r[0] for r in rows]), pad([r[1] for r in rows])


def masked_nll(forward: MaskedForward, inputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """Summed cross-entropy (nats) over the masked positions, and how many there are."""
    positions = targets != PAD_ID
    logits = forward(inputs, positions)  # (N, V)
    nll = nn.functional.cross_entropy(logits.float(), targets[positions], reduction="sum")
    return nll, int(positions.sum())


@torch.no_grad()
def masked_lm_nll(
    forward: MaskedForward,
    data: EncodedSplit,
    vocab_size: int,
    mask_id: int,
    max_tokens: int = 4096,
    seed: int = EVAL_MASK_SEED,
) -> float:
    """Mean NLL per masked token (nats) over `data` with its fixed masks."""
    total, tokens = 0.0, 0
    for indices in token_batches(data, max_tokens, by_source=True):
        inputs, targets = masked_batch(data, indices, vocab_size, mask_id, seed, 0)
        nll, count = masked_nll(forward, inputs, targets)
        total, tokens = total + float(nll), tokens + count
    return total / max(tokens, 1)


def perplexity(mean_nll: float) -> float:
    """exp of a mean NLL per token."""
    return math.exp(mean_nll)


def check_mask_token(mask_id: int | None, where: str) -> int:
    """The `<mask>` id of a tokenizer, or a clear error when it has none."""
    from mos_search.errors import DataError

    if mask_id is None or mask_id == UNK_ID:
        raise DataError(
            f"{where} has no <mask> token: masked-LM needs a text corpus (`mos-search data text`)"
        )
    return mask_id
