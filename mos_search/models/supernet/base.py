"""What every supernet shares: its config, the mode-dependent linear factory, and one code path.

A supernet subclass says how to `materialize(arch)` (the exact parameters of the arch's
standalone model, sliced and, in MoS modes, mixed by routers) and which standalone model class
that is (`_standalone`). The forward pass runs the standalone model's own code on those tensors
(`torch.func.functional_call` on a weightless skeleton), and `extract` loads them into a real
standalone model: one code path, so a supernet and its extracted sub-networks cannot drift apart.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mos_search.arch import ArchBase
from mos_search.constants import EXPERT_INITS, MODES, PAD_ID
from mos_search.errors import ConfigError
from mos_search.models.supernet.layers import ExpertLinear
from mos_search.settings import dataclass_from_dict
from mos_search.space import SearchSpace, space_from_dict

MAX_EXPERTS = 4
SKELETON_CACHE_SIZE = 256


@dataclass(frozen=True)
class SupernetConfig:
    """Everything that defines a supernet; saved inside every checkpoint to rebuild it exactly.

    mode: "shared" (plain weight sharing), "layer" (layer-wise MoS) or "neuron" (neuron-wise MoS).
    experts: expert banks per MoS layer (2-4; ignored in "shared" mode).
    mos_attention: also give the attention projections experts (the paper: FFN only).
    scale_dropout: HAT's rule: a sub-network trains with `dropout` times its mean embedding
        width over the largest (smaller sub-networks are regularised less).
    expert_init: how the expert banks start ("independent", "scaled", "copies": see
        `layers.ExpertLinear`); checkpoints from before it existed used "independent".
    """

    space: SearchSpace
    vocab_size: int
    mode: str = "shared"
    experts: int = 2
    mos_attention: bool = False
    router_hidden: int = 128
    router_dropout: float = 0.1
    dropout: float = 0.1
    attention_dropout: float = 0.0
    scale_dropout: bool = False
    pad_id: int = PAD_ID
    expert_init: str = "independent"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode: expected one of {', '.join(MODES)}, found {self.mode!r}")
        if not 2 <= self.experts <= MAX_EXPERTS:
            raise ConfigError(f"experts: expected 2..{MAX_EXPERTS}, found {self.experts}")
        if self.expert_init not in EXPERT_INITS:
            raise ConfigError(
                f"expert_init: expected one of {', '.join(EXPERT_INITS)}, "
                f"found {self.expert_init!r}"
            )
        if self.vocab_size < 4:
            raise ConfigError(f"vocab_size: expected at least 4, found {self.vocab_size}")
        for name in ("dropout", "attention_dropout", "router_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(
                    f"{name}: expected a value in [0, 1), found {getattr(self, name)}"
                )

    @property
    def expert_count(self) -> int:
        """Expert banks per MoS layer actually built (1 in shared mode)."""
        return 1 if self.mode == "shared" else self.experts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the space included."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["space"] = self.space.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetConfig:
        """Inverse of `to_dict`; missing or unknown keys raise ConfigError."""
        space = partial(space_from_dict, source="checkpoint config")
        return dataclass_from_dict(cls, data, "supernet config", convert={"space": space})


class ElasticModel(nn.Module):
    """Base of the translation and BERT supernets (see the module docstring)."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__()
        self.config = config
        self._skeletons: OrderedDict[ArchBase, nn.Module] = OrderedDict()

    def _make_linear(self, in_max: int, out_max: int, mixed: bool) -> ExpertLinear:
        """A shared-weight linear, or, for a `mixed` layer (one MoS may give experts) in a MoS
        mode, an expert-mixed one with `config.experts` banks."""
        cfg = self.config
        if not mixed or cfg.mode == "shared":
            return ExpertLinear(in_max, out_max)
        return ExpertLinear(
            in_max,
            out_max,
            cfg.experts,
            cfg.mode,
            num_features=len(cfg.space.feature_names),
            router_hidden=cfg.router_hidden,
            router_dropout=cfg.router_dropout,
            expert_init=cfg.expert_init,
        )

    def arch_features(self, arch: ArchBase) -> Tensor:
        """The router's input: the space's normalised feature vector of `arch`."""
        reference = next(self.parameters())
        return torch.tensor(
            self.config.space.features(arch), dtype=reference.dtype, device=reference.device
        )

    def materialize(self, arch: ArchBase) -> dict[str, Tensor]:
        """The parameters of `arch`'s standalone model, differentiable w.r.t. the supernet's."""
        raise NotImplementedError

    def _standalone(self, arch: ArchBase, device: torch.device | str) -> nn.Module:
        """A fresh standalone model of `arch` on `device` (training dropout applied)."""
        raise NotImplementedError

    def _skeleton(self, arch: ArchBase) -> nn.Module:
        """A weightless (meta-device) standalone model of `arch`, cached per arch."""
        skeleton = self._skeletons.pop(arch, None) or self._standalone(arch, "meta")
        self._skeletons[arch] = skeleton
        while len(self._skeletons) > SKELETON_CACHE_SIZE:
            self._skeletons.popitem(last=False)
        return skeleton.train(self.training)

    def run(self, arch: ArchBase, *inputs: Any) -> Any:
        """The standalone model of `arch` called on `inputs`, with the generated weights."""
        return functional_call(self._skeleton(arch), self.materialize(arch), inputs, strict=True)

    @torch.no_grad()
    def extract(self, arch: ArchBase) -> nn.Module:
        """A standalone model of `arch` with the generated weights baked in, in eval mode."""
        was_training = self.training
        self.eval()  # no router dropout in baked-in weights
        try:
            params = {k: v.detach().clone() for k, v in self.materialize(arch).items()}
        finally:
            self.train(was_training)
        model = self._standalone(arch, "meta")
        model.load_state_dict(params, strict=True, assign=True)
        return model.eval()
