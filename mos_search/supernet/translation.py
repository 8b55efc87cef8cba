"""The translation supernet: elastic encoder-decoder whose FFN weights a router can generate.

`Supernet.materialize(arch)` builds, for one architecture, exactly the parameters of the
standalone `TranslationTransformer` of that arch (sliced, and in MoS modes mixed by the router).
The forward pass runs the standalone model's code on those tensors (`torch.func.functional_call`
on a weightless skeleton), and `extract` loads them into a real standalone model: one code path,
so the supernet and its extracted sub-networks cannot drift apart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mos_search.constants import MODES
from mos_search.errors import ConfigError
from mos_search.space import Arch, SearchSpace, space_from_dict
from mos_search.supernet.layers import ElasticEmbedding, ElasticLayerNorm, ExpertLinear, prefixed
from mos_search.transformer import PAD_ID, TranslationTransformer

MAX_EXPERTS = 4
SKELETON_CACHE_SIZE = 256

LinearFactory = Callable[[int, int, bool], ExpertLinear]


@dataclass(frozen=True)
class SupernetConfig:
    """Everything that defines a supernet; saved inside every checkpoint to rebuild it exactly.

    mode: "shared" (plain weight sharing), "layer" (layer-wise MoS) or "neuron" (neuron-wise MoS).
    experts: expert banks per MoS layer (2-4; ignored in "shared" mode).
    mos_attention: also give the attention projections experts (the paper: FFN only).
    scale_dropout: HAT's rule: a sub-network trains with `dropout` times its mean embedding
        width over the largest (smaller sub-networks are regularised less).
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

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode: expected one of {', '.join(MODES)}, found {self.mode!r}")
        if not 2 <= self.experts <= MAX_EXPERTS:
            raise ConfigError(f"experts: expected 2..{MAX_EXPERTS}, found {self.experts}")
        if self.vocab_size < 4:
            raise ConfigError(f"vocab_size: expected at least 4, found {self.vocab_size}")
        if self.space.task != "translation":
            raise ConfigError(
                f"space {self.space.name!r} is for task {self.space.task!r}, not translation"
            )
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
        """Inverse of `to_dict`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"supernet config has unknown key(s): {', '.join(sorted(unknown))}")
        return cls(**{**data, "space": space_from_dict(data["space"], "checkpoint config")})


class ElasticAttention(nn.Module):
    """Attention projections of the largest widths (q/k/v width fixed)."""

    def __init__(
        self,
        embed_max: int,
        source_max: int,
        qkv_dim: int,
        make_linear: LinearFactory,
        experts: bool,
    ) -> None:
        super().__init__()
        self.qkv_dim = qkv_dim
        self.q_proj = make_linear(embed_max, qkv_dim, experts)
        self.k_proj = make_linear(source_max, qkv_dim, experts)
        self.v_proj = make_linear(source_max, qkv_dim, experts)
        self.out_proj = make_linear(qkv_dim, embed_max, experts)

    def materialize(self, embed_dim: int, source_dim: int, features: Tensor) -> dict[str, Tensor]:
        """Parameters of a standalone `Attention(embed_dim, source_dim, qkv_dim, ...)`."""
        q = self.qkv_dim
        return {
            **prefixed("q_proj", self.q_proj.materialize(embed_dim, q, features)),
            **prefixed("k_proj", self.k_proj.materialize(source_dim, q, features)),
            **prefixed("v_proj", self.v_proj.materialize(source_dim, q, features)),
            **prefixed("out_proj", self.out_proj.materialize(q, embed_dim, features)),
        }


class ElasticFeedForward(nn.Module):
    """fc1/fc2 of the largest widths; these are the layers MoS gives experts."""

    def __init__(self, embed_max: int, ffn_max: int, make_linear: LinearFactory) -> None:
        super().__init__()
        self.fc1 = make_linear(embed_max, ffn_max, True)
        self.fc2 = make_linear(ffn_max, embed_max, True)

    def materialize(self, embed_dim: int, ffn_dim: int, features: Tensor) -> dict[str, Tensor]:
        """Parameters of a standalone `FeedForward(embed_dim, ffn_dim)`."""
        return {
            **prefixed("fc1", self.fc1.materialize(embed_dim, ffn_dim, features)),
            **prefixed("fc2", self.fc2.materialize(ffn_dim, embed_dim, features)),
        }


class ElasticEncoderLayer(nn.Module):
    """Elastic twin of `EncoderLayer`."""

    def __init__(
        self,
        embed_max: int,
        ffn_max: int,
        qkv_dim: int,
        make_linear: LinearFactory,
        mos_attention: bool,
    ) -> None:
        super().__init__()
        self.self_attn = ElasticAttention(embed_max, embed_max, qkv_dim, make_linear, mos_attention)
        self.self_attn_norm = ElasticLayerNorm(embed_max)
        self.ffn = ElasticFeedForward(embed_max, ffn_max, make_linear)
        self.ffn_norm = ElasticLayerNorm(embed_max)

    def materialize(self, embed_dim: int, ffn_dim: int, features: Tensor) -> dict[str, Tensor]:
        """Parameters of a standalone `EncoderLayer`."""
        return {
            **prefixed("self_attn", self.self_attn.materialize(embed_dim, embed_dim, features)),
            **prefixed("self_attn_norm", self.self_attn_norm.materialize(embed_dim)),
            **prefixed("ffn", self.ffn.materialize(embed_dim, ffn_dim, features)),
            **prefixed("ffn_norm", self.ffn_norm.materialize(embed_dim)),
        }


class ElasticDecoderLayer(nn.Module):
    """Elastic twin of `DecoderLayer`."""

    def __init__(
        self,
        embed_max: int,
        encoder_max: int,
        ffn_max: int,
        qkv_dim: int,
        make_linear: LinearFactory,
        mos_attention: bool,
    ) -> None:
        super().__init__()
        self.self_attn = ElasticAttention(embed_max, embed_max, qkv_dim, make_linear, mos_attention)
        self.self_attn_norm = ElasticLayerNorm(embed_max)
        self.cross_attn = ElasticAttention(
            embed_max, encoder_max, qkv_dim, make_linear, mos_attention
        )
        self.cross_attn_norm = ElasticLayerNorm(embed_max)
        self.ffn = ElasticFeedForward(embed_max, ffn_max, make_linear)
        self.ffn_norm = ElasticLayerNorm(embed_max)

    def materialize(
        self, embed_dim: int, encoder_dim: int, ffn_dim: int, features: Tensor
    ) -> dict[str, Tensor]:
        """Parameters of a standalone `DecoderLayer`."""
        return {
            **prefixed("self_attn", self.self_attn.materialize(embed_dim, embed_dim, features)),
            **prefixed("self_attn_norm", self.self_attn_norm.materialize(embed_dim)),
            **prefixed("cross_attn", self.cross_attn.materialize(embed_dim, encoder_dim, features)),
            **prefixed("cross_attn_norm", self.cross_attn_norm.materialize(embed_dim)),
            **prefixed("ffn", self.ffn.materialize(embed_dim, ffn_dim, features)),
            **prefixed("ffn_norm", self.ffn_norm.materialize(embed_dim)),
        }


class Supernet(nn.Module):
    """Encoder-decoder supernet over a translation search space, in shared/layer/neuron mode."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__()
        self.config = config
        space = config.space
        enc_max, dec_max = (
            space.max_choice("encoder_embed_dim"),
            space.max_choice("decoder_embed_dim"),
        )
        qkv = space.qkv_dim
        self.src_embed = ElasticEmbedding(config.vocab_size, enc_max)
        self.tgt_embed = ElasticEmbedding(config.vocab_size, dec_max)
        self.encoder_layers = nn.ModuleList(
            ElasticEncoderLayer(
                enc_max,
                space.max_choice("encoder_ffn_dims"),
                qkv,
                self._make_linear,
                config.mos_attention,
            )
            for _ in range(space.max_choice("encoder_layers"))
        )
        self.encoder_norm = ElasticLayerNorm(enc_max)
        self.decoder_layers = nn.ModuleList(
            ElasticDecoderLayer(
                dec_max,
                enc_max,
                space.max_choice("decoder_ffn_dims"),
                qkv,
                self._make_linear,
                config.mos_attention,
            )
            for _ in range(space.max_choice("decoder_layers"))
        )
        self.decoder_norm = ElasticLayerNorm(dec_max)
        self._skeletons: OrderedDict[Arch, TranslationTransformer] = OrderedDict()

    def _make_linear(self, in_max: int, out_max: int, experts: bool) -> ExpertLinear:
        cfg = self.config
        if not experts or cfg.mode == "shared":
            return ExpertLinear(in_max, out_max)
        return ExpertLinear(
            in_max,
            out_max,
            cfg.experts,
            cfg.mode,
            num_features=len(cfg.space.feature_names),
            router_hidden=cfg.router_hidden,
            router_dropout=cfg.router_dropout,
        )

    # ------------------------------------------------------------------ weights
    def arch_features(self, arch: Arch) -> Tensor:
        """The router's input: the space's normalised feature vector of `arch`."""
        return torch.tensor(
            self.config.space.features(arch),
            dtype=self.src_embed.weight.dtype,
            device=self.src_embed.weight.device,
        )

    def materialize(self, arch: Arch) -> dict[str, Tensor]:
        """The parameters of `arch`'s standalone model, differentiable w.r.t. the supernet's."""
        self.config.space.validate(arch)
        features = self.arch_features(arch)
        enc, dec = arch.encoder_embed_dim, arch.decoder_embed_dim
        params = {
            **prefixed("src_embed", self.src_embed.materialize(enc)),
            **prefixed("tgt_embed", self.tgt_embed.materialize(dec)),
            **prefixed("encoder_norm", self.encoder_norm.materialize(enc)),
            **prefixed("decoder_norm", self.decoder_norm.materialize(dec)),
        }
        for i, ffn in enumerate(arch.encoder_ffn_dims):
            layer = self.encoder_layers[i].materialize(enc, ffn, features)
            params.update(prefixed(f"encoder_layers.{i}", layer))
        for i, ffn in enumerate(arch.decoder_ffn_dims):
            layer = self.decoder_layers[i].materialize(dec, enc, ffn, features)
            params.update(prefixed(f"decoder_layers.{i}", layer))
        return params

    def _standalone(self, arch: Arch, device: torch.device | str) -> TranslationTransformer:
        cfg = self.config
        dropout = cfg.dropout * (self._width_ratio(arch) if cfg.scale_dropout else 1.0)
        with torch.device(device):
            return TranslationTransformer(
                arch,
                cfg.vocab_size,
                cfg.space.qkv_dim,
                dropout,
                cfg.attention_dropout,
                cfg.pad_id,
            )

    def _width_ratio(self, arch: Arch) -> float:
        space = self.config.space
        return (
            arch.encoder_embed_dim / space.max_choice("encoder_embed_dim")
            + arch.decoder_embed_dim / space.max_choice("decoder_embed_dim")
        ) / 2

    def _skeleton(self, arch: Arch) -> TranslationTransformer:
        """A weightless (meta-device) standalone model of `arch`, cached per arch."""
        skeleton = self._skeletons.pop(arch, None) or self._standalone(arch, "meta")
        self._skeletons[arch] = skeleton
        while len(self._skeletons) > SKELETON_CACHE_SIZE:
            self._skeletons.popitem(last=False)
        return skeleton.train(self.training)

    # ------------------------------------------------------------------ use
    def forward(self, src_tokens: Tensor, prev_output_tokens: Tensor, arch: Arch) -> Tensor:
        """Teacher-forced logits (B, T, V) of sub-network `arch`."""
        return functional_call(
            self._skeleton(arch),
            self.materialize(arch),
            (src_tokens, prev_output_tokens),
            strict=True,
        )

    @torch.no_grad()
    def extract(self, arch: Arch) -> TranslationTransformer:
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
