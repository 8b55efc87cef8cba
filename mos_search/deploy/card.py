"""The model card's parts that name things: the checkpoint (so the card travels), the library
versions, and the one line a user reads after an export."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any


def card_checkpoint(checkpoint: str | Path, model_dir: str | Path) -> str:
    """The checkpoint as a card names it, so that the card travels: its path relative to the
    model folder when the two share a folder below the filesystem's root, else only its run's
    name and its own (`RUN/checkpoints/step_N`); `checkpoint_sha256` identifies the weights."""
    ckpt, model = Path(checkpoint).resolve(), Path(model_dir).resolve()
    if Path(os.path.commonpath([ckpt, model])) != Path(ckpt.anchor):
        return Path(os.path.relpath(ckpt, model)).as_posix()
    return "/".join(ckpt.parts[-3:] if ckpt.parent.name == "checkpoints" else ckpt.parts[-1:])


def versions() -> dict[str, str]:
    """Installed versions of the packages an exported model was made and checked with."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("mos-search", "torch", "onnx", "onnxruntime", "sentencepiece", "sacrebleu"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def card_summary(card: dict[str, Any], out: str | Path) -> str:
    """One line on an exported model: its test score and its measured cost."""
    if card["task"] == "bert":
        memory = card["memory"]
        return (
            f"wrote {out}: test perplexity {card['perplexity']['pytorch']:.2f}, parameters "
            f"{memory['params_fp32_mib']:.1f} MiB fp32, ONNX Runtime peak "
            f"{memory['onnxruntime_peak_mib']:.1f} MiB at length {memory['sequence_length']}"
        )
    bleu = card["bleu"]
    return (
        f"wrote {out}: test BLEU {bleu['onnxruntime']:.2f} (PyTorch {bleu['pytorch']:.2f}), "
        + ", ".join(f"{d} {v['latency_ms']:.1f} ms" for d, v in card["latency"].items())
    )
