"""ONNX Runtime on the CPU execution provider (other providers by the profile's `providers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from devices.base import Device, DeviceError, Option
from devices.numpy_arrays import NumpyArrays


class OnnxRuntimeCPU(NumpyArrays, Device):
    """Runs ONNX graphs with ONNX Runtime; threads pinned as the profile says."""

    name = "onnxruntime-cpu"
    needs = "onnx"
    # float32 graphs as exported; the execution providers are the one option
    OPTIONS = {"providers": Option(list, item=str)}  # noqa: RUF012 - a read-only class table

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def _load_graph(self, name: str, graph: Any) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.profile.threads
        options.inter_op_num_threads = self.profile.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: dynamic cache shapes make ORT warn per step
        providers = self.profile.options.get("providers", ["CPUExecutionProvider"])
        missing = set(providers) - set(ort.get_available_providers())
        if missing:
            raise DeviceError(
                f"ONNX Runtime lacks provider(s) {sorted(missing)}; available: "
                f"{ort.get_available_providers()}"
            )
        path = Path(graph)
        if not path.is_file():
            raise DeviceError(f"ONNX file not found: {path}")
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for corrupt models
            raise DeviceError(f"ONNX Runtime cannot load {path}: {exc}") from None
        return session, [i.name for i in session.get_inputs()]

    def _run(self, loaded: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
        session, names = loaded
        if len(inputs) != len(names):
            raise DeviceError(f"graph takes {len(names)} inputs, got {len(inputs)}")
        return session.run(None, dict(zip(names, inputs)))
