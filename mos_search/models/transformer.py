"""Plain encoder-decoder Transformer of one fixed architecture: the model sub-networks extract to.

Reads bottom-up: attention -> feed-forward -> encoder/decoder layers -> the whole model. Pre-norm
(LayerNorm before each sub-layer, one final LayerNorm per stack): the residual stream keeps the same
scale whatever the depth, so sub-networks of 1 to N layers cut from one supernet all see inputs of
the scale they were trained on, and training needs no delicate warm-up. The decoder supports
incremental decoding: cross-attention keys/values are projected once, self-attention keys/values
are cached and grown one step at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mos_search.arch import SHARE_EMBEDDINGS, SHARE_EMBEDDINGS_DEFAULT, Arch
from mos_search.constants import PAD_ID
from mos_search.errors import ConfigError
from mos_search.models.dropout import dropout


def sinusoidal_positions(
    length: int, dim: int, offset: int | Tensor = 0, device: torch.device | None = None
) -> Tensor:
    """Fixed sine/cosine position encodings, shape (length, dim); first half sin, second cos."""
    half = dim // 2
    inv_freq = torch.exp(
        torch.arange(half, device=device, dtype=torch.float32)
        * (-math.log(10000.0) / max(half - 1, 1))
    )
    positions = torch.arange(length, device=device, dtype=torch.float32) + offset
    angles = positions[:, None] * inv_freq[None, :]  # (T, half)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, H*Dh) -> (B, H, T, Dh)."""
    b, t, width = x.shape
    return x.view(b, t, heads, width // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H*Dh)."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class Attention(nn.Module):
    """Multi-head attention with a fixed q/k/v width; the head count sets the head size."""

    def __init__(
        self, embed_dim: int, source_dim: int, qkv_dim: int, heads: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(embed_dim, qkv_dim)
        self.k_proj = nn.Linear(source_dim, qkv_dim)
        self.v_proj = nn.Linear(source_dim, qkv_dim)
        self.out_proj = nn.Linear(qkv_dim, embed_dim)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of `source` (B, S, source_dim), each (B, H, S, Dh)."""
        return split_heads(self.k_proj(source), self.heads), split_heads(
            self.v_proj(source), self.heads
        )

    def attend(
        self,
        query: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """Attention of `query` (B, T, embed_dim) over projected keys/values; mask True = keep."""
        q = split_heads(self.q_proj(query), self.heads)  # (B, H, T, Dh)
        dropout_p = self.dropout if self.training else 0.0
        if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # PyTorch's CPU flash attention is ~6x slower in bf16 than in float32 (its backward
            # above all; bench/throughput.py): under CPU autocast attention runs in float32
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), mask, dropout_p, is_causal
                )  # (B, H, T, Dh)
        else:
            out = F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal)
        return self.out_proj(merge_heads(out))

    def forward(
        self, query: Tensor, source: Tensor, mask: Tensor | None = None, is_causal: bool = False
    ) -> Tensor:
        """Attention of `query` over `source`."""
        return self.attend(query, *self.project_kv(source), mask=mask, is_causal=is_causal)


class FeedForward(nn.Module):
    """Position-wise fc1 -> ReLU -> fc2."""

    def __init__(self, embed_dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, E) -> (B, T, E)."""
        hidden = dropout(F.relu(self.fc1(x)), self.dropout, self.training)
        return self.fc2(hidden)


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward block."""

    def __init__(
        self,
        embed_dim: int,
        ffn_dim: int,
        heads: int,
        qkv_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embed_dim, embed_dim, qkv_dim, heads, attention_dropout)
        self.self_attn_norm = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, ffn_dim, dropout)
        self.ffn_norm = nn.LayerNorm(embed_dim)
        self.dropout = dropout

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """(B, S, E) -> (B, S, E); key_mask (B, 1, 1, S), True for real tokens."""
        h = self.self_attn_norm(x)
        x = x + dropout(self.self_attn(h, h, mask=key_mask), self.dropout, self.training)
        return x + dropout(self.ffn(self.ffn_norm(x)), self.dropout, self.training)


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention + cross-attention + feed-forward block."""

    def __init__(
        self,
        embed_dim: int,
        encoder_dim: int,
        ffn_dim: int,
        self_heads: int,
        cross_heads: int,
        qkv_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embed_dim, embed_dim, qkv_dim, self_heads, attention_dropout)
        self.self_attn_norm = nn.LayerNorm(embed_dim)
        self.cross_attn = Attention(embed_dim, encoder_dim, qkv_dim, cross_heads, attention_dropout)
        self.cross_attn_norm = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, ffn_dim, dropout)
        self.ffn_norm = nn.LayerNorm(embed_dim)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        cross_kv: tuple[Tensor, Tensor],
        cross_mask: Tensor,
        past_kv: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """(B, T, E) -> (B, T, E) and this layer's self-attention keys/values (past ones included).

        Without `past_kv` the T positions attend causally to each other (teacher forcing); with it,
        the T new positions (one per step) attend to all cached positions and themselves.
        """
        h = self.self_attn_norm(x)
        k, v = self.self_attn.project_kv(h)  # (B, H, T, Dh)
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        mask = None
        if past_kv is not None and x.shape[1] > 1:  # several new tokens: causal among themselves
            new, total = x.shape[1], k.shape[2]
            mask = torch.ones(new, total, dtype=torch.bool, device=x.device).tril(total - new)
        attn = self.self_attn.attend(h, k, v, mask=mask, is_causal=past_kv is None)
        x = x + dropout(attn, self.dropout, self.training)
        attn = self.cross_attn.attend(self.cross_attn_norm(x), *cross_kv, mask=cross_mask)
        x = x + dropout(attn, self.dropout, self.training)
        x = x + dropout(self.ffn(self.ffn_norm(x)), self.dropout, self.training)
        return x, (k, v)


@dataclass
class EncoderOut:
    """Normalised outputs of the last encoder layers (oldest first) and the source key mask."""

    states: list[Tensor]  # each (B, S, E_enc)
    key_mask: Tensor  # (B, 1, 1, S), True for real tokens


@dataclass
class DecoderState:
    """What incremental decoding carries between steps, per decoder layer."""

    cross_kv: list[tuple[Tensor, Tensor]]  # each (B, H, k*S, Dh), computed once
    cross_masks: list[Tensor]  # each (B, 1, 1, k*S)
    self_kv: list[tuple[Tensor, Tensor] | None]  # each (B, H, t, Dh), grown per step
    step: int = 0

    def reorder(self, order: Tensor, same_sources: bool = False) -> DecoderState:
        """Select batch rows `order` (beam search), keeping the step.

        With `same_sources`, the caller promises every row is replaced by a row of the same
        source sentence (beams never change sentence), so the cross-attention keys/values,
        identical within a sentence, are kept instead of copied.
        """
        pick = lambda t: t.index_select(0, order)  # noqa: E731
        return DecoderState(
            cross_kv=self.cross_kv
            if same_sources
            else [(pick(k), pick(v)) for k, v in self.cross_kv],
            cross_masks=self.cross_masks if same_sources else [pick(m) for m in self.cross_masks],
            self_kv=[None if kv is None else (pick(kv[0]), pick(kv[1])) for kv in self.self_kv],
            step=self.step,
        )


class TranslationTransformer(nn.Module):
    """Standalone encoder-decoder of one `Arch`; the output projection is the target embedding.

    `share_embeddings` (the space's setting, `arch.SHARE_EMBEDDINGS`): "all" gives one table
    `embed` of width max(encoder_embed_dim, decoder_embed_dim); the encoder reads its leading
    encoder_embed_dim columns, the decoder (input and output projection) its leading
    decoder_embed_dim columns, as HAT's `EmbeddingSuper` does. "decoder" gives `src_embed`
    (encoder width) and `tgt_embed` (decoder width, also the output projection).
    """

    def __init__(
        self,
        arch: Arch,
        vocab_size: int,
        qkv_dim: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        pad_id: int = PAD_ID,
        share_embeddings: str = SHARE_EMBEDDINGS_DEFAULT,
    ) -> None:
        super().__init__()
        if share_embeddings not in SHARE_EMBEDDINGS:
            raise ConfigError(
                f"share_embeddings: expected one of {', '.join(SHARE_EMBEDDINGS)}, "
                f"found {share_embeddings!r}"
            )
        self.arch, self.vocab_size, self.qkv_dim, self.pad_id = arch, vocab_size, qkv_dim, pad_id
        self.dropout, self.share_embeddings = dropout, share_embeddings
        enc_dim, dec_dim = arch.encoder_embed_dim, arch.decoder_embed_dim
        if share_embeddings == "all":
            self.embed = nn.Embedding(vocab_size, max(enc_dim, dec_dim))
            tables = [self.embed]
        else:
            self.src_embed = nn.Embedding(vocab_size, enc_dim)
            self.tgt_embed = nn.Embedding(vocab_size, dec_dim)
            tables = [self.src_embed, self.tgt_embed]
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(enc_dim, ffn, heads, qkv_dim, dropout, attention_dropout)
            for ffn, heads in zip(arch.encoder_ffn_dims, arch.encoder_heads)
        )
        self.encoder_norm = nn.LayerNorm(enc_dim)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(dec_dim, enc_dim, ffn, sh, ch, qkv_dim, dropout, attention_dropout)
            for ffn, sh, ch in zip(
                arch.decoder_ffn_dims, arch.decoder_self_heads, arch.decoder_cross_heads
            )
        )
        self.decoder_norm = nn.LayerNorm(dec_dim)
        for embedding in tables:  # unit scale after the sqrt(dim) factor
            nn.init.normal_(embedding.weight, std=embedding.weight.shape[1] ** -0.5)

    # ------------------------------------------------------------------ encoder
    def table(self, part: str) -> Tensor:
        """The (V, width) embedding table of the "encoder" or the "decoder" (whose table is
        also the output projection); with shared embeddings, the leading columns of one."""
        if self.share_embeddings != "all":
            return (self.src_embed if part == "encoder" else self.tgt_embed).weight
        arch = self.arch
        dim = arch.encoder_embed_dim if part == "encoder" else arch.decoder_embed_dim
        weight = self.embed.weight
        return weight if weight.shape[1] == dim else weight[:, :dim]  # (V, dim)

    def _embed(self, table: Tensor, tokens: Tensor, offset: int | Tensor = 0) -> Tensor:
        dim = table.shape[1]
        x = F.embedding(tokens, table) * math.sqrt(dim)  # (B, T, dim)
        x = x + sinusoidal_positions(tokens.shape[1], dim, offset, tokens.device).to(x.dtype)
        return dropout(x, self.dropout, self.training)

    def encode(self, src_tokens: Tensor) -> EncoderOut:
        """Encode (B, S) source tokens; keeps the normalised outputs the decoder may attend to."""
        key_mask = (src_tokens != self.pad_id)[:, None, None, :]  # (B, 1, 1, S)
        x = self._embed(self.table("encoder"), src_tokens)
        keep = max(self.arch.decoder_ende_layers)
        states = []
        for i, layer in enumerate(self.encoder_layers):
            x = layer(x, key_mask)
            if i >= len(self.encoder_layers) - keep:
                states.append(self.encoder_norm(x))
        return EncoderOut(states=states, key_mask=key_mask)

    # ------------------------------------------------------------------ decoder
    def start_decoder(self, encoder_out: EncoderOut) -> DecoderState:
        """Project every decoder layer's cross-attention keys/values once."""
        cross_kv, cross_masks = [], []
        for layer, depth in zip(self.decoder_layers, self.arch.decoder_ende_layers):
            memory = torch.cat(encoder_out.states[-depth:], dim=1)  # (B, depth*S, E_enc)
            cross_kv.append(layer.cross_attn.project_kv(memory))
            cross_masks.append(torch.cat([encoder_out.key_mask] * depth, dim=-1))
        return DecoderState(cross_kv, cross_masks, [None] * len(self.decoder_layers))

    def decode(self, prev_tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Logits (B, T, V) for `prev_tokens` (B, T) continuing `state`, and the grown state.

        From a fresh state the T tokens are decoded in parallel (teacher forcing); from a state
        with a cache, T new tokens continue it (T = 1 per step in incremental decoding).
        """
        table = self.table("decoder")  # (V, E_dec): input embedding and output projection
        x = self._embed(table, prev_tokens, offset=state.step)
        new_self_kv = []
        for i, layer in enumerate(self.decoder_layers):
            x, kv = layer(x, state.cross_kv[i], state.cross_masks[i], state.self_kv[i])
            new_self_kv.append(kv)
        logits = F.linear(self.decoder_norm(x), table)  # (B, T, V)
        grown = DecoderState(
            state.cross_kv, state.cross_masks, new_self_kv, state.step + prev_tokens.shape[1]
        )
        return logits, grown

    def forward(self, src_tokens: Tensor, prev_output_tokens: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V)."""
        state = self.start_decoder(self.encode(src_tokens))
        return self.decode(prev_output_tokens, state)[0]


def embedding_parameters(
    arch: Arch, vocab_size: int, share_embeddings: str = SHARE_EMBEDDINGS_DEFAULT
) -> int:
    """Parameters of the token-embedding tables (the output projection is one of them):
    V * max(E_enc, E_dec) shared "all", V * (E_enc + E_dec) with a separate source table."""
    enc, dec = arch.encoder_embed_dim, arch.decoder_embed_dim
    return vocab_size * (max(enc, dec) if share_embeddings == "all" else enc + dec)


def count_parameters(
    arch: Arch, vocab_size: int, qkv_dim: int, share_embeddings: str = SHARE_EMBEDDINGS_DEFAULT
) -> int:
    """Exact parameter count of the standalone model of `arch` (embeddings included; pass the
    space's `share_embeddings`, the default being what a space without the setting means)."""

    def linear(i: int, o: int) -> int:
        return i * o + o

    def attention(e: int, src: int) -> int:
        return linear(e, qkv_dim) + 2 * linear(src, qkv_dim) + linear(qkv_dim, e)

    enc, dec = arch.encoder_embed_dim, arch.decoder_embed_dim
    total = embedding_parameters(arch, vocab_size, share_embeddings) + 2 * enc + 2 * dec  # + norms
    for ffn in arch.encoder_ffn_dims:
        total += attention(enc, enc) + linear(enc, ffn) + linear(ffn, enc) + 2 * 2 * enc
    for ffn in arch.decoder_ffn_dims:
        total += attention(dec, dec) + attention(dec, enc) + linear(dec, ffn) + linear(ffn, dec)
        total += 3 * 2 * dec
    return total


def parameter_bytes(
    arch: Arch,
    vocab_size: int,
    qkv_dim: int,
    bytes_per_value: int = 4,
    share_embeddings: str = SHARE_EMBEDDINGS_DEFAULT,
) -> int:
    """Exact bytes of the standalone model's parameters (4 per value in fp32, 2 in fp16)."""
    return count_parameters(arch, vocab_size, qkv_dim, share_embeddings) * bytes_per_value
