"""Label-smoothed cross-entropy and validation loss over a split."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mos_search.constants import PAD_ID
from mos_search.data.batches import collate, token_batches
from mos_search.data.encoded import EncodedSplit


def label_smoothed_nll(logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed loss and summed NLL over non-pad targets; logits (B, T, V)."""
    lprobs = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    mask = target != PAD_ID
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[mask]
    smooth = -lprobs.mean(dim=-1)[mask]
    return ((1.0 - epsilon) * nll + epsilon * smooth).sum(), nll.sum()


@torch.no_grad()
def validation_loss(
    forward: Callable[[Tensor, Tensor], Tensor], data: EncodedSplit, max_tokens: int = 4096
) -> float:
    """Mean NLL per target token (nats, no smoothing) of `forward(src, prev) -> logits`."""
    total, tokens = 0.0, 0
    for indices in token_batches(data, max_tokens):
        batch = collate(data, indices)
        _, nll = label_smoothed_nll(forward(batch.src, batch.prev), batch.target, 0.0)
        total, tokens = total + float(nll), tokens + batch.target_tokens
    return total / max(tokens, 1)


@torch.no_grad()
def sentence_nlls(
    forward: Callable[[Tensor, Tensor], Tensor], data: EncodedSplit, max_tokens: int = 4096
) -> tuple[list[float], list[int]]:
    """Per sentence of `data` (in its order): summed NLL of the target (nats, no smoothing) and
    its target token count, for paired tests and bootstrap intervals over sentences."""
    nll_sums, counts = [0.0] * len(data.targets), [0] * len(data.targets)
    for indices in token_batches(data, max_tokens):
        batch = collate(data, indices)
        lprobs = torch.log_softmax(forward(batch.src, batch.prev).float(), dim=-1)  # (B, T, V)
        mask = batch.target != PAD_ID
        nll = -lprobs.gather(-1, batch.target.unsqueeze(-1)).squeeze(-1) * mask  # (B, T)
        for row, index in enumerate(indices):
            nll_sums[index] = float(nll[row].sum())
            counts[index] = int(mask[row].sum())
    return nll_sums, counts
