"""PyTorch on a CUDA GPU: CUDA-event timing, optional fp16/bf16 and CUDA graphs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devices.base import Option
from devices.torch_cpu import TorchCPU

DTYPES = ("float32", "float16", "bfloat16")


class CudaDevice(TorchCPU):
    """The bundle's PyTorch modules on `cuda:N` (profile option `index`)."""

    name = "cuda"
    needs = "torch"
    OPTIONS = {  # noqa: RUF012 - a read-only class table
        "dtype": Option(str, DTYPES),
        "index": Option(int),
        "cuda_graphs": Option(bool),
    }

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = TorchCPU.unavailable_reason()
        if reason:
            return reason
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device visible to PyTorch (CPU-only build or no GPU)"
        return None

    def __init__(self, profile: Any) -> None:
        import torch

        super().__init__(profile)
        self.check_available()
        dtype = profile.options.get("dtype", "float32")  # one of DTYPES: checked in super()
        self.torch_device = torch.device("cuda", int(profile.options.get("index", 0)))
        self.float_dtype = getattr(torch, dtype)
        self.cuda_graphs = bool(profile.options.get("cuda_graphs", False))
        self._graph_cache: dict[int, Any] = {}

    def _load_graph(self, name: str, graph: Any) -> Any:
        import torch

        torch.cuda.reset_peak_memory_stats(self.torch_device)
        return graph.eval().to(self.torch_device, self.float_dtype)

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize(self.torch_device)

    def time(self, work: Callable[[], None]) -> float:
        """CUDA-event time of `work` (replayed as one CUDA graph when `cuda_graphs` is on)."""
        import torch

        run = self._captured(work) if self.cuda_graphs else work
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.synchronize()
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0

    def _captured(self, work: Callable[[], None]) -> Callable[[], None]:
        import torch

        key = id(work)
        if key not in self._graph_cache:
            stream = torch.cuda.Stream(self.torch_device)
            stream.wait_stream(torch.cuda.current_stream(self.torch_device))
            with torch.cuda.stream(stream):
                work()  # warm-up on a side stream, as CUDA graph capture requires
            torch.cuda.current_stream(self.torch_device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                work()
            self._graph_cache[key] = graph
        return self._graph_cache[key].replay

    def peak_memory_bytes(self) -> int | None:
        import torch

        return int(torch.cuda.max_memory_allocated(self.torch_device))

    def close(self) -> None:
        super().close()
        self._graph_cache = {}
