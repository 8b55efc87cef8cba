"""The bundle's PyTorch modules in eager mode on the CPU, float32."""

from __future__ import annotations

from typing import Any

from devices.base import Device
from devices.torch_arrays import TorchArrays


class TorchCPU(TorchArrays, Device):
    """Eager PyTorch, `threads` intra-op threads, inference mode, float32."""

    name = "torch-cpu"
    needs = "torch"
    OPTIONS = {}  # noqa: RUF012 - it reads none: always float32 (a dtype here is an error)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed"
        return None

    def _load_graph(self, name: str, graph: Any) -> Any:
        import torch

        torch.set_num_threads(self.profile.threads)
        return graph.eval().float()

    def _run(self, loaded: Any, inputs: list[Any]) -> list[Any]:
        import torch

        with torch.inference_mode():
            return list(loaded(*inputs))
