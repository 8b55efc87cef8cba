"""Build the model a checkpoint describes (supernet or one standalone architecture) and load it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mos_search.arch import ArchBase
from mos_search.errors import ArchError, CheckpointError
from mos_search.models.checkpoint import STATE_FILE, load_weights, read_state, resolve_checkpoint
from mos_search.models.size import (
    INFERENCE_BYTES_PER_PARAMETER,
    TRAINING_BYTES_PER_PARAMETER,
    available_memory_bytes,
    check_fits,
    gib,
)
from mos_search.models.supernet import ElasticModel, SupernetConfig, build_supernet
from mos_search.settings import naming_file
from mos_search.space import SearchSpace, load_space, space_from_dict


def supernet_spec(config: SupernetConfig) -> dict[str, Any]:
    """Model description stored in a supernet checkpoint."""
    return {"kind": "supernet", "supernet": config.to_dict()}


def standalone_spec(
    space: SearchSpace,
    arch: ArchBase,
    vocab_size: int,
    dropout: float,
    attention_dropout: float = 0.0,
) -> dict[str, Any]:
    """Model description stored in a standalone checkpoint."""
    return {
        "kind": "standalone",
        "space": space.to_dict(),
        "arch": arch.to_dict(),
        "vocab_size": vocab_size,
        "dropout": dropout,
        "attention_dropout": attention_dropout,
    }


def standalone_model(
    space: SearchSpace,
    arch: ArchBase,
    vocab_size: int,
    dropout: float = 0.0,
    attention_dropout: float = 0.0,
) -> nn.Module:
    """A freshly initialised standalone model of `arch` for the space's task."""
    if space.task == "bert":
        from mos_search.models.bert import MaskedLM

        return MaskedLM(arch, vocab_size, dropout, attention_dropout)
    from mos_search.models.transformer import TranslationTransformer

    return TranslationTransformer(
        arch,
        vocab_size,
        space.qkv_dim,
        dropout,
        attention_dropout,
        share_embeddings=space.share_embeddings,
    )


def count_arch_parameters(space: SearchSpace, arch: ArchBase, vocab_size: int) -> int:
    """Exact parameters of `arch`'s deployed model (translation: the whole model; BERT: the
    encoder, embeddings included, without the masked-LM head)."""
    if space.task == "bert":
        from mos_search.models.bert import count_bert_parameters

        return count_bert_parameters(arch, vocab_size)
    from mos_search.models.transformer import count_parameters

    return count_parameters(arch, vocab_size, space.qkv_dim, space.share_embeddings)


