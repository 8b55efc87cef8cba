"""Embedding sharing: HAT's parameter counts, one shared table through supernet, extraction and
ONNX Runtime, and spaces and checkpoints written before `share_embeddings` existed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mos_search import Supernet, SupernetConfig, count_parameters, load_space
from mos_search.arch import Arch
from mos_search.errors import ConfigError
from mos_search.models.transformer import TranslationTransformer, embedding_parameters
from mos_search.space import space_from_dict

HAT_VOCAB = 32768  # configs/wmt14.en-de/preprocess.sh: --nwordssrc 32768 --joined-dictionary
HAT_QKV = 512  # configs/wmt14.en-de/supertransformer/space0.yml: qkv-dim


def hat_config(name: str, enc: int, *per_layer: list[int]) -> tuple[str, dict]:
    """One of HAT's published SubTransformers (configs/wmt14.en-de/subtransformer/NAME.yml),
    in HAT's own keys, from: encoder FFN dims, encoder heads, decoder FFN dims, decoder self-
    and cross-attention heads, and HAT's arbitrary attention (-1 = last layer, k = last k+1)."""
    enc_ffn, enc_heads, dec_ffn, dec_self, dec_cross, ende = per_layer
    return name, {
        "encoder-embed-dim-subtransformer": enc,
        "decoder-embed-dim-subtransformer": enc,
        "encoder-layer-num-subtransformer": len(enc_ffn),
        "decoder-layer-num-subtransformer": len(dec_ffn),
        "encoder-ffn-embed-dim-all-subtransformer": enc_ffn,
        "decoder-ffn-embed-dim-all-subtransformer": dec_ffn,
        "encoder-self-attention-heads-all-subtransformer": enc_heads,
        "decoder-self-attention-heads-all-subtransformer": dec_self,
        "decoder-ende-attention-heads-all-subtransformer": dec_cross,
        "decoder-arbitrary-ende-attn-all-subtransformer": ende,
    }


# fmt: off
# (config, HAT's README "#Params (M)", which leaves out the embedding table)
HAT_MODELS = [
    (
        hat_config(
            "HAT_wmt14ende_raspberrypi@3.5s_bleu@25.8", 512,
            [1024, 3072, 3072, 2048, 2048, 2048], [4, 8, 4, 4, 4, 8],
            [3072], [8], [8], [-1],
        ),
        25.22,
    ),
    (
        hat_config(
            "HAT_wmt14ende_raspberrypi@4.0s_bleu@26.9", 512,
            [3072, 2048, 3072, 2048, 3072, 2048], [8, 8, 8, 4, 8, 8],
            [1024, 2048], [4, 4], [8, 8], [-1, -1],
        ),
        29.42,
    ),
    (
        hat_config(
            "HAT_wmt14ende_raspberrypi@5.0s_bleu@27.8", 512,
            [3072, 3072, 3072, 2048, 3072, 3072], [8, 8, 8, 8, 8, 4],
            [1024, 2048, 3072], [4, 8, 8], [4, 8, 8], [-1, 1, -1],
        ),
        36.77,
    ),
    (
        hat_config(
            "HAT_wmt14ende_raspberrypi@6.9s_bleu@28.4", 512,
            [3072] * 6, [8, 4, 8, 8, 8, 8],
            [2048, 2048, 3072, 3072, 2048], [8, 8, 8, 4, 8], [4, 8, 8, 8, 8], [-1, 1, 1, 1, -1],
        ),
        48.33,
    ),
    (
        hat_config(
            "HAT_wmt14ende_titanxp@146.7ms_bleu@28.1", 640,
            [3072] * 6, [4, 8, 8, 8, 4, 4],
            [3072, 3072, 3072], [8, 8, 8], [4, 8, 8], [-1, 1, 1],
        ),
        51.20,
    ),
    (
        hat_config(
            "HAT_wmt14ende_xeon@450.9ms_bleu@28.5", 512,
            [3072] * 6, [4, 4, 8, 8, 8, 4],
            [3072] * 6, [8, 8, 8, 4, 4, 4], [4, 8, 8, 8, 8, 8], [-1, 1, 1, 1, -1, -1],
        ),
        56.73,
    ),
]
# fmt: on


def hat_layer_parameters(cfg: dict, qkv: int = HAT_QKV) -> int:
    """HAT's `TransformerSuperModel.get_sampled_params_numel` (fairseq/models/transformer_super.py
    in mit-han-lab/hardware-aware-transformers), written out: the `calc_sampled_param_num` of
    every LinearSuper (weight + bias), LayerNormSuper (scale + shift) and MultiheadAttentionSuper
    (q, k, v weights + the 3*qkv in-projection bias; its out_proj is a LinearSuper) of the active
    layers. EmbeddingSuper has no such method: the table is not counted, and HAT's post-norm
    WMT models have no final LayerNorm."""
    e = cfg["encoder-embed-dim-subtransformer"]
    d = cfg["decoder-embed-dim-subtransformer"]

    def attention(q_in: int, kv_in: int) -> int:
        return q_in * qkv + 2 * kv_in * qkv + 3 * qkv + (qkv * q_in + q_in)

    def ffn(width: int, hidden: int) -> int:
        return (width * hidden + hidden) + (hidden * width + width)

    n_enc = cfg["encoder-layer-num-subtransformer"]
    n_dec = cfg["decoder-layer-num-subtransformer"]
    total = sum(
        attention(e, e) + ffn(e, f) + 2 * 2 * e
        for f in cfg["encoder-ffn-embed-dim-all-subtransformer"][:n_enc]
    )
    total += sum(
        attention(d, d) + attention(d, e) + ffn(d, f) + 3 * 2 * d
        for f in cfg["decoder-ffn-embed-dim-all-subtransformer"][:n_dec]
    )
    return total


