"""An encoded split: token ids of sources and targets, with the raw reference texts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EncodedSplit:
    """Token ids of a split: sources and targets end in EOS; `references` are the raw targets."""

    sources: list[np.ndarray]
    targets: list[np.ndarray]
    references: list[str]

    def __len__(self) -> int:
        return len(self.sources)

    def lengths(self, by_source: bool = False) -> np.ndarray:
        """Per-pair batching length: the source's, or the longer side's."""
        if by_source:
            return np.array([len(s) for s in self.sources], dtype=np.int64)
        return np.array(
            [max(len(s), len(t)) for s, t in zip(self.sources, self.targets)], dtype=np.int64
        )

    def subset(self, limit: int | None) -> EncodedSplit:
        """`limit` pairs spread evenly over the split, in order (all when None or larger).

        A split is ordered by book, so its first N pairs would all come from one book.
        """
        if limit is None or limit >= len(self):
            return self
        picked = np.linspace(0, len(self) - 1, limit).round().astype(int)
        return EncodedSplit(
            [self.sources[i] for i in picked],
            [self.targets[i] for i in picked],
            [self.references[i] for i in picked],
        )
