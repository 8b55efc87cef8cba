"""The BERT supernet: elastic bottleneck encoder with a masked-LM head, same layers and router.

`BertSupernet.materialize(arch)` builds exactly the parameters of the standalone `MaskedLM` of
that arch. Each layer's down/up projections and attention are elastic linears (experts only with
`mos_attention`); the inner FFN's fc1/fc2 get the MoS experts, as in the translation supernet.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mos_search.arch import BertArch
from mos_search.errors import ConfigError
from mos_search.models.bert import MaskedLM
from mos_search.models.supernet.base import ElasticModel, SupernetConfig
from mos_search.models.supernet.layers import (
    ElasticEmbedding,
    ElasticEncoderLayer,
    ElasticLayerNorm,
    LinearFactory,
    prefixed,
)


class ElasticBottleneckLayer(nn.Module):
    """Elastic twin of `BottleneckLayer`."""

    def __init__(
        self,
        embed_max: int,
        hidden_max: int,
        ffn_max: int,
        make_linear: LinearFactory,
        mos_attention: bool,
    ) -> None:
        super().__init__()
        self.input_norm = ElasticLayerNorm(embed_max)
        self.down = make_linear(embed_max, hidden_max, mos_attention)
        self.block = ElasticEncoderLayer(
            hidden_max, ffn_max, hidden_max, make_linear, mos_attention
        )
        self.up = make_linear(hidden_max, embed_max, mos_attention)

    def materialize(
        self, embed_dim: int, hidden_dim: int, ffn_dim: int, features: Tensor
    ) -> dict[str, Tensor]:
        """Parameters of a standalone `BottleneckLayer`."""
        block = self.block.materialize(hidden_dim, ffn_dim, features, qkv_dim=hidden_dim)
        return {
            **prefixed("input_norm", self.input_norm.materialize(embed_dim)),
            **prefixed("down", self.down.materialize(embed_dim, hidden_dim, features)),
            **prefixed("block", block),
            **prefixed("up", self.up.materialize(hidden_dim, embed_dim, features)),
        }


class BertSupernet(ElasticModel):
    """Masked-LM supernet over a BERT search space, in shared/layer/neuron mode."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__(config)
        space = config.space
        if space.task != "bert":
            raise ConfigError(f"space {space.name!r} is for task {space.task!r}, not bert")
        embed_max = space.max_choice("embed_dim")
        self.embed = ElasticEmbedding(config.vocab_size, embed_max)
        self.layers = nn.ModuleList(
            ElasticBottleneckLayer(
                embed_max,
                space.max_choice("hidden_dims"),
                space.max_choice("ffn_dims"),
                self._make_linear,
                config.mos_attention,
            )
            for _ in range(space.max_choice("layers"))
        )
        self.final_norm = ElasticLayerNorm(embed_max)
        self.head_dense = self._make_linear(embed_max, embed_max, False)
        self.head_norm = ElasticLayerNorm(embed_max)
        self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))

    def materialize(self, arch: BertArch) -> dict[str, Tensor]:
        """The parameters of `arch`'s standalone `MaskedLM`, differentiable."""
        self.config.space.validate(arch)
        features = self.arch_features(arch)
        e = arch.embed_dim
        params = {
            **prefixed("encoder.embed", self.embed.materialize(e)),
            **prefixed("encoder.final_norm", self.final_norm.materialize(e)),
            **prefixed("head_dense", self.head_dense.materialize(e, e, features)),
            **prefixed("head_norm", self.head_norm.materialize(e)),
            "head_bias": self.head_bias,
        }
        for i, (hidden, ffn) in enumerate(zip(arch.hidden_dims, arch.ffn_dims)):
            layer = self.layers[i].materialize(e, hidden, ffn, features)
            params.update(prefixed(f"encoder.layers.{i}", layer))
        return params

    def _standalone(self, arch: BertArch, device: torch.device | str) -> MaskedLM:
        cfg = self.config
        dropout = cfg.dropout
        if cfg.scale_dropout:  # HAT's rule, on the embedding width
            dropout *= arch.embed_dim / cfg.space.max_choice("embed_dim")
        with torch.device(device):
            return MaskedLM(arch, cfg.vocab_size, dropout, cfg.attention_dropout, cfg.pad_id)

    def forward(self, tokens: Tensor, positions: Tensor | None, arch: BertArch) -> Tensor:
        """Masked-LM logits of sub-network `arch` (see `MaskedLM.forward`)."""
        return self.run(arch, tokens, positions)
