"""Elastic layers: each owns the largest weight and materialises the slice an architecture uses.

Every layer answers `materialize(...) -> dict[name, Tensor]` with exactly the parameters of its
standalone twin in `mos_search.models.transformer`, under the same names, so the supernet's
forward pass and `extract` share one path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mos_search.constants import EXPERT_INITS
from mos_search.errors import ConfigError
from mos_search.models.supernet.router import Router

ROUTINGS = ("layer", "neuron")  # one mix of the experts per layer, or one per output row

# (in_max, out_max, mixed) -> an ExpertLinear configured by the supernet's mode; `mixed`: this
# layer is one MoS may give experts
LinearFactory = Callable[[int, int, bool], "ExpertLinear"]


COPY_PERTURBATION = 0.01  # "copies": each extra bank differs by this share of the std


class ExpertLinear(nn.Module):
    """A linear layer whose weight is a router-weighted mix of m expert banks, sliced.

    m = 1 without a router is classic weight sharing (`W[:out, :in]`); with a router, the layer's
    weight is `sum_i r_i * W_i[:out, :in]` (layer-wise) or, row by row, `sum_i r_ji * W_i[j, :in]`
    (neuron-wise). Biases are mixed the same way.

    `expert_init` (with m > 1) says how the banks start:
    - "independent": each like `nn.Linear` (the authors' code). Mixed near-uniformly at init,
      m independent banks give Var(sum_i r_i W_i) = sum_i r_i^2 sigma^2 = sigma^2 / m: the
      generated weight's std shrinks by 1/sqrt(m) (x0.71 for m = 2).
    - "scaled": each bank like `nn.Linear` times sqrt(m), so that the near-uniform mix has the
      std of one `nn.Linear` (exactly when r_i = 1/m).
    - "copies": one `nn.Linear` init copied into every bank, plus Gaussian noise of
      `COPY_PERTURBATION` times its std on each extra bank to break the symmetry: the mix is that
      init, whatever the routing, up to the noise.
    """

    def __init__(
        self,
        in_max: int,
        out_max: int,
        experts: int = 1,
        routing: str | None = None,
        num_features: int = 0,
        router_hidden: int = 128,
        router_dropout: float = 0.1,
        expert_init: str = "independent",
    ) -> None:
        super().__init__()
        if expert_init not in EXPERT_INITS:
            raise ConfigError(
                f"expert_init: expected one of {', '.join(EXPERT_INITS)}, found {expert_init!r}"
            )
        if routing is not None and routing not in ROUTINGS:
            raise ConfigError(
                f"routing: expected one of {', '.join(ROUTINGS)} (or none), found {routing!r}"
            )
        if (experts > 1) != (routing is not None):
            raise ValueError("experts > 1 needs a routing ('layer' or 'neuron') and vice versa")
        self.weight = nn.Parameter(torch.empty(experts, out_max, in_max))
        self.bias = nn.Parameter(torch.empty(experts, out_max))
        self._init_banks(expert_init)
        self.router = None
        if routing is not None:
            rows = out_max if routing == "neuron" else 1
            self.router = Router(num_features, experts, rows, router_hidden, router_dropout)

    @torch.no_grad()
    def _init_banks(self, expert_init: str) -> None:
        """Initialise the banks as `expert_init` says (see the class docstring)."""
        experts, in_max = self.weight.shape[0], self.weight.shape[2]
        for w, b in zip(self.weight, self.bias):  # each bank initialised like nn.Linear
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            nn.init.uniform_(b, -1 / math.sqrt(in_max), 1 / math.sqrt(in_max))
        if experts == 1 or expert_init == "independent":
            return
        if expert_init == "scaled":
            self.weight.mul_(math.sqrt(experts))
            self.bias.mul_(math.sqrt(experts))
            return
        for bank in (self.weight, self.bias):  # "copies"
            noise = torch.randn_like(bank[1:]) * COPY_PERTURBATION * bank[0].std()
            bank[1:] = bank[0] + noise

    def materialize(self, in_dim: int, out_dim: int, features: Tensor | None) -> dict[str, Tensor]:
        """The (out_dim, in_dim) weight and (out_dim,) bias of the active architecture."""
        weight = self.weight[:, :out_dim, :in_dim]  # (m, out, in)
        bias = self.bias[:, :out_dim]  # (m, out)
        if self.router is None:
            return {"weight": weight[0], "bias": bias[0]}
        mix = self.router(features)[:out_dim].T  # (m, out) or (m, 1)
        return {"weight": (mix[:, :, None] * weight).sum(0), "bias": (mix * bias).sum(0)}


class ElasticEmbedding(nn.Module):
    """Token embedding of the largest width; an architecture uses the leading columns."""

    def __init__(self, vocab_size: int, dim_max: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, dim_max))
        nn.init.normal_(self.weight, std=dim_max**-0.5)

    def materialize(self, dim: int) -> dict[str, Tensor]:
        """The (vocab, dim) table."""
        return {"weight": self.weight[:, :dim]}


class ElasticLayerNorm(nn.Module):
    """LayerNorm of the largest width; an architecture normalises over its leading features."""

    def __init__(self, dim_max: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim_max))
        self.bias = nn.Parameter(torch.zeros(dim_max))

    def materialize(self, dim: int) -> dict[str, Tensor]:
        """The (dim,) scale and shift."""
        return {"weight": self.weight[:dim], "bias": self.bias[:dim]}


class ElasticAttention(nn.Module):
    """Attention projections of the largest widths.

    The q/k/v width is fixed by the space (translation) or, given to `materialize`, the active
    width of the layer (BERT, where it equals the layer's hidden width). `mixed`: MoS may give
    the four projections experts (the supernet's `mos_attention`).
    """

    def __init__(
        self,
        embed_max: int,
        source_max: int,
        qkv_dim: int,
        make_linear: LinearFactory,
        mixed: bool,
    ) -> None:
        super().__init__()
        self.qkv_dim = qkv_dim
        self.q_proj = make_linear(embed_max, qkv_dim, mixed)
        self.k_proj = make_linear(source_max, qkv_dim, mixed)
        self.v_proj = make_linear(source_max, qkv_dim, mixed)
        self.out_proj = make_linear(qkv_dim, embed_max, mixed)

    def materialize(
        self, embed_dim: int, source_dim: int, features: Tensor, qkv_dim: int | None = None
    ) -> dict[str, Tensor]:
        """Parameters of a standalone `Attention(embed_dim, source_dim, qkv_dim, ...)`."""
        q = qkv_dim or self.qkv_dim
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

    def materialize(
        self, embed_dim: int, ffn_dim: int, features: Tensor, qkv_dim: int | None = None
    ) -> dict[str, Tensor]:
        """Parameters of a standalone `EncoderLayer` (q/k/v width `qkv_dim` if given)."""
        attention = self.self_attn.materialize(embed_dim, embed_dim, features, qkv_dim)
        return {
            **prefixed("self_attn", attention),
            **prefixed("self_attn_norm", self.self_attn_norm.materialize(embed_dim)),
            **prefixed("ffn", self.ffn.materialize(embed_dim, ffn_dim, features)),
            **prefixed("ffn_norm", self.ffn_norm.materialize(embed_dim)),
        }


def prefixed(prefix: str, params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Prepend `prefix.` to every parameter name."""
    return {f"{prefix}.{name}": tensor for name, tensor in params.items()}
