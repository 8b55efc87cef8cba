"""Checks of an exported model against PyTorch: the same encoder states and step logits, the same
greedy tokens (translation), the same encoder states within a tolerance (BERT), and the test
BLEU of the ONNX graphs as ONNX Runtime decodes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mos_search.constants import BOS_ID, EOS_ID
from mos_search.errors import ConfigError

PARITY_SENTENCES = 20
BERT_PARITY_TOLERANCE = 1e-3  # float32 ONNX Runtime vs PyTorch: differences are ~1e-6


def parity(model: Any, translator: Any, sources: list[list[int]]) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch on real sources: encoder and per-step logits, greedy tokens."""
    import torch

    from mos_search.data.batches import pad
    from mos_search.models.onnx import EncoderGraph
    from mos_search.oracle.beam import greedy_search
    from mos_search.oracle.decode import CachedStepper

    src = pad([np.array([*s, EOS_ID]) for s in sources]).numpy()
    with torch.no_grad():
        torch_encoder = [t.numpy() for t in EncoderGraph(model)(torch.from_numpy(src))]
    onnx_encoder = translator.stepper.encoder.run(None, {"src_tokens": src})
    encoder_diff = max(
        float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max())
        for a, b in zip(torch_encoder, onnx_encoder)
    )
    torch_ids = greedy_search(CachedStepper(model), src)
    onnx_ids = greedy_search(translator.stepper, src)
    logits_diff = _teacher_forced_logits_diff(model, translator, src, torch_ids)
    return {
        "sentences": len(sources),
        "encoder_max_abs_diff": encoder_diff,
        "decoder_logits_max_abs_diff": logits_diff,
        "greedy_tokens_identical": torch_ids == onnx_ids,
        "greedy_sentences_differing": sum(a != b for a, b in zip(torch_ids, onnx_ids)),
    }


def _teacher_forced_logits_diff(model: Any, translator: Any, src: np.ndarray, ids: list) -> float:
    """Largest logit difference over the steps of PyTorch's greedy output, fed to both."""
    from mos_search.oracle.decode import CachedStepper

    steps = min(len(h) for h in ids)
    torch_stepper, onnx_stepper = CachedStepper(model), translator.stepper
    t_state, o_state = torch_stepper.start(src), onnx_stepper.start(src)
    prefix = np.full((src.shape[0], 1), BOS_ID, dtype=np.int64)
    worst = 0.0
    for t in range(max(steps, 1)):
        t_logits, t_state = torch_stepper.step(prefix, t_state)
        o_logits, o_state = onnx_stepper.step(prefix, o_state)
        worst = max(worst, float(np.abs(t_logits - o_logits).max()))
        if t < steps:
            prefix = np.concatenate([prefix, np.array([[h[t]] for h in ids])], axis=1)
    return worst


def onnx_bleu(
    translator: Any, sources: list[list[int]], references: list[str], **decoding: Any
) -> dict[str, Any]:
    """sacreBLEU of the exported model's translations (ONNX Runtime), with its signature;
    `decoding`: beam, lenpen, no_repeat_ngram_size (`OnnxTranslator.translate_ids`)."""
    from mos_search.oracle.scoring import corpus_bleu

    ids = translator.translate_ids(sources, **decoding)
    score, signature = corpus_bleu([translator.tokenizer.decode(h) for h in ids], references)
    return {"onnxruntime": score, "signature": signature}


def bert_parity(model: Any, path: Path, tokens: Any) -> float:
    """Largest difference of the exported encoder's states (ONNX Runtime) from PyTorch's over
    the real (not padding) tokens of `tokens` (B, T); ConfigError beyond
    `BERT_PARITY_TOLERANCE`, so such a model is never written."""
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        expected = model.encoder(tokens).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    states = session.run(None, {"tokens": tokens.numpy()})[0]
    real = tokens.numpy() != 0
    diff = float(np.abs(states - expected)[real].max())
    if not diff < BERT_PARITY_TOLERANCE:
        raise ConfigError(
            f"the exported encoder differs from PyTorch by {diff:.2e} (more than "
            f"{BERT_PARITY_TOLERANCE:g}): not written as a model; please report this"
        )
    return diff
