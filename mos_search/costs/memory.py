"""Memory of deployed models: a BERT encoder's parameter bytes and measured peak memory; the
weights a translation model's two ONNX graphs hold, by kind (the terms of its memory model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mos_search.arch import Arch, BertArch
from mos_search.models.bert import bert_parameter_bytes
from mos_search.models.transformer import count_parameters


def translation_memory_terms(arch: Arch, vocab_size: int, qkv_dim: int) -> dict[str, float]:
    """The fp32 weights (MiB) the encoder and decoder-step graphs of `arch` hold, by kind.

    `embedding_mib`: the token tables looked up (each graph holds its own, shared or not:
    V x (E_enc + E_dec)). `matmul_mib`: every multiplied matrix with its bias, the output
    projection V x E_dec included (a copy of the tied table); ONNX Runtime keeps these
    pre-packed too, so they count about twice. At most 0.1% above the exported initializers on
    cpu-small, the normalisation vectors the exporter folds away (tests/test_memory_budget.py).
    """
    embedding = vocab_size * (arch.encoder_embed_dim + arch.decoder_embed_dim)
    held = count_parameters(arch, vocab_size, qkv_dim, "none") + vocab_size * arch.decoder_embed_dim
    return {"embedding_mib": 4 * embedding / 2**20, "matmul_mib": 4 * (held - embedding) / 2**20}


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
