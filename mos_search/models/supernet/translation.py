"""The translation supernet: elastic encoder-decoder whose FFN weights a router can generate.

`Supernet.materialize(arch)` builds, for one architecture, exactly the parameters of the
standalone `TranslationTransformer` of that arch; the shared machinery (forward through the
standalone code, `extract`) lives in `ElasticModel`. With the space's `share_embeddings = "all"`
the supernet holds one token table of width max(encoder, decoder embed choices); an arch's
standalone table is its leading max(E_enc, E_dec) columns (the encoder reads E_enc of them, the
decoder and output projection E_dec), as HAT's `EmbeddingSuper` slices one shared table.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mos_search.arch import Arch
from mos_search.errors import ConfigError
from mos_search.models.supernet.base import ElasticModel, SupernetConfig
from mos_search.models.supernet.layers import (
    ElasticAttention,
    ElasticEmbedding,
    ElasticEncoderLayer,
    ElasticFeedForward,
    ElasticLayerNorm,
    LinearFactory,
    prefixed,
)
from mos_search.models.transformer import TranslationTransformer


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


class Supernet(ElasticModel):
    """Encoder-decoder supernet over a translation search space, in shared/layer/neuron mode."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__(config)
        if config.space.task != "translation":
            raise ConfigError(
                f"space {config.space.name!r} is for task {config.space.task!r}, not translation"
            )
        space = config.space
        enc_max, dec_max = (
            space.max_choice("encoder_embed_dim"),
            space.max_choice("decoder_embed_dim"),
        )
        qkv = space.qkv_dim
        if space.share_embeddings == "all":  # one table: an arch uses its leading columns
            self.embed = ElasticEmbedding(config.vocab_size, max(enc_max, dec_max))
        else:
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

    def materialize(self, arch: Arch) -> dict[str, Tensor]:
        """The parameters of `arch`'s standalone model, differentiable w.r.t. the supernet's."""
        self.config.space.validate(arch)
        features = self.arch_features(arch)
        enc, dec = arch.encoder_embed_dim, arch.decoder_embed_dim
        if self.config.space.share_embeddings == "all":
            tables = prefixed("embed", self.embed.materialize(max(enc, dec)))
        else:
            tables = {
                **prefixed("src_embed", self.src_embed.materialize(enc)),
                **prefixed("tgt_embed", self.tgt_embed.materialize(dec)),
            }
        params = {
            **tables,
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
                cfg.space.share_embeddings,
            )

    def _width_ratio(self, arch: Arch) -> float:
        space = self.config.space
        return (
            arch.encoder_embed_dim / space.max_choice("encoder_embed_dim")
            + arch.decoder_embed_dim / space.max_choice("decoder_embed_dim")
        ) / 2

    # ------------------------------------------------------------------ use
    def forward(self, src_tokens: Tensor, prev_output_tokens: Tensor, arch: Arch) -> Tensor:
        """Teacher-forced logits (B, T, V) of sub-network `arch`."""
        return self.run(arch, src_tokens, prev_output_tokens)
