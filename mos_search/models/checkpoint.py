"""Checkpoints: safetensors for tensors, JSON for the rest; atomic writes, no pickle on load.

A run folder holds `checkpoints/step_NNNNNNN/` directories, each complete on its own
(`model.safetensors`, `optimizer.safetensors`, `state.json`), and `checkpoints/latest`, a one-line
file naming the newest. A checkpoint is written under a temporary name and renamed into place,
then `latest` is replaced: a crash at any moment leaves the previous checkpoint intact.
`state.json` records the sha256 of `model.safetensors`; loading the weights checks it, so a
weights file replaced in place is refused instead of scored under the old one's identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file
from torch import nn

from mos_search.errors import CheckpointError
from mos_search.files import read_text, sha256_file, write_json_atomic, write_text_atomic

MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, LATEST = (
    "model.safetensors",
    "optimizer.safetensors",
    "state.json",
    "latest",
)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state into flat tensors and a JSON-ready remainder."""
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"state.{index}.{slot}"] = torch.as_tensor(value).cpu().contiguous()
    return tensors, {"param_groups": state["param_groups"]}


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of `optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, keep the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, tmp / MODEL_FILE)
    state = {**state, "step": step, "model_sha256": sha256_file(tmp / MODEL_FILE)}
    if optimizer is not None:
        tensors, meta = optimizer_tensors(optimizer)
        save_file(tensors, tmp / OPTIMIZER_FILE)
        state["optimizer"] = meta
    write_json_atomic(tmp / STATE_FILE, state)
    for written in tmp.iterdir():  # on disk before the rename makes them the checkpoint
        with written.open("rb") as f:
            os.fsync(f.fileno())
    final = root / name
    if final.exists():  # re-saving a step: move the old copy aside, never leave a gap
        aside = root / f".{name}.old"
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        os.replace(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, final)
    write_text_atomic(root / LATEST, name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from itself or from a run folder (its latest checkpoint)."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    latest = path / "checkpoints" / LATEST
    if latest.is_file():
        found = path / "checkpoints" / read_text(latest).strip()
        if (found / STATE_FILE).is_file():
            return found
    raise CheckpointError(
        f"no checkpoint at {path} (expected a run folder with "
        f"checkpoints/{LATEST} or a folder holding {STATE_FILE})"
    )


def read_state(checkpoint: str | Path) -> dict[str, Any]:
    """The JSON state of a checkpoint (run folder or checkpoint directory)."""
    path = resolve_checkpoint(checkpoint)
    try:
        return json.loads(read_text(path / STATE_FILE))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path / STATE_FILE} is not valid JSON: {exc}") from exc


def load_tensors(
    checkpoint: str | Path, file: str = MODEL_FILE, sha256: str | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (safetensors: nothing is unpickled). With `sha256` (the
    digest recorded when it was saved) the bytes must still have it: they are read once, hashed
    and parsed, so what is checked is what is loaded."""
    path = resolve_checkpoint(checkpoint) / file
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    if sha256 is None:
        data: bytes | None = None
    else:
        data = path.read_bytes()
        check_digest(path, hashlib.sha256(data).hexdigest(), sha256)
    try:
        return load_file(path) if data is None else load_bytes(data)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def check_digest(path: Path, found: str, recorded: str) -> None:
    """A CheckpointError naming `path` when its content digest is not the recorded one."""
    if found != recorded:
        raise CheckpointError(
            f"{path}: weights changed since they were saved (sha256 {found[:16]} != recorded "
            f"{str(recorded)[:16]}); restore the file, or retrain or re-save the checkpoint"
        )


def load_weights(model: nn.Module, checkpoint: str | Path) -> str | None:
    """Load model weights, checked against the digest recorded in the checkpoint's state (a
    file replaced in place is refused), with a clear error when they do not fit the model.
    Returns that content digest (None for a checkpoint that records none)."""
    recorded = read_state(checkpoint).get("model_sha256")
    try:
        model.load_state_dict(load_tensors(checkpoint, sha256=recorded), strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"weights in {checkpoint} do not fit the model: {first}") from None
    return recorded
