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
    OPTIMIZER_FILE,
    STATE_FILE,
    load_tensors,
    read_state,
    resolve_checkpoint,
)
from mos_search.training.config import training_command
from mos_search.training.continuation import (
    MOMENTS_FILE,
    Segment,
    lineage_dicts,
    lineage_through,
    second_moments_from_run,
    totals,
)

CARD_FILE = "card.json"
TOKENIZER_FILE = "spm.model"
CARD_FORMAT = "mos-search-pretrained/1"
STATE_KEYS = (
    "model", "train_config", "corpus_digest", "step", "epoch", "elapsed_seconds", "tokens_seen",
    "lineage",
)  # fmt: skip


class NotBetter(Exception):
    """Raised inside the staged folder when `only_if_better` finds no improvement: the folder is
    discarded and the old one stays."""


def pack_supernet(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str | None = None,
    test_limit: int = 200,
    beam: int = 5,
    threads: int = 2,
    overwrite: bool = False,
    only_if_better: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the pretrained folder `out` from a training run or checkpoint; returns its card.

    `data` (default: the corpus the run was trained on) gives the tokenizer copied beside the
    weights and the validation and test splits the card's figures come from. Adam's second
    moments go beside the weights in bf16 (`moments.safetensors`) when the checkpoint has an
    optimizer state, so `train --init` continues with them (training/continuation.py). The card
    records the lineage (every earlier training run) and its cumulative steps, target tokens and
    wall seconds. With `only_if_better` (implies `overwrite`) the folder is replaced only when
    both members' test BLEU and validation loss improve on its current card; the returned card
    then has `replaced` False when they did not.
    """
    from mos_search.data.corpus import open_corpus

    source = resolve_checkpoint(checkpoint)
    state = read_state(source)
    if "model" not in state or state["model"].get("kind") != "supernet":
        raise CheckpointError(f"{source} holds no supernet: only a supernet is packed")
    trained = state.get("train_config", {})
    data = data or trained.get("data")
    corpus = open_corpus(data)
    weights = load_tensors(source, sha256=state.get("model_sha256"))
    on_card = Path(out) / CARD_FILE
    previous = read_json(on_card) if only_if_better and on_card.is_file() else None
    commit = current_commit()
    lineage = lineage_through(state, commit)
    try:
        with staged_output_dir(out, overwrite or only_if_better, "pretrained supernet") as folder:
            card = _write_packed(folder, source, state, weights, corpus, commit, lineage)
            card["scores"] = measure_card_scores(folder, str(data), test_limit, beam, threads, echo)
            write_json_atomic(folder / CARD_FILE, card)
            if previous is not None and not improves_on(card, previous):
                raise NotBetter
    except NotBetter:
        echo(f"kept {out}: the new weights do not improve both members on its card")
        return {**card, "replaced": False}
    return {**card, "replaced": True}


def _write_packed(
    folder: Path,
    source: Path,
    state: dict[str, Any],
    weights: dict[str, torch.Tensor],
    corpus: Any,
    commit: str | None,
    lineage: list[Segment],
) -> dict[str, Any]:
    """Weights, moments, state and tokenizer into `folder`; the card without its scores."""
    from safetensors.torch import save_file

    from mos_search.models.build import build_model

    supernet = state["model"]["supernet"]
    trained = state.get("train_config", {})
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(half, folder / MODEL_FILE)
    kept = {k: state[k] for k in STATE_KEYS if k in state}
    kept["model_sha256"] = sha256_file(folder / MODEL_FILE)
    if (source / OPTIMIZER_FILE).is_file():
        moments = second_moments_from_run(source, build_model(state["model"]))
        save_file(moments, folder / MOMENTS_FILE)
        kept["moments_sha256"] = sha256_file(folder / MOMENTS_FILE)
    write_json_atomic(folder / STATE_FILE, kept)
    shutil.copyfile(corpus.tokenizer_path, folder / TOKENIZER_FILE)
    return {
        "format": CARD_FORMAT,
        "space": supernet["space"]["name"],
        "mode": supernet.get("mode"),
        "experts": supernet.get("experts"),
        "vocab_size": supernet.get("vocab_size"),
        "command": training_command(trained),
        "train_config": trained,
        "commit": commit,
        "steps": state.get("step"),
        "epochs": state.get("epoch"),
        "wall_seconds": state.get("elapsed_seconds"),
        "tokens_seen": state.get("tokens_seen"),
        "lineage": lineage_dicts(lineage),
        "cumulative": totals(lineage),
        "moments": MOMENTS_FILE if (folder / MOMENTS_FILE).is_file() else None,
        "weights_sha256": sha256_file(folder / MODEL_FILE),
        "weights_bytes": (folder / MODEL_FILE).stat().st_size,
        "tokenizer_sha256": sha256_file(folder / TOKENIZER_FILE),
    }


def improves_on(card: dict[str, Any], previous: dict[str, Any]) -> bool:
    """Whether both members of `card` have a higher test BLEU and a lower validation loss than
    in `previous` (measured on the same number of test sentences and beam)."""
    for member in ("largest", "smallest"):
        new, old = card["scores"][member], previous.get("scores", {}).get(member)
        if old is None:
            return True
        if (new["test_sentences"], new["beam"]) != (old["test_sentences"], old["beam"]):
            raise CheckpointError(
                f"the card in the folder scored {old['test_sentences']} sentences at beam "
                f"{old['beam']}; pack with --test-limit {old['test_sentences']} --beam "
                f"{old['beam']} to compare"
            )
        if not (new["test_bleu"] > old["test_bleu"] and new["valid_loss"] < old["valid_loss"]):
            return False
    return True


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
