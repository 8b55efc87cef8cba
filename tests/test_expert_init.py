"""How MoS expert banks start (issue 20): the std of the weight a router generates at init,
against one `nn.Linear` (the weight-sharing layer's), for each `expert_init`."""

from __future__ import annotations

import math

import pytest
import torch

from mos_search.errors import ConfigError
from mos_search.models.supernet.base import SupernetConfig
from mos_search.models.supernet.layers import COPY_PERTURBATION, ExpertLinear
from mos_search.models.supernet.translation import Supernet
from mos_search.training.config import TrainConfig

IN, OUT = 256, 512


def std_ratio(init: str, routing: str, experts: int, seed: int) -> tuple[float, float]:
    """(std of the generated weight over that of a shared layer of the same seed, the mean over
    rows of sum_i r_i^2: the routing's share of the variance of m independent banks)."""
    torch.manual_seed(seed)
    shared = ExpertLinear(IN, OUT).materialize(IN, OUT, None)["weight"]
    torch.manual_seed(seed)
    layer = ExpertLinear(IN, OUT, experts, routing, num_features=10, expert_init=init).eval()
    features = torch.rand(10, generator=torch.Generator().manual_seed(seed))
    mixed = layer.materialize(IN, OUT, features)["weight"]
    mix = layer.router(features)  # (rows, m), each row summing to 1
    return (mixed.std() / shared.std()).item(), (mix**2).sum(-1).mean().item()


@pytest.mark.parametrize("routing", ["layer", "neuron"])
@pytest.mark.parametrize("experts", [2, 3, 4])
def test_the_mixed_weight_keeps_the_shared_layers_std_at_init(routing, experts):
    """Independent banks give the mix a variance of sum_i r_i^2 sigma^2: about 1/m at a
    near-uniform init (std x0.71 for m = 2, the gap issue 20 names). Scaled banks multiply that
    by m: exactly the shared layer's std at uniform routing, within 3% at init. Copies keep the
    shared layer's std whatever the routing (within 0.5%)."""
    for seed in range(3):
        independent, share = std_ratio("independent", routing, experts, seed)
        assert independent == pytest.approx(math.sqrt(share), rel=0.02)
        assert independent == pytest.approx(1 / math.sqrt(experts), rel=0.05)
        scaled, share = std_ratio("scaled", routing, experts, seed)
        assert scaled == pytest.approx(math.sqrt(experts * share), rel=0.02)
        assert scaled == pytest.approx(1.0, rel=0.03)
        assert std_ratio("copies", routing, experts, seed)[0] == pytest.approx(1.0, rel=0.005)


def test_copies_differ_by_a_small_perturbation():
    """The symmetry is broken: every extra bank differs from the first, by about 1% of its std."""
    torch.manual_seed(0)
    layer = ExpertLinear(IN, OUT, 3, "neuron", num_features=10, expert_init="copies")
    first = layer.weight[0]
    for bank in layer.weight[1:]:
        difference = (bank - first).std() / first.std()
        assert difference.item() == pytest.approx(COPY_PERTURBATION, rel=0.05)
    assert not torch.equal(layer.bias[1], layer.bias[0])


def test_the_supernet_config_reaches_every_mixed_layer(cpu_space):
    """`SupernetConfig.expert_init` builds every MoS layer that way: the FFN weights the supernet
    generates for the largest arch keep the shared supernet's std."""
    arch = cpu_space.largest()

    def ffn_std(mode: str, init: str) -> float:
        torch.manual_seed(0)
        config = SupernetConfig(space=cpu_space, vocab_size=100, mode=mode, expert_init=init)
        net = Supernet(config).eval()
        weights = net.materialize(arch)
        return torch.stack([w.std() for n, w in weights.items() if "fc1.weight" in n]).mean()

    shared = ffn_std("shared", "independent")
    assert (ffn_std("neuron", "independent") / shared).item() == pytest.approx(0.71, abs=0.02)
    assert (ffn_std("neuron", "scaled") / shared).item() == pytest.approx(1.0, abs=0.02)
    assert (ffn_std("layer", "copies") / shared).item() == pytest.approx(1.0, abs=0.01)


def test_unknown_init_is_refused_and_old_configs_read_independent(cpu_space):
    with pytest.raises(ConfigError, match="expert_init: expected one of independent"):
        SupernetConfig(space=cpu_space, vocab_size=100, mode="neuron", expert_init="zeros")
    with pytest.raises(ConfigError, match="expert_init"):
        ExpertLinear(4, 4, 2, "layer", num_features=2, expert_init="zeros")
    saved = SupernetConfig(space=cpu_space, vocab_size=100, mode="neuron").to_dict()
    del saved["expert_init"]  # a checkpoint from before the option
    assert SupernetConfig.from_dict(saved).expert_init == "independent"


@pytest.mark.parametrize("options", [{"mode": "shared"}, {"mode": "neuron", "arch": {"x": 1}}])
def test_an_init_for_expert_banks_is_refused_where_there_are_none(options):
    with pytest.raises(ConfigError, match="applies to a MoS supernet"):
        TrainConfig(data="d", out="o", expert_init="scaled", **options)
    assert TrainConfig(data="d", out="o", **options).expert_init == "independent"