def hat_parameters(cfg: dict, vocab: int = HAT_VOCAB) -> int:
    """HAT's full size: the layers plus the one shared table, which HAT's train.py reports as
    `decoder_embed_dim_subtransformer * len(task.tgt_dict)` ("Embedding layer size")."""
    return hat_layer_parameters(cfg) + cfg["decoder-embed-dim-subtransformer"] * vocab


def arch_of(cfg: dict) -> Arch:
    """Our `Arch` of a HAT config (HAT's ende -1/1/2 are our 1/2/3 last encoder layers)."""
    ende = cfg["decoder-arbitrary-ende-attn-all-subtransformer"]
    return Arch(
        encoder_embed_dim=cfg["encoder-embed-dim-subtransformer"],
        encoder_layers=cfg["encoder-layer-num-subtransformer"],
        encoder_ffn_dims=cfg["encoder-ffn-embed-dim-all-subtransformer"],
        encoder_heads=cfg["encoder-self-attention-heads-all-subtransformer"],
        decoder_embed_dim=cfg["decoder-embed-dim-subtransformer"],
        decoder_layers=cfg["decoder-layer-num-subtransformer"],
        decoder_ffn_dims=cfg["decoder-ffn-embed-dim-all-subtransformer"],
        decoder_self_heads=cfg["decoder-self-attention-heads-all-subtransformer"],
        decoder_cross_heads=cfg["decoder-ende-attention-heads-all-subtransformer"],
        decoder_ende_layers=[1 if k == -1 else k + 1 for k in ende],
    )


@pytest.mark.parametrize(("named", "readme_m"), HAT_MODELS, ids=[m[0][0] for m in HAT_MODELS])
def test_our_count_is_hats_plus_the_final_layer_norms(hat_space, named, readme_m):
    """Ours minus HAT's is exactly the final LayerNorm of our pre-norm encoder and decoder
    (2 * (E_enc + E_dec)): HAT's WMT models are post-norm, without one."""
    _, cfg = named
    arch = hat_space.validate(arch_of(cfg))
    ours = count_parameters(arch, HAT_VOCAB, HAT_QKV, hat_space.share_embeddings)
    final_norms = 2 * (arch.encoder_embed_dim + arch.decoder_embed_dim)
    assert ours - hat_parameters(cfg) == final_norms
    assert round(hat_layer_parameters(cfg) / 1e6, 2) == readme_m  # HAT's README, no table
    assert hat_space.share_embeddings == "all"


def test_hat_raspberry_pi_model_is_42_million(hat_space):
    """HAT's 3.5 s Raspberry Pi model: 42.0 M with its one table (58.8 M with two tables)."""
    (_, cfg), _ = HAT_MODELS[0]
    arch = arch_of(cfg)
    ours = count_parameters(arch, HAT_VOCAB, HAT_QKV, "all")
    assert (hat_parameters(cfg), ours) == (41_994_752, 41_996_800)
    assert round(ours / 1e6, 1) == 42.0
    assert round(count_parameters(arch, HAT_VOCAB, HAT_QKV, "decoder") / 1e6, 1) == 58.8


def test_table_sizes_by_mode():
    arch = load_space("cpu-small").smallest()
    wide = Arch(**{**arch.to_dict(), "decoder_embed_dim": 192})
    assert embedding_parameters(wide, 10, "all") == 10 * 192
    assert embedding_parameters(wide, 10, "decoder") == 10 * (128 + 192)
    with pytest.raises(ConfigError, match=r"share_embeddings: expected one of all, decoder"):
        TranslationTransformer(arch, 10, 256, share_embeddings="source")


# ---------------------------------------------------------------- supernet and extraction
VOCAB = 53


def space_with(share: str | None):
    """cpu-tiny with the given `share_embeddings` (None: the key left out, as before it)."""
    data = load_space("cpu-tiny").to_dict()
    data.pop("share_embeddings", None)
    return space_from_dict(data if share is None else {**data, "share_embeddings": share})


def mixed_width_archs(space) -> list[Arch]:
    """Members whose encoder is narrower, wider and as wide as the decoder."""
    base = space.sample(random.Random(0))
    return [
        Arch(**{**base.to_dict(), "encoder_embed_dim": e, "decoder_embed_dim": d})
        for e, d in ((64, 128), (128, 96), (96, 96))
    ]


