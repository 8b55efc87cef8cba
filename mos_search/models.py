"""Build the model a checkpoint describes (supernet or one standalone architecture) and load it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mos_search.checkpoint import load_weights, read_state, resolve_checkpoint
from mos_search.errors import ArchError, CheckpointError
from mos_search.space import Arch, SearchSpace, space_from_dict
from mos_search.supernet import Supernet, SupernetConfig
from mos_search.transformer import TranslationTransformer


def supernet_spec(config: SupernetConfig) -> dict[str, Any]:
    """Model description stored in a supernet checkpoint."""
    return {"kind": "supernet", "supernet": config.to_dict()}


def standalone_spec(
    space: SearchSpace, arch: Arch, vocab_size: int, dropout: float, attention_dropout: float = 0.0
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


def build_model(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised model for a description written by `*_spec`."""
    if spec.get("kind") == "supernet":
        return Supernet(SupernetConfig.from_dict(spec["supernet"]))
    if spec.get("kind") == "standalone":
        space = space_from_dict(spec["space"], "checkpoint")
        arch = space.arch_from_dict(spec["arch"])
        return TranslationTransformer(
            arch, spec["vocab_size"], space.qkv_dim, spec["dropout"], spec["attention_dropout"]
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
    digest: str

    def sub_network(self, arch: Arch) -> TranslationTransformer:
        """The standalone model of `arch` in eval mode (extracted from a supernet)."""
        self.space.validate(arch)
        if isinstance(self.model, Supernet):
            return self.model.extract(arch)
        if arch != self.model.arch:
            raise ArchError(
                f"checkpoint {self.path} holds one standalone architecture; "
                f"asked for a different one: {arch.to_json()}"
            )
        return self.model.eval()

    def archs(self) -> list[Arch]:
        """Architectures this checkpoint can score without being asked: the standalone one."""
        return [] if isinstance(self.model, Supernet) else [self.model.arch]


def load_model(checkpoint: str | Path) -> ScoredModel:
    """Load a supernet or standalone checkpoint (run folder or checkpoint directory)."""
    path = resolve_checkpoint(checkpoint)
    state = read_state(path)
    if not isinstance(state.get("model"), dict) or "model_sha256" not in state:
        raise CheckpointError(f"{path} has no model description: not a mos-search checkpoint")
    model = build_model(state["model"])
    load_weights(model, path)
    model.eval()
    if isinstance(model, Supernet):
        space, vocab = model.config.space, model.config.vocab_size
    else:
        space, vocab = space_from_dict(state["model"]["space"], "checkpoint"), model.vocab_size
    return ScoredModel(path, state["model"]["kind"], model, space, vocab, state["model_sha256"])
