"""ONNX export: a translation model as encoder + decoder-step graphs; a BERT model as one encoder.

Graph contract (what `devices` runs; names are fixed, L = decoder layers):
    encoder:       src_tokens (B, S) int64
                -> key_mask (B, 1, 1, S) bool, cross_k_i, cross_v_i (B, H_i, d_i*S, Dh_i) for i < L
    decoder_step:  tokens (B, 1) int64, key_mask, cross_k_i, cross_v_i, past_k_i, past_v_i
                   (B, H_i, t, Dh_i), t = tokens decoded so far (0 at the first step)
                -> logits (B, V), present_k_i, present_v_i (B, H_i, t+1, Dh_i)
Cross-attention keys/values are computed once by the encoder graph; the decoder step grows the
self-attention cache by one position and takes its position from the cache length.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mos_search.models.transformer import DecoderState, TranslationTransformer

OPSET = 17


def _pairs(flat: tuple[Tensor, ...]) -> list[tuple[Tensor, Tensor]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _flat(pairs: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, ...]:
    return tuple(t for pair in pairs for t in pair)


class EncoderGraph(nn.Module):
    """src_tokens -> key_mask, then every decoder layer's cross-attention keys and values."""

    def __init__(self, model: TranslationTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_tokens: Tensor) -> tuple[Tensor, ...]:
        """See the module docstring for the outputs."""
        encoded = self.model.encode(src_tokens)
        state = self.model.start_decoder(encoded)
        return (encoded.key_mask, *_flat(state.cross_kv))


class DecoderStepGraph(nn.Module):
    """One incremental decoder step over the caches (see the module docstring)."""

    def __init__(self, model: TranslationTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, key_mask: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
        """Logits of the next token and the grown self-attention caches."""
        layers = len(self.model.decoder_layers)
        cross, past = _pairs(caches[: 2 * layers]), _pairs(caches[2 * layers :])
        masks = [torch.cat([key_mask] * d, dim=-1) for d in self.model.arch.decoder_ende_layers]
        state = DecoderState(cross, masks, list(past), step=past[0][0].shape[2])
        logits, grown = self.model.decode(tokens, state)
        return (logits[:, -1], *_flat(grown.self_kv))


@dataclass(frozen=True)
class GraphShapes:
    """Sizes the graph contract leaves to the model: heads and head size per decoder layer."""

    vocab_size: int
    self_heads: tuple[int, ...]
    self_head_dims: tuple[int, ...]

    @classmethod
    def of(cls, model: TranslationTransformer) -> GraphShapes:
        """Read them off a model."""
        heads = model.arch.decoder_self_heads
        return cls(model.vocab_size, tuple(heads), tuple(model.qkv_dim // h for h in heads))

    @property
    def past_shapes(self) -> list[tuple[int, int]]:
        """(heads, head size) of each decoder layer's self-attention cache."""
        return list(zip(self.self_heads, self.self_head_dims))


def input_names(layers: int) -> tuple[list[str], list[str]]:
    """Input names of the encoder and decoder-step graphs."""
    caches = [
        f"{kind}_{p}_{i}" for kind in ("cross", "past") for i in range(layers) for p in ("k", "v")
    ]
    return ["src_tokens"], ["tokens", "key_mask", *caches]


def output_names(layers: int) -> tuple[list[str], list[str]]:
    """Output names of the encoder and decoder-step graphs."""
    cross = [f"cross_{p}_{i}" for i in range(layers) for p in ("k", "v")]
    present = [f"present_{p}_{i}" for i in range(layers) for p in ("k", "v")]
    return ["key_mask", *cross], ["logits", *present]


def example_inputs(
    model: TranslationTransformer, batch: int = 2, source_len: int = 7, past_len: int = 3
) -> tuple[tuple[Tensor], tuple[Tensor, ...]]:
    """Inputs to trace the two graphs with (dynamic sizes differ from each other on purpose)."""
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, model.vocab_size, (batch, source_len), generator=g)
    with torch.no_grad():
        enc_out = EncoderGraph(model)(src)
    shapes = GraphShapes.of(model)
    past = []
    for heads, dim in zip(shapes.self_heads, shapes.self_head_dims):
        past += [torch.randn(batch, heads, past_len, dim, generator=g) for _ in range(2)]
    tokens = torch.randint(4, model.vocab_size, (batch, 1), generator=g)
    return (src,), (tokens, *enc_out, *past)


def export_onnx(model: TranslationTransformer, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `encoder.onnx` and `decoder_step.onnx` (TorchScript exporter: ~0.2 s per graph)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    layers = len(model.decoder_layers)
    enc_in, dec_in = input_names(layers)
    enc_out, dec_out = output_names(layers)
    enc_args, dec_args = example_inputs(model)
    axes_enc = {"src_tokens": {0: "batch", 1: "source"}, "key_mask": {0: "batch", 3: "source"}}
    axes_dec = {
        "tokens": {0: "batch"},
        "key_mask": {0: "batch", 3: "source"},
        "logits": {0: "batch"},
    }
    for name in enc_out[1:]:  # cross_{k,v}_i: layer i attends to d_i * S encoder positions
        layer = name.rsplit("_", 1)[1]
        axes_enc[name] = axes_dec[name] = {0: "batch", 2: f"memory_{layer}"}
    for name in dec_in[2 + 2 * layers :]:
        axes_dec[name] = {0: "batch", 2: "past"}
    for name in dec_out[1:]:
        axes_dec[name] = {0: "batch", 2: "present"}
    paths = out_dir / "encoder.onnx", out_dir / "decoder_step.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        # Graphs in eval mode: the exporter restores the wrapper's mode onto the model afterwards.
        graphs = (
            (EncoderGraph(model), enc_args, enc_in, enc_out, axes_enc),
            (DecoderStepGraph(model), dec_args, dec_in, dec_out, axes_dec),
        )
        for path, (graph, args, inputs, outputs, axes) in zip(paths, graphs):
            torch.onnx.export(
                graph.eval(),
                args,
                str(path),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    return paths


def export_bert_onnx(model: nn.Module, out_dir: str | Path) -> Path:
    """Write `encoder.onnx` of a BERT `MaskedLM`: tokens (B, S) int64 -> states (B, S, E).

    The deployed encoder has no masked-LM head (a downstream task puts its own on the states).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder.eval()
    tokens = torch.randint(
        5, encoder.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0)
    )
    path = out_dir / "encoder.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder,
            (tokens,),
            str(path),
            input_names=["tokens"],
            output_names=["states"],
            dynamic_axes={"tokens": {0: "batch", 1: "length"}, "states": {0: "batch", 1: "length"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path
