"""Translate with an exported model folder using ONNX Runtime, SentencePiece and numpy only.

Nothing here imports torch: a deployment environment needs `onnxruntime`, `sentencepiece` and
`numpy`. The decoding algorithm is the one the PyTorch oracle uses (`mos_search/oracle/beam.py`);
only the stepper differs: it runs `encoder.onnx` once and `decoder_step.onnx` once per token,
carrying the caches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mos_search.constants import EOS_ID, PAD_ID
from mos_search.errors import ConfigError
from mos_search.oracle.beam import beam_search, greedy_search

MODEL_FILES = ("encoder.onnx", "decoder_step.onnx", "spm.model")


class OnnxStepper:
    """A stepper over the two exported graphs (their contract: `mos_search/models/onnx.py`)."""

    def __init__(self, encoder: Any, decoder: Any) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.past = [i for i in decoder.get_inputs() if i.name.startswith("past_")]
        self.layers = len(self.past) // 2

    def start(self, src: np.ndarray) -> dict[str, np.ndarray]:
        """Encode once: the key mask and every layer's cross-attention keys/values; no past."""
        names = [o.name for o in self.encoder.get_outputs()]
        outputs = self.encoder.run(None, {"src_tokens": src.astype(np.int64)})
        state = dict(zip(names, outputs))
        for cache in self.past:  # (B, H, 0, Dh): heads and head size are fixed in the graph
            heads, head_dim = cache.shape[1], cache.shape[3]
            state[cache.name] = np.zeros((src.shape[0], heads, 0, head_dim), dtype=np.float32)
        return state

    def step(self, prefix: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
        """Feed the newest token; the returned state holds the grown self-attention caches."""
        feed = {"tokens": prefix[:, -1:].astype(np.int64)}
        feed.update(
            (i.name, state[i.name]) for i in self.decoder.get_inputs() if i.name != "tokens"
        )
        names = [o.name for o in self.decoder.get_outputs()]
        outputs = dict(zip(names, self.decoder.run(None, feed)))
        grown = dict(state)
        for name, value in outputs.items():
            if name.startswith("present_"):
                grown[name.replace("present_", "past_", 1)] = value
        return outputs["logits"], grown

    def reorder(self, state: dict[str, np.ndarray], order: np.ndarray) -> dict[str, np.ndarray]:
        """Rows `order` of the self-attention caches. Beam rows never leave their sentence, and
        a sentence's rows share its key mask and cross-attention caches: those stay."""
        return {
            name: value[order] if name.startswith("past_") else value
            for name, value in state.items()
        }


class OnnxTranslator:
    """An exported model folder: tokenizer + encoder + decoder step, run with ONNX Runtime."""

    def __init__(self, model_dir: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        from mos_search.data.tokenizer import Tokenizer

        model_dir = Path(model_dir)
        missing = [n for n in MODEL_FILES if not (model_dir / n).is_file()]
        if missing:
            raise ConfigError(f"{model_dir} is not an exported model: missing {', '.join(missing)}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        sessions = []
        for name in ("encoder.onnx", "decoder_step.onnx"):
            try:
                sessions.append(
                    ort.InferenceSession(
                        str(model_dir / name), options, providers=["CPUExecutionProvider"]
                    )
                )
            except Exception as exc:  # ORT raises its own types for corrupt or foreign files
                raise ConfigError(f"{model_dir / name} cannot be loaded: {exc}") from None
        self.stepper = OnnxStepper(*sessions)
        self.tokenizer = Tokenizer(model_dir / "spm.model")

    def translate_ids(
        self, sources: list[list[int]], beam: int = 5, lenpen: float = 1.0, max_tokens: int = 2048
    ) -> list[list[int]]:
        """Hypothesis ids for source ids (EOS appended here), batched by similar length."""
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        out: list[list[int]] = [[] for _ in sources]
        budget = max(max_tokens // max(beam, 1), 1)
        for batch in _length_batches(order, sources, budget):
            rows = [[*sources[i], EOS_ID] for i in batch]
            src = np.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=np.int64)
            for r, row in enumerate(rows):
                src[r, : len(row)] = row
            if beam == 1:
                hyps = greedy_search(self.stepper, src)
            else:
                hyps = beam_search(self.stepper, src, beam, lenpen)
            for i, hyp in zip(batch, hyps):
                out[i] = hyp
        return out

    def translate(self, sentences: list[str], beam: int = 5, lenpen: float = 1.0) -> list[str]:
        """Detokenised translations of `sentences`, in order; a blank line stays blank."""
        filled = [i for i, s in enumerate(sentences) if s.strip()]
        ids = self.translate_ids(
            self.tokenizer.encode_batch([sentences[i] for i in filled]), beam, lenpen
        )
        out = [""] * len(sentences)
        for i, hyp in zip(filled, ids):
            out[i] = self.tokenizer.decode(hyp)
        return out


def _length_batches(order: list[int], sources: list[list[int]], budget: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for i in order:
        longest = max([len(sources[j]) + 1 for j in batch] + [len(sources[i]) + 1])
        if batch and longest * (len(batch) + 1) > budget:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def read_lines(stream: Iterable[str]) -> list[str]:
    """Input lines without their newline (blank ones kept, so output lines match input lines)."""
    return [line.rstrip("\n") for line in stream]
