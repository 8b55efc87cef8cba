"""A pretrained supernet to ship: fp16 weights, its tokenizer and a card of how it was made.

A pretrained folder is a checkpoint directory (`state.json` + `model.safetensors`, so every
command that takes `--ckpt` reads it) without optimizer state, plus:

    spm.model    the tokenizer its token ids belong to (a corpus must be built with it:
                 `mos-search data bible --tokenizer PRETRAINED/spm.model`)
    card.json    the training command, commit, steps, wall time and tokens; the validation loss
                 and test BLEU (sacreBLEU, beam 5) of the space's largest and smallest members,
                 measured on these fp16 weights; the weights' sha256 and size

Weights are stored in float16 (half the bytes; loaded into float32 models, where the rounding
moves a validation loss by about 1e-4 nats). `state.json` records their sha256, checked on every
load like any checkpoint's.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mos_search.errors import CheckpointError
from mos_search.files import read_json, sha256_file, staged_output_dir, write_json_atomic
from mos_search.models.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    load_tensors,
    read_state,
    resolve_checkpoint,
)

CARD_FILE = "card.json"
TOKENIZER_FILE = "spm.model"
CARD_FORMAT = "mos-search-pretrained/1"
STATE_KEYS = (
    "model", "train_config", "corpus_digest", "step", "epoch", "elapsed_seconds", "tokens_seen",
)  # fmt: skip
# TrainConfig fields that `mos-search train` takes as options (tests/test_pretrained.py checks
# them against the command), in the order the command line is written
TRAIN_FLAGS = (
    "data", "out", "space", "mode", "experts", "mos_attention", "sampling", "random_archs",
    "max_tokens", "lr", "warmup", "dropout", "attention_dropout", "router_dropout",
    "scale_dropout", "max_steps", "minutes",
    "save_every", "log_every", "valid_every", "seed", "threads", "device", "precision",
)  # fmt: skip


def pack_supernet(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str | None = None,
    test_limit: int = 200,
    beam: int = 5,
    threads: int = 2,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the pretrained folder `out` from a training run or checkpoint; returns its card.

    `data` (default: the corpus the run was trained on) gives the tokenizer copied beside the
    weights and the validation and test splits the card's figures come from.
    """
    from safetensors.torch import save_file

    from mos_search.data.corpus import open_corpus

    source = resolve_checkpoint(checkpoint)
    state = read_state(source)
    if "model" not in state or state["model"].get("kind") != "supernet":
        raise CheckpointError(f"{source} holds no supernet: only a supernet is packed")
    supernet = state["model"]["supernet"]
    trained = state.get("train_config", {})
    data = data or trained.get("data")
    corpus = open_corpus(data)
    weights = load_tensors(source, sha256=state.get("model_sha256"))
    with staged_output_dir(out, overwrite, "pretrained supernet") as folder:
        half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()}
        save_file(half, folder / MODEL_FILE)
        kept = {k: state[k] for k in STATE_KEYS if k in state}
        kept["model_sha256"] = sha256_file(folder / MODEL_FILE)
        write_json_atomic(folder / STATE_FILE, kept)
        shutil.copyfile(corpus.tokenizer_path, folder / TOKENIZER_FILE)
        card = {
            "format": CARD_FORMAT,
            "space": supernet["space"]["name"],
            "mode": supernet.get("mode"),
            "experts": supernet.get("experts"),
            "vocab_size": supernet.get("vocab_size"),
            "command": training_command(trained),
            "train_config": trained,
            "commit": current_commit(),
            "steps": state.get("step"),
            "epochs": state.get("epoch"),
            "wall_seconds": state.get("elapsed_seconds"),
            "tokens_seen": state.get("tokens_seen"),
            "weights_sha256": sha256_file(folder / MODEL_FILE),
            "weights_bytes": (folder / MODEL_FILE).stat().st_size,
            "tokenizer_sha256": sha256_file(folder / TOKENIZER_FILE),
            "scores": measure_card_scores(folder, str(data), test_limit, beam, threads, echo),
        }
        write_json_atomic(folder / CARD_FILE, card)
    return card


def measure_card_scores(
    folder: Path, data: str, test_limit: int, beam: int, threads: int, echo: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Validation loss and test BLEU of the largest and smallest members, from `folder`'s fp16
    weights (no score cache is written into the folder)."""
    from mos_search.oracle.scoring import Oracle

    valid = Oracle(folder, data, "valid", None, cache_path=None, threads=threads)
    test = Oracle(folder, data, "test", test_limit, cache_path=None, threads=threads)
    space = valid.space
    scores = {}
    for name, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        bleu = test.bleu(arch, beam)
        scores[name] = {
            "arch": arch.to_dict(),
            "valid_loss": valid.loss(arch),
            "test_bleu": bleu.score,
            "test_sentences": len(test.data),
            "beam": beam,
            "signature": bleu.signature,
        }
        echo(
            f"{name}: validation loss {scores[name]['valid_loss']:.3f}, test BLEU "
            f"{bleu.score:.2f} ({len(test.data)} sentences, beam {beam})"
        )
    return scores


def training_command(trained: dict[str, Any]) -> str:
    """The `mos-search train` command line of a run's training config: every setting that has a
    command-line option (`TRAIN_FLAGS`; the card's `train_config` holds them all)."""
    parts = ["mos-search train"]
    for key in TRAIN_FLAGS:
        value = trained.get(key)
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def current_commit() -> str | None:
    """The git commit of the code that packs (None outside a git checkout)."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return found.stdout.strip() or None


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a pretrained folder, its weights checked against the card's sha256 (a
    CheckpointError when they differ or the folder is not a pretrained one)."""
    folder = Path(folder)
    if not (folder / CARD_FILE).is_file() or not (folder / TOKENIZER_FILE).is_file():
        raise CheckpointError(
            f"{folder} is not a pretrained supernet (expected {CARD_FILE} and {TOKENIZER_FILE})"
        )
    card = read_json(folder / CARD_FILE)
    found = sha256_file(folder / MODEL_FILE)
    if found != card.get("weights_sha256"):
        raise CheckpointError(
            f"{folder / MODEL_FILE}: weights changed since they were packed "
            f"(sha256 {found[:12]}... != card {str(card.get('weights_sha256'))[:12]}...)"
        )
    return card
