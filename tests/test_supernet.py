"""Supernet: extraction parity, true sizes, MoS weight generation and gradients."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mos_search import Supernet, SupernetConfig, count_parameters
from mos_search.arch import Arch
from mos_search.errors import ConfigError

VOCAB = 97


def tokens(batch: int, length: int, seed: int, pad_tail: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.randint(3, VOCAB, (batch, length), generator=g)
    if pad_tail and batch > 1:
        out[0, length // 2 :] = 0  # a shorter, right-padded sentence
    return out


def archs_of(space, n: int) -> list[Arch]:
    rng = random.Random(1234)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]


def independent_count(arch: Arch, vocab: int, q: int, share: str = "decoder") -> int:
    """Parameters counted by hand, layer by layer, without the library formula; `share`:
    "all" is one table as wide as the wider stack, "decoder" a table per stack."""
    e, d = arch.encoder_embed_dim, arch.decoder_embed_dim
    n = vocab * max(e, d) if share == "all" else vocab * e + vocab * d
    n += 2 * e + 2 * d  # final norms
    for f in arch.encoder_ffn_dims:
        n += (e * q + q) * 3 + (q * e + e)  # q, k, v, out
        n += (e * f + f) + (f * e + e) + 4 * e  # fc1, fc2, two norms
    for f in arch.decoder_ffn_dims:
        n += (d * q + q) * 3 + (q * d + d)  # self-attention
        n += (d * q + q) + (e * q + q) * 2 + (q * d + d)  # cross-attention (keys from encoder)
        n += (d * f + f) + (f * d + d) + 6 * d  # fc1, fc2, three norms
    return n


def test_extraction_parity_many_archs(supernet):
    space = supernet.config.space
    src, prev = tokens(3, 11, 0), tokens(3, 9, 1, pad_tail=False)
    for arch in archs_of(space, 12):
        with torch.no_grad():
            expected = supernet(src, prev, arch)
        sub = supernet.extract(arch)
        assert not any("router" in name for name, _ in sub.named_parameters())
        got = sub(src, prev)
        assert got.shape == (3, 9, VOCAB)
        assert torch.equal(got, expected), (got - expected).abs().max()  # README: max diff 0.0


def test_extracted_size_is_the_arch_size(supernet):
    space = supernet.config.space
    for arch in archs_of(space, 6):
        sub = supernet.extract(arch)
        n = sum(p.numel() for p in sub.parameters())
        assert n == independent_count(arch, VOCAB, space.qkv_dim, space.share_embeddings)
        assert n == count_parameters(arch, VOCAB, space.qkv_dim, space.share_embeddings)


@pytest.mark.parametrize("share", ["all", "decoder"])
def test_hat_space_sizes_by_formula(hat_space, share):
    for arch in (hat_space.largest(), hat_space.smallest()):
        counted = count_parameters(arch, 32000, 512, share)
        assert counted == independent_count(arch, 32000, 512, share)
    assert hat_space.share_embeddings == "all"  # as HAT trains: one table


def test_extracted_model_stands_alone(supernet):
    arch = supernet.config.space.sample(random.Random(5))
    sub = supernet.extract(arch)
    src, prev = tokens(2, 7, 3), tokens(2, 5, 4)
    before = sub(src, prev)
    clone = Supernet(supernet.config)
    clone.load_state_dict(supernet.state_dict())
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)  # the extracted weights are copies: changing a supernet changes nothing
    assert torch.equal(sub(src, prev), before)


def test_padding_does_not_leak(supernet):
    arch = supernet.config.space.sample(random.Random(9))
    sub = supernet.extract(arch)
    src = tokens(1, 6, 10, pad_tail=False)
    padded = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    prev = tokens(1, 5, 11, pad_tail=False)
    assert torch.allclose(sub(src, prev), sub(padded, prev), atol=1e-5)


def test_incremental_decoding_matches_teacher_forcing(supernet):
    arch = supernet.config.space.largest()
    sub = supernet.extract(arch)
    src, prev = tokens(2, 8, 12), tokens(2, 6, 13, pad_tail=False)
    full = sub(src, prev)
    state = sub.start_decoder(sub.encode(src))
    steps = []
    for t in range(prev.shape[1]):
        logits, state = sub.decode(prev[:, t : t + 1], state)
        steps.append(logits)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def ffn_weight(net: Supernet, arch: Arch) -> torch.Tensor:
    return net.materialize(arch)["encoder_layers.0.ffn.fc1.weight"]


def test_router_sees_the_whole_arch(supernet):
    space = supernet.config.space
    a = space.largest()
    b = Arch(**{**a.to_dict(), "decoder_self_heads": [2] * a.decoder_layers})  # FFN dims unchanged
    same = torch.equal(ffn_weight(supernet, a), ffn_weight(supernet, b))
    assert same == (supernet.config.mode == "shared")


def softmax_of(logits: list[float]) -> list[float]:
    """softmax in plain Python: the expected mix computed without the library's tensor code."""
    top = max(logits)
    z = [math.exp(v - top) for v in logits]
    return [v / sum(z) for v in z]


