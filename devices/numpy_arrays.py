"""Array primitives for host (numpy) backends."""

from __future__ import annotations

import numpy as np


class NumpyArrays:
    """`put`/`fetch`/`zeros`/`argmax`/`repeat_batch` on numpy arrays."""

    def put(self, array: np.ndarray) -> np.ndarray:
        """Host arrays stay as they are."""
        return np.ascontiguousarray(array)

    def fetch(self, array: np.ndarray) -> np.ndarray:
        """Already on the host."""
        return array

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        """float32 zeros."""
        return np.zeros(shape, dtype=np.float32)

    def argmax(self, logits: np.ndarray) -> np.ndarray:
        """(B, V) -> (B, 1) int64."""
        return logits.argmax(axis=-1).astype(np.int64)[:, None]

    def repeat_batch(self, array: np.ndarray, times: int) -> np.ndarray:
        """Repeat rows along axis 0."""
        return np.repeat(array, times, axis=0)
