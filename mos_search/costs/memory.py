"""Memory figures of a deployed BERT encoder: exact parameter bytes and measured peak memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mos_search.arch import BertArch
from mos_search.models.bert import bert_parameter_bytes


def encoder_memory(
    arch: BertArch, vocab_size: int, onnx_path: str | Path, length: int = 128, threads: int = 1
) -> dict[str, Any]:
    """Parameter MiB in fp32 and fp16 (embeddings included, no masked-LM head), and the peak
    inference MiB ONNX Runtime needs for one sequence of `length` tokens (fresh process)."""
    from devices.memory import peak_memory

    measured = peak_memory(onnx_path, length=length, threads=threads)
    return {
        "params_fp32_mib": bert_parameter_bytes(arch, vocab_size, 4) / 2**20,
        "params_fp16_mib": bert_parameter_bytes(arch, vocab_size, 2) / 2**20,
        "onnxruntime_peak_mib": measured["peak_inference_mib"],
        "sequence_length": length,
        "threads": threads,
    }