@pytest.mark.parametrize("mode", ["layer", "neuron"])
def test_generated_weight_and_bias_are_the_routed_mix(cpu_space, mode):
    """Output neuron i of the materialised fc1 is sum_k alpha[i, k] * bank_k[i, :in] (bias:
    sum_k alpha[i, k] * bias_k[i]), with alpha the softmax of the router's logits for row i
    (neuron-wise; the one row for layer-wise), read from its last Linear's flat (rows * m)
    output row-major (`Router`: (rows, m)), neuron by neuron in a Python loop."""
    m = 3
    torch.manual_seed(1)
    net = Supernet(SupernetConfig(space=cpu_space, mode=mode, vocab_size=VOCAB, experts=m)).eval()
    arch = cpu_space.sample(random.Random(2))
    e, f = arch.encoder_embed_dim, arch.encoder_ffn_dims[0]
    assert (e, f) == (128, 256) and f < cpu_space.largest().encoder_ffn_dims[0]  # a slice
    fc1 = net.encoder_layers[0].ffn.fc1
    with torch.no_grad():
        fc1.router.net[-1].weight.mul_(20.0)  # mixes far from uniform: a wrong one shows
        flat = fc1.router.net(net.arch_features(arch)).tolist()  # rows * m logits
        params = net.materialize(arch)
    name = "encoder_layers.0.ffn.fc1"
    weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
    assert weight.shape == (f, e) and bias.shape == (f,)
    assert len(flat) == (cpu_space.largest().encoder_ffn_dims[0] if mode == "neuron" else 1) * m
    mixes = []
    for i in range(f):
        row = i if mode == "neuron" else 0
        alpha = softmax_of(flat[row * m : (row + 1) * m])
        mixes.append(alpha)
        expected_weight = sum(alpha[k] * fc1.weight[k, i, :e] for k in range(m))
        expected_bias = sum(alpha[k] * fc1.bias[k, i].item() for k in range(m))
        assert torch.allclose(weight[i], expected_weight, rtol=0, atol=1e-6), i
        assert bias[i].item() == pytest.approx(expected_bias, abs=1e-6), i
    assert max(max(alpha) for alpha in mixes) > 0.8  # far from the uniform mix (1/3 each)
    if mode == "neuron":  # a mix per neuron: a layout that mixed one row for all would show
        assert len({tuple(round(a, 6) for a in alpha) for alpha in mixes}) > 0.9 * f


def test_shared_mode_uses_the_leading_slice(cpu_space):
    net = Supernet(SupernetConfig(space=cpu_space, mode="shared", vocab_size=VOCAB))
    arch = cpu_space.smallest()
    fc1 = net.encoder_layers[0].ffn.fc1.weight[0]
    assert torch.equal(ffn_weight(net, arch), fc1[:256, :128])


