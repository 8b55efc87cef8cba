"""Translate with an exported model folder using ONNX Runtime, SentencePiece and numpy only.

Nothing here imports torch: a deployment environment needs `onnxruntime`, `sentencepiece` and
`numpy`. The decoding algorithm is the one the PyTorch oracle uses (`mos_search/oracle/beam.py`);
only the stepper differs: it runs `encoder.onnx` once and `decoder_step.onnx` once per token,
carrying the caches.

Line contract (`read_sentences` + `translate`): exactly one output line per input line, in order.
Input lines end at "\\n" only (a form feed, U+2028 or U+0085 inside a line ends nothing), one "\\r"
before it is dropped, a final line without "\\n" counts, a leading byte-order mark is dropped; an
input line with no subword after normalisation gives an empty output line; an output line never
holds a line-ending character. Input that is not UTF-8 is refused whole, before any output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mos_search.constants import EOS_ID, PAD_ID
from mos_search.errors import ConfigError
from mos_search.files import decode_utf8, read_text, split_lines
from mos_search.oracle.beam import beam_search, greedy_search

MODEL_FILES = ("encoder.onnx", "decoder_step.onnx", "spm.model")
STDIN = "<stdin>"  # how errors name standard input
_LINE_ENDS = {ord(c): " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}  # see `one_line`


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
        self,
        sources: list[list[int]],
        beam: int = 5,
        lenpen: float = 1.0,
        max_tokens: int = 2048,
        no_repeat_ngram_size: int = 0,
    ) -> list[list[int]]:
        """Hypothesis ids for source ids (EOS appended here), batched by similar length
        (decoding options: `mos_search/oracle/beam.py`)."""
        blocked = {"no_repeat_ngram_size": no_repeat_ngram_size}
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        out: list[list[int]] = [[] for _ in sources]
        budget = max(max_tokens // max(beam, 1), 1)
        for batch in _length_batches(order, sources, budget):
            rows = [[*sources[i], EOS_ID] for i in batch]
            src = np.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=np.int64)
            for r, row in enumerate(rows):
                src[r, : len(row)] = row
            if beam == 1:
                hyps = greedy_search(self.stepper, src, **blocked)
            else:
                hyps = beam_search(self.stepper, src, beam, lenpen, **blocked)
            for i, hyp in zip(batch, hyps):
                out[i] = hyp
        return out

    def translate(
        self,
        sentences: list[str],
        beam: int = 5,
        lenpen: float = 1.0,
        no_repeat_ngram_size: int = 0,
    ) -> list[str]:
        """One translation per sentence, in order, each a single line (see `one_line`); a
        sentence with no subword left after the tokenizer's normalisation (empty, blank, a
        zero-width space alone) is not decoded: its translation is empty."""
        ids = self.tokenizer.encode_batch(sentences) if sentences else []
        filled = [i for i, row in enumerate(ids) if row]
        hyps = self.translate_ids(
            [ids[i] for i in filled], beam, lenpen, no_repeat_ngram_size=no_repeat_ngram_size
        )
        out = [""] * len(sentences)
        for i, hyp in zip(filled, hyps):
            out[i] = one_line(self.tokenizer.decode(hyp))
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


def read_sentences(path: str | Path | None, stdin: BinaryIO) -> list[str]:
    """The sentences to translate, one per line of `path` (or of the bytes of `stdin`, called
    `<stdin>` in errors): UTF-8 with a leading byte-order mark dropped, split on "\\n" only
    (`mos_search/data/parallel.py`); bytes that are not UTF-8 are a MosSearchError naming the
    input, line and column, raised before anything is translated."""
    text = decode_utf8(stdin.read(), STDIN) if path is None else read_text(path)
    return split_lines(text)


def one_line(text: str) -> str:
    """`text` with every character that ends a line for `str.splitlines` (\\n, \\r, \\v, \\f,
    \\x1c-\\x1e, \\x85, U+2028, U+2029) turned into a space, so one translation is one output
    line whoever splits the output."""
    return text.translate(_LINE_ENDS)
