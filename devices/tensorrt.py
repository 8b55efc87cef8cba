"""TensorRT engines built from the bundle's ONNX graphs, run on a CUDA GPU.

Written against TensorRT 10's documented Python API (name-based I/O tensors,
`build_serialized_network`, `execute_async_v3`); CUDA memory and streams come from PyTorch.
Untested here: TensorRT cannot be installed on this project's machines (see README).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from devices.base import DeviceError, Option
from devices.cuda import CudaDevice

# Dynamic axes of the graph contract and their (min, opt, max) ranges, from the profile.
_AXIS_RANGES = {
    "batch": lambda p: (1, p.beam, max(p.beam, p.bert_batch)),
    "source": lambda p: (1, p.source_len, max(4 * p.source_len, p.bert_seq_len)),
    "past": lambda p: (0, p.decoder_steps // 2, p.decoder_steps),
    "memory": lambda p: (1, p.source_len, 3 * 4 * p.source_len),
}


class TensorRTDevice(CudaDevice):
    """One TensorRT engine per graph, cached on disk by (ONNX digest, options)."""

    name = "tensorrt"
    needs = "onnx"
    # float32 I/O (fp16 is inside the engine), so no `dtype`
    OPTIONS = {  # noqa: RUF012 - a read-only class table
        "fp16": Option(bool),
        "engine_cache": Option(str),
        "index": Option(int),
        "cuda_graphs": Option(bool),
    }

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return (
                "TensorRT is not installed (pip install 'mos-search[tensorrt]' on a CUDA machine)"
            )
        return super().unavailable_reason()

    def __init__(self, profile: Any) -> None:
        import torch

        super().__init__(profile)
        self.float_dtype = torch.float32  # engines take float32 I/O; fp16 is inside the engine
        self.fp16 = bool(profile.options.get("fp16", False))
        cache = profile.options.get("engine_cache", "~/.cache/mos-search/tensorrt")
        self.engine_cache = Path(cache).expanduser()

    def _load_graph(self, name: str, graph: Any) -> Any:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        onnx_bytes = Path(graph).read_bytes()
        key = hashlib.sha256(onnx_bytes + repr((self.fp16, self.profile.digest())).encode())
        plan_path = self.engine_cache / f"{key.hexdigest()[:24]}.plan"
        if plan_path.is_file():
            plan = plan_path.read_bytes()
        else:
            plan = self._build(trt, logger, onnx_bytes, graph)
            self.engine_cache.mkdir(parents=True, exist_ok=True)
            tmp = plan_path.with_suffix(".tmp")
            tmp.write_bytes(plan)
            tmp.replace(plan_path)
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if engine is None:
            raise DeviceError(f"TensorRT could not deserialize the engine for {graph}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        return engine, engine.create_execution_context(), inputs, outputs

    def _build(self, trt: Any, logger: Any, onnx_bytes: bytes, source: Any) -> bytes:
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise DeviceError(f"TensorRT cannot parse {source}: {errors}")
        config = builder.create_builder_config()
        if self.fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shapes = self._shape_range(tensor.name, list(tensor.shape))
            profile.set_shape(tensor.name, *shapes)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise DeviceError(f"TensorRT failed to build an engine for {source}")
        return bytes(plan)

    def _shape_range(self, name: str, dims: list[int]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes of an input: static dims kept, dynamic ones from the profile."""
        axis_of = {0: "batch"}
        if name in ("src_tokens", "input_ids"):
            axis_of[1] = "source"
        elif name == "key_mask":
            axis_of[3] = "source"
        elif name.startswith("past_"):
            axis_of[2] = "past"
        elif name.startswith("cross_"):
            axis_of[2] = "memory"
        ranges = []
        for which in range(3):
            ranges.append(
                tuple(
                    dim if dim >= 0 else _AXIS_RANGES[axis_of.get(i, "batch")](self.profile)[which]
                    for i, dim in enumerate(dims)
                )
            )
        return tuple(ranges)

    def _run(self, loaded: Any, inputs: list[Any]) -> list[Any]:
        import torch

        engine, context, input_names, output_names = loaded
        if len(inputs) != len(input_names):
            raise DeviceError(f"engine takes {len(input_names)} inputs, got {len(inputs)}")
        for name, tensor in zip(input_names, inputs):
            tensor = tensor.contiguous()
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in output_names:
            shape = tuple(context.get_tensor_shape(name))
            dtype = _torch_dtype(engine.get_tensor_dtype(name))
            out = torch.empty(shape, dtype=dtype, device=self.torch_device)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.torch_device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise DeviceError("TensorRT execution failed")
        return outputs


def _torch_dtype(trt_dtype: Any) -> Any:
    import tensorrt as trt
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int64: torch.int64,
        trt.int32: torch.int32,
        trt.bool: torch.bool,
    }
    return table[trt_dtype]