@pytest.mark.parametrize("mode", ["layer", "neuron"])
def test_gradients_reach_every_expert_and_router(cpu_space, mode):
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(space=cpu_space, mode=mode, vocab_size=VOCAB, router_dropout=0.0))
    arch = cpu_space.largest()
    loss = net(tokens(2, 6, 0), tokens(2, 5, 1), arch).logsumexp(-1).mean()
    loss.backward()
    experts = [m for m in net.modules() if getattr(m, "router", None) is not None]
    assert len(experts) == 2 * (3 + 3)  # fc1 and fc2 of every layer
    for layer in experts:
        for bank in layer.weight.grad:
            assert bank.abs().sum() > 0
        for p in layer.router.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_mos_on_attention_option(cpu_space):
    net = Supernet(
        SupernetConfig(
            space=cpu_space, mode="layer", vocab_size=VOCAB, mos_attention=True, experts=4
        )
    )
    routed = [m for m in net.modules() if getattr(m, "router", None) is not None]
    assert len(routed) == 3 * (4 + 2) + 3 * (8 + 2)  # attention projections + FFN per layer
    assert routed[0].weight.shape[0] == 4
    arch = cpu_space.sample(random.Random(0))
    src, prev = tokens(2, 6, 0), tokens(2, 4, 1)
    net.eval()
    assert (net.extract(arch)(src, prev) - net(src, prev, arch)).abs().max() <= 1e-5


def test_same_seed_same_supernet(cpu_space):
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        net = Supernet(SupernetConfig(space=cpu_space, mode="neuron", vocab_size=VOCAB)).eval()
        outs.append(net(tokens(2, 5, 0), tokens(2, 4, 1), cpu_space.largest()))
    assert torch.equal(*outs)


def test_config_round_trip_and_errors(cpu_space):
    cfg = SupernetConfig(space=cpu_space, mode="neuron", vocab_size=VOCAB, experts=3)
    again = SupernetConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match="mode: expected one of shared, layer, neuron"):
        SupernetConfig(space=cpu_space, mode="token", vocab_size=VOCAB)
    with pytest.raises(ConfigError, match=r"experts: expected 2\.\.4, found 5"):
        SupernetConfig(space=cpu_space, mode="layer", vocab_size=VOCAB, experts=5)
    with pytest.raises(ConfigError, match="dropout"):
        SupernetConfig(space=cpu_space, vocab_size=VOCAB, dropout=1.5)
    with pytest.raises(ConfigError, match=r"supernet config: unknown key\(s\): colour"):
        SupernetConfig.from_dict({**cfg.to_dict(), "colour": "red"})


def test_unknown_routing_is_an_error():
    from mos_search.models.supernet.layers import ExpertLinear

    assert ExpertLinear(8, 4, 2, "neuron", num_features=3).router is not None
    with pytest.raises(ConfigError, match=r"routing: expected one of layer, neuron .*'token'"):
        ExpertLinear(8, 4, 2, "token", num_features=3)


def test_arch_outside_space_is_rejected(supernet):
    arch = Arch(**{**supernet.config.space.largest().to_dict(), "encoder_embed_dim": 512})
    with pytest.raises(ValueError, match="encoder_embed_dim = 512"):
        supernet.extract(arch)


def test_scale_dropout_follows_width(cpu_space):
    net = Supernet(
        SupernetConfig(space=cpu_space, vocab_size=VOCAB, dropout=0.3, scale_dropout=True)
    )
    assert net._skeleton(cpu_space.largest()).dropout == pytest.approx(0.3)
    assert net._skeleton(cpu_space.smallest()).dropout == pytest.approx(0.3 * 128 / 256)
    plain = Supernet(SupernetConfig(space=cpu_space, vocab_size=VOCAB, dropout=0.3))
    assert plain._skeleton(cpu_space.smallest()).dropout == pytest.approx(0.3)


def test_cached_decoding_of_several_tokens_is_causal(supernet):
    sub = supernet.extract(supernet.config.space.largest())
    src, prev = tokens(2, 8, 12), tokens(2, 6, 13, pad_tail=False)
    full = sub(src, prev)
    state = sub.start_decoder(sub.encode(src))
    first, state = sub.decode(prev[:, :2], state)  # two tokens, then four at once
    rest, _ = sub.decode(prev[:, 2:], state)
    assert torch.allclose(torch.cat([first, rest], dim=1), full, atol=1e-5)


def test_extract_ignores_router_dropout(cpu_space):
    net = Supernet(
        SupernetConfig(space=cpu_space, mode="neuron", vocab_size=VOCAB, router_dropout=0.5)
    ).train()
    arch = cpu_space.sample(random.Random(0))
    a = net.extract(arch).state_dict()
    b = net.extract(arch).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and net.training
