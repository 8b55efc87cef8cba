"""Router diagnostics (issue 20): routing entropy, distance between expert banks and the routers'
share of the gradient, against hand-computed values; logged by training in MoS modes only, and
drawn by `mos-search report` on a training run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from mos_search.cli import main
from mos_search.models.supernet.layers import ExpertLinear
from mos_search.training.diagnostics import bank_distance, router_grad_share, routing_entropy

from conftest import tiny_train_config


def layer(experts: int = 2, routing: str = "neuron") -> ExpertLinear:
    torch.manual_seed(0)
    return ExpertLinear(64, 32, experts, routing, num_features=4)


@pytest.mark.parametrize("routing", ["layer", "neuron"])
def test_entropy_is_one_for_uniform_and_near_zero_for_one_expert(routing):
    mixed = layer(3, routing)
    features = [torch.rand(4), torch.rand(4)]
    last = mixed.router.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()  # every logit equal: uniform mixing
    assert routing_entropy(mixed, features) == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        last.bias.copy_(torch.tensor([40.0, 0.0, 0.0]).repeat(last.bias.numel() // 3))
    assert routing_entropy(mixed, features) < 1e-6
    assert mixed.router.training  # read with dropout off, the mode restored


def test_entropy_of_a_known_mix():
    """m = 2 with mix (0.8, 0.2): H / log 2 = -(0.8 ln 0.8 + 0.2 ln 0.2) / ln 2 = 0.7219."""
    mixed = layer(2, "layer")
    last = mixed.router.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([math.log(0.8), math.log(0.2)]))
    assert routing_entropy(mixed, [torch.rand(4)]) == pytest.approx(0.72193, abs=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_entropy_is_read_with_router_dropout_off_and_the_mode_restored(training):
    mixed = layer(3, "neuron")
    dropout = next(m for m in mixed.router.modules() if isinstance(m, torch.nn.Dropout))
    dropout.p = 0.9  # in training mode this would change the mix from call to call
    with torch.no_grad():
        mixed.router.net[-1].weight.mul_(20)  # a mix far from uniform, set by the hidden units
    mixed.router.train(training)
    features = [torch.rand(4), torch.rand(4)]
    with torch.no_grad():
        mixed.router.eval()
        expected = 0.0
        for f in features:
            mix = mixed.router(f)
            expected += float(-(mix * mix.log()).sum(-1).mean()) / math.log(3) / 2
        mixed.router.train(training)
    assert 0.05 < expected < 0.95
    assert routing_entropy(mixed, features) == pytest.approx(expected, rel=1e-6)
    assert routing_entropy(mixed, features) == pytest.approx(expected, rel=1e-6)
    assert mixed.router.training is training and dropout.training is training


def test_bank_distance():
    mixed = layer(3)
    with torch.no_grad():
        mixed.weight[1] = mixed.weight[0]
        mixed.weight[2] = -mixed.weight[0]
    # pairs: (0,1) 0, (0,2) 2||W||, (1,2) 2||W||, over the mean norm ||W||: mean 4/3
    assert bank_distance(mixed) == pytest.approx(4 / 3, rel=1e-5)
    independent = ExpertLinear(256, 256, 2, "layer", num_features=4)
    assert bank_distance(independent) == pytest.approx(math.sqrt(2), rel=0.02)


def test_router_grad_share_is_the_routers_part_of_the_gradient_norm():
    mixed = layer(2)
    mixed.materialize(64, 32, torch.rand(4))["weight"].pow(2).sum().backward()
    router = sum(float(p.grad.pow(2).sum()) for p in mixed.router.parameters())
    total = sum(float(p.grad.pow(2).sum()) for p in mixed.parameters() if p.grad is not None)
    assert router_grad_share(mixed) == pytest.approx(math.sqrt(router / total), rel=1e-6)
    assert 0 < router_grad_share(mixed) < 1
    assert router_grad_share(ExpertLinear(4, 4)) is None  # weight sharing: no routers


@pytest.mark.parametrize("mode", ["shared", "layer", "neuron"])
def test_training_logs_them_and_report_draws_them(tiny_corpus, tmp_path, mode):
    from mos_search.training.train import train

    out = tmp_path / mode
    config = tiny_train_config(
        tiny_corpus.root, out, mode=mode, max_steps=4, log_every=2, valid_every=0
    )
    train(config, progress=False)
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in logged if "loss" in r]
    assert [r["step"] for r in logged] == [2, 4]
    for record in logged:
        if mode == "shared":
            assert "router_entropy" not in record and "router_grad_share" not in record
            continue
        assert set(record["router_entropy"]) == set(record["bank_distance"])
        assert all(".ffn.fc" in name for name in record["router_entropy"])
        assert all(0 < v <= 1 for v in record["router_entropy"].values())
        assert all(v > 0 for v in record["bank_distance"].values())
        assert 0 < record["router_grad_share"] < 1
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report" / "training.png").stat().st_size > 10_000
    series = json.loads((out / "report" / "training.json").read_text())
    assert series["step"] == [2, 4]
    routed = logged[-1].get("router_entropy", {})
    assert set(series["router_entropy"]) == set(routed) and (mode == "shared") != bool(routed)