def build_model(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised model for a description written by `*_spec`."""
    if spec.get("kind") == "supernet":
        return build_supernet(SupernetConfig.from_dict(spec["supernet"]))
    if spec.get("kind") == "standalone":
        space = space_from_dict(spec["space"], "checkpoint")
        arch = space.arch_from_dict(spec["arch"])
        return standalone_model(
            space, arch, spec["vocab_size"], spec["dropout"], spec["attention_dropout"]
        )
    raise CheckpointError(f"unknown model kind {spec.get('kind')!r} in checkpoint")


@dataclass
class ScoredModel:
    """A loaded checkpoint that yields the standalone sub-network of any architecture it holds."""

    path: Path
    kind: str
    model: nn.Module
    space: SearchSpace
    vocab_size: int
    digest: str  # sha256 of the weights file's content, checked against the recorded one

    def sub_network(self, arch: ArchBase) -> nn.Module:
        """The standalone model of `arch` in eval mode (extracted from a supernet)."""
        self.space.validate(arch)
        if isinstance(self.model, ElasticModel):
            return self.model.extract(arch)
        if arch != self.model.arch:
            raise ArchError(
                f"checkpoint {self.path} holds one standalone architecture; "
                f"asked for a different one: {arch.to_json()}"
            )
        return self.model.eval()

    @property
    def task(self) -> str:
        """The task of the checkpoint's space ("translation" or "bert")."""
        return self.space.task

    def archs(self) -> list[ArchBase]:
        """Architectures this checkpoint can score without being asked: the standalone one."""
        return [] if isinstance(self.model, ElasticModel) else [self.model.arch]


def spec_space(spec: dict[str, Any]) -> dict[str, Any]:
    """The space saved in a model description (supernet or standalone)."""
    try:
        return spec["supernet"]["space"] if spec.get("kind") == "supernet" else spec["space"]
    except (KeyError, TypeError):
        raise CheckpointError("the checkpoint's model description has no search space") from None


def _checkpoint_spec(checkpoint: str | Path) -> dict[str, Any]:
    spec = read_state(checkpoint).get("model")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{checkpoint} has no model description: not a mos-search checkpoint")
    return spec


def checkpoint_task(checkpoint: str | Path) -> str:
    """The task ("translation" or "bert") of a checkpoint, read from its state only."""
    return str(spec_space(_checkpoint_spec(checkpoint)).get("task", "translation"))


def checkpoint_space(checkpoint: str | Path) -> SearchSpace:
    """The search space of a checkpoint, read from its state only (no weights loaded)."""
    return space_from_dict(spec_space(_checkpoint_spec(checkpoint)), "checkpoint")


def load_model(checkpoint: str | Path) -> ScoredModel:
    """Load a supernet or standalone checkpoint (run folder or checkpoint directory)."""
    path = resolve_checkpoint(checkpoint)
    state = read_state(path)
    if not isinstance(state.get("model"), dict) or "model_sha256" not in state:
        raise CheckpointError(f"{path} has no model description: not a mos-search checkpoint")
    with naming_file(path / STATE_FILE, "model"):
        check_spec_fits(state["model"], training=False, source=str(path / STATE_FILE))
        model = build_model(state["model"])
    digest = load_weights(model, path)  # the weights' content digest, checked as recorded
    model.eval()
    if isinstance(model, ElasticModel):
        space, vocab = model.config.space, model.config.vocab_size
    else:
        space, vocab = space_from_dict(state["model"]["space"], "checkpoint"), model.vocab_size
    return ScoredModel(path, state["model"]["kind"], model, space, vocab, str(digest))


def describe_space(name_or_path: str | Path, vocab_size: int) -> str:
    """Human-readable summary of a space: choices, gene length, largest/smallest sizes."""
    space = load_space(name_or_path)
    lines = [f"{space.name} ({space.task}): {space.description}".rstrip(": ")]
    lines += [f"  {k:<22} {list(v)}" for k, v in space.choices.items()]
    lines += [f"  {k:<22} {v}" for k, v in space.settings.items()]
    if space.task == "translation" and "share_embeddings" not in space.settings:
        lines.append(f"  {'share_embeddings':<22} {space.share_embeddings} (not set)")
    lines.append(f"  gene length            {len(space.gene_layout)}")
    for label, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        count = count_arch_parameters(space, arch, vocab_size)
        lines.append(f"  {label:<22} {count / 1e6:.2f} M parameters at vocab {vocab_size}")
    lines += training_memory_lines(space, vocab_size)
    return "\n".join(lines)


def training_memory_lines(space: SearchSpace, vocab_size: int) -> list[str]:
    """What training each kind of supernet of `space` needs (models.size: weights, gradients and
    Adam's moments, before activations) beside the memory available now."""
    available = available_memory_bytes()
    lines = []
    for mode in ("shared", "neuron"):
        spec = supernet_spec(SupernetConfig(space=space, vocab_size=vocab_size, mode=mode))
        count = spec_parameters(spec)
        needed = count * TRAINING_BYTES_PER_PARAMETER
        verdict = "fits" if needed <= available else "does NOT fit"
        lines.append(
            f"  {mode + ' supernet':<22} {count / 1e6:.2f} M parameters; training needs "
            f"{gib(needed)}: {verdict} in the {gib(available)} available"
        )
    return lines


# ----------------------------------------------------- sizes, checked before building
def spec_parameters(spec: Mapping[str, Any]) -> int:
    """Exact parameter count of the model a description (`build.model_spec`, a checkpoint's
    "model") builds, counted on the meta device: nothing is allocated."""
    with torch.device("meta"):
        model = build_model(dict(spec))
    return sum(p.numel() for p in model.parameters())


def with_space(spec: Mapping[str, Any], space: SearchSpace) -> dict[str, Any]:
    """`spec` (supernet or standalone) with its search space replaced by `space`."""
    spec = dict(spec)
    if spec.get("kind") == "supernet":
        spec["supernet"] = {**spec["supernet"], "space": space.to_dict()}
    else:
        spec["space"] = space.to_dict()
    return spec


def check_spec_fits(spec: Mapping[str, Any], training: bool, source: str = "checkpoint") -> int:
    """`check_fits` for the model a description builds: its weights, or with `training` also
    gradients and Adam's moments; `source` names where the space was read in the message."""
    space = space_from_dict(spec_space(dict(spec)), source)
    kind = spec.get("kind", "model")
    if kind == "supernet":
        kind = f"the {spec['supernet'].get('mode', 'shared')} supernet"
    what = f"training {kind}" if training else f"loading {kind}"
    per_parameter = TRAINING_BYTES_PER_PARAMETER if training else INFERENCE_BYTES_PER_PARAMETER
    return check_fits(space, lambda s: spec_parameters(with_space(spec, s)), per_parameter, what)
