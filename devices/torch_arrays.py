"""Array primitives for PyTorch backends on any torch device."""

from __future__ import annotations

from typing import Any

import numpy as np


class TorchArrays:
    """`put`/`fetch`/`zeros`/`argmax`/`repeat_batch` on torch tensors on `self.torch_device`."""

    torch_device: Any = "cpu"
    float_dtype: Any = None

    def put(self, array: np.ndarray) -> Any:
        """A host array as a tensor on the device (floats in the device's dtype)."""
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.torch_device)
        if tensor.is_floating_point() and self.float_dtype is not None:
            tensor = tensor.to(self.float_dtype)
        return tensor

    def fetch(self, array: Any) -> np.ndarray:
        """A tensor on the host as float32/int64 numpy."""
        tensor = array.detach().cpu()
        return (tensor.float() if tensor.is_floating_point() else tensor).numpy()

    def zeros(self, shape: tuple[int, ...]) -> Any:
        """Zeros in the device's float dtype."""
        import torch

        return torch.zeros(shape, device=self.torch_device, dtype=self.float_dtype)

    def argmax(self, logits: Any) -> Any:
        """(B, V) -> (B, 1) int64."""
        return logits.argmax(-1, keepdim=True)

    def repeat_batch(self, array: Any, times: int) -> Any:
        """Repeat rows along dim 0."""
        return array.repeat_interleave(times, dim=0)
