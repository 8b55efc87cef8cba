"""Encoding a corpus split, and token-budget batches (deterministic for a seed and epoch)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from mos_search.constants import BOS_ID, EOS_ID, PAD_ID
from mos_search.data.corpus import Corpus
from mos_search.data.encoded import EncodedSplit
from mos_search.data.tokenizer import Tokenizer


def encode_split(
    corpus: Corpus, split: str, tokenizer: Tokenizer, max_len: int | None = None
) -> EncodedSplit:
    """Encode a split; with `max_len`, pairs whose either side is longer are dropped (training)."""
    pairs = corpus.pairs(split)
    src = tokenizer.encode_batch([s for s, _ in pairs])
    tgt = tokenizer.encode_batch([t for _, t in pairs])
    out = EncodedSplit([], [], [])
    for s, t, (_, ref) in zip(src, tgt, pairs):
        if max_len is not None and (len(s) + 1 > max_len or len(t) + 1 > max_len):
            continue
        out.sources.append(np.array([*s, EOS_ID], dtype=np.int64))
        out.targets.append(np.array([*t, EOS_ID], dtype=np.int64))
        out.references.append(ref)
    return out


def token_batches(
    data: EncodedSplit,
    max_tokens: int,
    seed: int | None = None,
    epoch: int = 0,
    by_source: bool = False,
) -> list[list[int]]:
    """Index batches of similar length whose padded size (rows x longest side) fits `max_tokens`.

    With a seed, ties in length are broken randomly and the batch order is shuffled, both fixed
    by (seed, epoch); without one, batches follow length order (evaluation).
    """
    lengths = data.lengths(by_source).tolist()
    rng = random.Random(None if seed is None else seed * 1_000_003 + epoch)
    tie = [rng.random() for _ in lengths] if seed is not None else list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tie[i]))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and longest_if_added * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    if seed is not None:
        rng.shuffle(batches)
    return batches


def pad(rows: list[np.ndarray], value: int = PAD_ID) -> torch.Tensor:
    """Right-pad 1-d id arrays into a (B, T) tensor."""
    out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


@dataclass
class Batch:
    """Model inputs and targets of one batch."""

    src: torch.Tensor  # (B, S)
    prev: torch.Tensor  # (B, T): BOS + target[:-1]
    target: torch.Tensor  # (B, T): target ids ending in EOS, PAD after
    indices: list[int]

    @property
    def target_tokens(self) -> int:
        """Number of non-pad target tokens."""
        return int((self.target != PAD_ID).sum())


def collate(data: EncodedSplit, indices: list[int]) -> Batch:
    """The batch of pairs `indices`."""
    targets = [data.targets[i] for i in indices]
    prev = [np.concatenate([[BOS_ID], t[:-1]]) for t in targets]
    return Batch(pad([data.sources[i] for i in indices]), pad(prev), pad(targets), list(indices))
