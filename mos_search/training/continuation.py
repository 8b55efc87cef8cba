"""A supernet continued from another (`train --init`): its lineage, its schedule and Adam moments.

A continuation is a new run that starts from a supernet's weights. Three things carry over:

- **Lineage**: the training segments before this run (steps, target tokens, wall seconds and
  command of each), so a pretrained card can say how much training its weights have seen in
  all. A run's state holds the segments *before* it (`lineage`); its own figures are the state's
  `step`, `tokens_seen` and `elapsed_seconds`. Continuing from it adds its own segment.
- **Schedule**: the learning rate continues the inverse-square-root schedule from the lineage's
  total step count (not a fresh warm-up to the peak, which would undo part of the decay).
- **Adam's moments**, where the source has them: a run's checkpoint holds them in full
  (`optimizer.safetensors`); a pretrained folder keeps only the second moments in bfloat16
  (`moments.safetensors`, half the bytes of its fp16 weights: 25.5 MB for cpu-small neuron). The
  first moments then restart at zero with the step count kept, so the bias-corrected update
  grows back to full size within about 1 / (1 - beta1) = 10 steps. Without any moments the
  learning rate is re-warmed linearly over `warmup` steps, since Adam's first updates from zero
  moments have the size of the learning rate in every coordinate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mos_search.errors import CheckpointError
from mos_search.files import read_json, sha256_file
from mos_search.models.checkpoint import (
    OPTIMIZER_FILE,
    load_tensors,
    read_state,
    resolve_checkpoint,
)
from mos_search.training.config import training_command
from mos_search.training.schedule import inverse_sqrt_lr

MOMENTS_FILE = "moments.safetensors"
MOMENT_SLOTS = ("exp_avg", "exp_avg_sq")
MOMENTS_NONE, MOMENTS_SECOND, MOMENTS_FULL = "none", "second", "full"


@dataclass(frozen=True)
class Segment:
    """One training run in a supernet's history."""

    steps: int
    tokens_seen: int
    elapsed_seconds: float
    command: str | None = None
    commit: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        """Inverse of `asdict`; a CheckpointError when a figure is missing."""
        try:
            return cls(
                int(data["steps"]),
                int(data["tokens_seen"]),
                float(data["elapsed_seconds"]),
                data.get("command"),
                data.get("commit"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"lineage segment {data!r} lacks {exc}") from None


def source_commit(source: str | Path) -> str | None:
    """The commit a pretrained folder's card names (None for a run checkpoint or no card)."""
    card = resolve_checkpoint(source) / "card.json"
    return read_json(card).get("commit") if card.is_file() else None


def lineage_of(state: dict[str, Any]) -> list[Segment]:
    """The segments before the run whose checkpoint state is `state`."""
    return [Segment.from_dict(s) for s in state.get("lineage", [])]


def own_segment(state: dict[str, Any], commit: str | None = None) -> Segment:
    """The run of checkpoint state `state` as one segment."""
    config = state.get("train_config")
    return Segment(
        int(state.get("step", 0)),
        int(state.get("tokens_seen", 0)),
        float(state.get("elapsed_seconds", 0.0)),
        training_command(config) if config else None,
        commit or state.get("commit"),
    )


def lineage_through(state: dict[str, Any], commit: str | None = None) -> list[Segment]:
    """Every segment up to and including the run of `state`: what a run continued from it holds."""
    return [*lineage_of(state), own_segment(state, commit)]


def totals(segments: list[Segment]) -> dict[str, float | int]:
    """Cumulative steps, target tokens and wall seconds of `segments`."""
    return {
        "segments": len(segments),
        "steps": sum(s.steps for s in segments),
        "tokens_seen": sum(s.tokens_seen for s in segments),
        "wall_seconds": round(sum(s.elapsed_seconds for s in segments), 1),
    }


def continuation_line(lineage: list[Segment], moments: str, resumed: bool = False) -> str:
    """What a continued run prints at its start (`resumed`: this run's own optimizer state was
    restored, whatever the moments it started from)."""
    before = totals(lineage)
    carried = (
        f"Adam's state restored from this run's checkpoint (it started with moments: {moments})"
        if resumed
        else f"Adam moments carried over: {moments}"
    )
    return (
        f"continues {before['steps']:,} earlier steps ({before['tokens_seen']:,} target tokens, "
        f"{before['segments']} run(s)); {carried}"
    )


def lineage_dicts(segments: list[Segment]) -> list[dict[str, Any]]:
    """JSON-ready form of `segments`."""
    return [asdict(s) for s in segments]


@dataclass(frozen=True)
class ContinuedSchedule:
    """The learning rate of a run that continues `prior_steps` earlier steps.

    lr(step) = inverse_sqrt_lr(prior_steps + step, peak, warmup), times min(1, step / warmup)
    when the run started without Adam moments (`moments` "none") and has earlier steps. A run
    with no lineage gets the plain schedule.
    """

    peak: float
    warmup: int
    prior_steps: int = 0
    moments: str = MOMENTS_NONE

    def lr(self, step: int) -> float:
        """Learning rate of the run's `step` (1-based)."""
        lr = inverse_sqrt_lr(self.prior_steps + step, self.peak, self.warmup)
        if self.prior_steps and self.moments == MOMENTS_NONE and self.warmup > 0:
            lr *= min(1.0, max(step, 1) / self.warmup)
        return lr


def run_moments(checkpoint: Path, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Adam's state in a run checkpoint's optimizer file, by parameter name: the slots
    (`exp_avg`, `exp_avg_sq`, `step`) of each parameter that has any. The file is indexed by
    parameter position, the model's parameter order (models.checkpoint.optimizer_tensors)."""
    tensors = load_tensors(checkpoint, OPTIMIZER_FILE)
    by_name = {}
    for index, (name, _) in enumerate(model.named_parameters()):
        slots = {
            slot: tensors[f"state.{index}.{slot}"]
            for slot in (*MOMENT_SLOTS, "step")
            if f"state.{index}.{slot}" in tensors
        }
        if slots:
            by_name[name] = slots
    return by_name


def second_moments_from_run(checkpoint: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The second moments of a run checkpoint, by parameter name, in bf16 (what a pretrained
    folder keeps), plus the step count as `__step__` (float32, one element)."""
    by_name = {n: s for n, s in run_moments(checkpoint, model).items() if "exp_avg_sq" in s}
    out = {name: s["exp_avg_sq"].to(torch.bfloat16).contiguous() for name, s in by_name.items()}
    if out:
        step = max(float(s["step"]) for s in by_name.values())
        out["__step__"] = torch.tensor([step], dtype=torch.float32)
    return out


def restore_moments(source: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """Put Adam state from `source` into a fresh `optimizer` of `model`; returns which moments
    came (`full`, `second` or `none`).

    A run checkpoint (with `optimizer.safetensors`) gives both moments and the step count; a
    pretrained folder with `moments.safetensors` gives the second moments and the step count,
    the first moments starting at zero. Shapes must match the model's parameters.
    """
    folder = resolve_checkpoint(source)
    params = dict(model.named_parameters())
    if (folder / OPTIMIZER_FILE).is_file():
        found, by_name = MOMENTS_FULL, run_moments(folder, model)
    elif (folder / MOMENTS_FILE).is_file():
        recorded = read_state(folder).get("moments_sha256")
        tensors = load_tensors(folder, MOMENTS_FILE, sha256=recorded)
        step = tensors.pop("__step__", torch.tensor([0.0]))
        found = MOMENTS_SECOND
        by_name = {name: {"exp_avg_sq": value, "step": step[0]} for name, value in tensors.items()}
    else:
        return MOMENTS_NONE
    for name, slots in by_name.items():
        param = params.get(name)
        if param is None or slots.get("exp_avg_sq", param).shape != param.shape:
            raise CheckpointError(f"{folder}: Adam moments of {name} do not fit the model")
        exp_avg_sq = slots["exp_avg_sq"].to(param.device, torch.float32)
        exp_avg = slots.get("exp_avg")
        optimizer.state[param] = {
            "step": torch.tensor(float(slots["step"])),
            "exp_avg": (
                exp_avg.to(param.device, torch.float32)
                if exp_avg is not None
                else torch.zeros_like(param, memory_format=torch.preserve_format)
            ),
            "exp_avg_sq": exp_avg_sq,
        }
    return found


def check_same_tokenizer(
    init_from: str, init_state: dict[str, Any], task: Any, data: str | None
) -> None:
    """A CheckpointError unless the checkpoint `init_from` was trained with the tokenizer of the
    corpus `data`: the same corpus (its digest), or an `spm.model` shipped beside its weights (a
    pretrained supernet) with the same bytes as the corpus's."""
    if init_state.get("corpus_digest") == task.digest:
        return
    shipped = resolve_checkpoint(init_from) / "spm.model"
    if shipped.is_file() and sha256_file(shipped) == sha256_file(task.tokenizer_path):
        return
    raise CheckpointError(
        f"{init_from} was trained with another tokenizer than {data}'s ({task.tokenizer_path}): "
        "its token ids would mean other words; build the corpus with its spm.model"
    )


def inherit_sub_network(model: nn.Module, initial: Any, config: Any, vocab_size: int) -> None:
    """Fine-tuning: copy into `model` the weights `initial` (a `build.ScoredModel` loaded from
    `config.init_from`) gives `config.arch`; CheckpointError when the vocabularies differ."""
    if initial.vocab_size != vocab_size:
        raise CheckpointError(
            f"{config.init_from} has a {initial.vocab_size}-token vocabulary; "
            f"{config.data} has {vocab_size}"
        )
    inherited = initial.sub_network(initial.space.arch_from_dict(config.arch))
    model.load_state_dict(inherited.state_dict())  # copies onto the device
