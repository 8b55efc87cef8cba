"""Plain bottleneck BERT encoder of one fixed architecture, with its masked-LM head.

Each layer reads the residual stream (width `embed_dim`), normalises it, projects it down to the
layer's own hidden width, runs a pre-norm Transformer encoder block there (the same
`EncoderLayer` as the translation model, with q/k/v width = hidden width) and projects back up
into the stream. So layers of different widths stack, as in the published bottleneck space.
The masked-LM head (dense -> GELU -> LayerNorm -> output tied to the token embedding) is used for
training and perplexity; the deployed encoder (`BertEncoder`) is everything below it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mos_search.arch import BertArch
from mos_search.constants import PAD_ID
from mos_search.models.dropout import dropout
from mos_search.models.transformer import EncoderLayer, sinusoidal_positions


class BottleneckLayer(nn.Module):
    """x + up(EncoderLayer(down(norm(x)))): one layer at its own hidden width."""

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int,
        ffn_dim: int,
        heads: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.input_norm = nn.LayerNorm(embed_dim)
        self.down = nn.Linear(embed_dim, hidden_dim)
        self.block = EncoderLayer(
            hidden_dim, ffn_dim, heads, hidden_dim, dropout, attention_dropout
        )
        self.up = nn.Linear(hidden_dim, embed_dim)
        self.dropout = dropout

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """(B, S, E) -> (B, S, E); key_mask (B, 1, 1, S), True for real tokens."""
        inner = self.block(self.down(self.input_norm(x)), key_mask)
        return x + dropout(self.up(inner), self.dropout, self.training)


class BertEncoder(nn.Module):
    """Token ids (B, S) -> contextual states (B, S, E): what an exported BERT model computes."""

    def __init__(
        self,
        arch: BertArch,
        vocab_size: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        pad_id: int = PAD_ID,
    ) -> None:
        super().__init__()
        self.arch, self.vocab_size, self.pad_id, self.dropout = arch, vocab_size, pad_id, dropout
        self.embed = nn.Embedding(vocab_size, arch.embed_dim)
        nn.init.normal_(self.embed.weight, std=arch.embed_dim**-0.5)
        self.layers = nn.ModuleList(
            BottleneckLayer(arch.embed_dim, h, f, heads, dropout, attention_dropout)
            for h, f, heads in zip(arch.hidden_dims, arch.ffn_dims, arch.heads)
        )
        self.final_norm = nn.LayerNorm(arch.embed_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """Normalised states of the last layer; pad positions are neither attended nor masked."""
        key_mask = (tokens != self.pad_id)[:, None, None, :]
        dim = self.arch.embed_dim
        x = self.embed(tokens) * math.sqrt(dim)
        x = x + sinusoidal_positions(tokens.shape[1], dim, 0, tokens.device).to(x.dtype)
        x = dropout(x, self.dropout, self.training)
        for layer in self.layers:
            x = layer(x, key_mask)
        return self.final_norm(x)


class MaskedLM(nn.Module):
    """A `BertEncoder` plus masked-LM head: the standalone model BERT sub-networks extract to."""

    def __init__(
        self,
        arch: BertArch,
        vocab_size: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        pad_id: int = PAD_ID,
    ) -> None:
        super().__init__()
        self.arch, self.vocab_size = arch, vocab_size
        self.encoder = BertEncoder(arch, vocab_size, dropout, attention_dropout, pad_id)
        self.head_dense = nn.Linear(arch.embed_dim, arch.embed_dim)
        self.head_norm = nn.LayerNorm(arch.embed_dim)
        self.head_bias = nn.Parameter(torch.zeros(vocab_size))

    def logits_at(self, states: Tensor) -> Tensor:
        """Vocabulary logits (..., V) of encoder states (..., E)."""
        hidden = self.head_norm(F.gelu(self.head_dense(states)))
        return F.linear(hidden, self.encoder.embed.weight, self.head_bias)

    def forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """Logits (B, S, V), or only at `positions` (a (B, S) bool mask) as (N, V): cheaper."""
        states = self.encoder(tokens)
        return self.logits_at(states if positions is None else states[positions])


def count_bert_parameters(arch: BertArch, vocab_size: int, head: bool = False) -> int:
    """Exact parameter count of the encoder (embeddings included); with `head`, the MLM head too."""

    def linear(i: int, o: int) -> int:
        return i * o + o

    e = arch.embed_dim
    total = vocab_size * e + 2 * e  # token embedding + final norm (positions are fixed)
    for h, f in zip(arch.hidden_dims, arch.ffn_dims):
        block = 4 * linear(h, h) + linear(h, f) + linear(f, h) + 2 * 2 * h
        total += 2 * e + linear(e, h) + block + linear(h, e)
    if head:
        total += linear(e, e) + 2 * e + vocab_size  # dense, norm, output bias (weight tied)
    return total


def bert_parameter_bytes(arch: BertArch, vocab_size: int, bytes_per_value: int = 4) -> int:
    """Exact bytes of the deployed encoder's parameters (4 per value in fp32, 2 in fp16)."""
    return count_bert_parameters(arch, vocab_size) * bytes_per_value