def tokens(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(4, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["shared", "neuron"])
def test_one_table_sliced_per_stack(mode):
    torch.manual_seed(0)
    space = space_with("all")
    net = Supernet(SupernetConfig(space=space, mode=mode, vocab_size=VOCAB)).eval()
    tables = [name for name, _ in net.named_parameters() if "embed" in name]
    assert tables == ["embed.weight"] and net.embed.weight.shape == (VOCAB, 128)
    src, prev = tokens(2, 7, 1), tokens(2, 5, 2)
    for arch in mixed_width_archs(space):
        sub = net.extract(arch)
        width = max(arch.encoder_embed_dim, arch.decoder_embed_dim)
        assert [n for n, _ in sub.named_parameters() if "embed" in n] == ["embed.weight"]
        assert torch.equal(sub.embed.weight, net.embed.weight[:, :width])
        assert torch.equal(sub.table("encoder"), net.embed.weight[:, : arch.encoder_embed_dim])
        assert torch.equal(sub.table("decoder"), net.embed.weight[:, : arch.decoder_embed_dim])
        n = sum(p.numel() for p in sub.parameters())
        assert n == count_parameters(arch, VOCAB, space.qkv_dim, "all")
        with torch.no_grad():
            assert (sub(src, prev) - net(src, prev, arch)).abs().max() <= 1e-5


def test_onnx_runtime_runs_the_shared_table(tmp_path):
    """Differential: supernet vs extracted model vs ONNX Runtime, encoder narrower than the
    decoder; each graph holds the table it needs (the encoder's a (V, E_enc) slice)."""
    import onnx
    import onnxruntime as ort

    from mos_search.models.onnx import export_onnx, input_names

    torch.manual_seed(0)
    space = space_with("all")
    net = Supernet(SupernetConfig(space=space, mode="neuron", vocab_size=VOCAB)).eval()
    arch = mixed_width_archs(space)[0]
    sub = net.extract(arch)
    enc_path, dec_path = export_onnx(sub, tmp_path)
    tables = [list(t.dims) for t in onnx.load(str(enc_path)).graph.initializer if VOCAB in t.dims]
    assert tables == [[VOCAB, arch.encoder_embed_dim]]
    src, prev = tokens(2, 7, 5), tokens(2, 4, 6)
    with torch.no_grad():
        want = net(src, prev, arch).numpy()  # (B, T, V)
    run = dict(providers=["CPUExecutionProvider"])
    encoder = ort.InferenceSession(str(enc_path), **run)
    decoder = ort.InferenceSession(str(dec_path), **run)
    key_mask, *cross = encoder.run(None, {"src_tokens": src.numpy()})
    qkv, layers = space.qkv_dim, arch.decoder_layers
    past = []
    for heads in arch.decoder_self_heads:
        past += [np.zeros((2, heads, 0, qkv // heads), np.float32)] * 2
    names = input_names(layers)[1]
    for t in range(prev.shape[1]):
        feed = dict(zip(names, [prev[:, t : t + 1].numpy(), key_mask, *cross, *past]))
        logits, *past = decoder.run(None, feed)
        assert np.abs(logits - want[:, t]).max() < 1e-4


# ---------------------------------------------------------------- before the setting existed
def test_a_space_without_the_setting_is_decoder_and_keeps_its_digest():
    old, explicit, shared = space_with(None), space_with("decoder"), space_with("all")
    assert "share_embeddings" not in old.to_dict() and old.share_embeddings == "decoder"
    assert old.digest == explicit.digest == shared.digest  # predictors trained before still fit
    net = Supernet(SupernetConfig(space=old, vocab_size=VOCAB))
    names = [name for name, _ in net.named_parameters() if "embed" in name]
    assert names == ["src_embed.weight", "tgt_embed.weight"]
    arch = old.largest()
    sub = net.extract(arch)
    assert sum(p.numel() for p in sub.parameters()) == count_parameters(arch, VOCAB, 128)


@pytest.mark.parametrize("share", [None, "all"])
def test_checkpoints_load_with_their_tables(tmp_path, share):
    """A supernet and a standalone checkpoint whose space has no `share_embeddings` (written
    before it existed: two tables) load as "decoder"; "all" round-trips with one table."""
    from mos_search.models.build import (
        load_model,
        standalone_model,
        standalone_spec,
        supernet_spec,
    )
    from mos_search.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    space = space_with(share)
    config = SupernetConfig(space=space, vocab_size=VOCAB)
    arch = mixed_width_archs(space)[1]
    alone = standalone_model(space, arch, VOCAB)
    for name, model, spec in (
        ("super", Supernet(config), supernet_spec(config)),
        ("alone", alone, standalone_spec(space, arch, VOCAB, 0.1)),
    ):
        if share is None:  # as written before the setting: no key anywhere in the state
            assert "share_embeddings" not in str(spec)
        save_checkpoint(tmp_path / name, 1, model, {"model": spec})
        loaded = load_model(tmp_path / name)
        assert loaded.space.share_embeddings == (share or "decoder")
        sub = loaded.sub_network(arch)
        assert sub.share_embeddings == (share or "decoder")
        expected = model.extract(arch) if name == "super" else model
        got, want = sub.state_dict(), expected.state_dict()
        assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in got)
