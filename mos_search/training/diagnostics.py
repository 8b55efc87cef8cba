"""Router diagnostics of a MoS supernet, logged during training (issue 20).

Three quantities per logged step, for the layers whose weights a router mixes:

- `router_entropy[layer]`: the routing's entropy over the m experts divided by log(m) (1 =
  uniform mixing, 0 = one expert), averaged over the output rows (neuron-wise: all of the
  layer's rows, also those a smaller architecture leaves unused) and over the space's largest
  and smallest architectures (fixed, so the curves of a run are comparable step to step; a
  layer the smallest architecture does not use is still routed for its features). Router
  dropout is off while it is read.
- `bank_distance[layer]`: how far apart the expert banks are, relative to their size: the mean
  over bank pairs (i, j) of ||W_i - W_j||_F / mean_k ||W_k||_F (0 = identical banks; about
  sqrt(2) for independent banks of equal norm).
- `router_grad_share`: ||gradient of every router parameter|| / ||gradient of every
  parameter|| (L2 over all of them), read after the gradients are averaged over tokens and
  before clipping (which scales every gradient alike). It is a share of the gradient norm, not
  of the update: Adam normalises each parameter's step.

Weight sharing ("shared" mode) has no routers: `diagnostics` returns {} there.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import torch
from torch import nn

from mos_search.models.supernet.layers import ExpertLinear


def routed_layers(model: nn.Module) -> dict[str, ExpertLinear]:
    """The expert-mixed layers of a supernet by module name (empty in shared mode)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, ExpertLinear) and module.router is not None
    }


def router_grad_share(model: nn.Module) -> float | None:
    """||router gradients|| / ||all gradients|| (None without routers or gradients)."""
    layers = routed_layers(model)
    if not layers:
        return None
    router_ids = {id(p) for layer in layers.values() for p in layer.router.parameters()}
    total = router = 0.0
    for parameter in model.parameters():
        if parameter.grad is None:
            continue
        squared = float(parameter.grad.detach().float().pow(2).sum())
        total += squared
        if id(parameter) in router_ids:
            router += squared
    return math.sqrt(router / total) if total > 0 else None


@torch.no_grad()
def routing_entropy(layer: ExpertLinear, features: list[torch.Tensor]) -> float:
    """Mean normalised entropy of `layer`'s routing over the given architectures' features."""
    router, experts = layer.router, layer.weight.shape[0]
    was_training = router.training
    router.eval()
    try:
        values = []
        for f in features:
            mix = router(f)  # (rows, m)
            entropy = -(mix * mix.clamp_min(1e-12).log()).sum(-1)  # (rows,)
            values.append(float(entropy.mean()) / math.log(experts))
        return sum(values) / len(values)
    finally:
        router.train(was_training)


@torch.no_grad()
def bank_distance(layer: ExpertLinear) -> float:
    """Mean over bank pairs of ||W_i - W_j|| / mean ||W_k|| (Frobenius norms)."""
    banks = layer.weight.detach().float()
    scale = float(banks.flatten(1).norm(dim=1).mean())
    pairs = [float((banks[i] - banks[j]).norm()) for i, j in combinations(range(len(banks)), 2)]
    return sum(pairs) / len(pairs) / scale if scale > 0 else 0.0


def _significant(value: float) -> float:
    """`value` to 4 significant digits (small distances and shares keep their digits)."""
    return float(f"{value:.4g}")


def diagnostics(model: nn.Module, grad_share: float | None) -> dict[str, Any]:
    """The metrics-line fields of the router diagnostics (see the module docstring); {} for a
    model without routers. `model` is a supernet (`arch_features`, `config.space`)."""
    layers = routed_layers(model)
    if not layers:
        return {}
    space = model.config.space
    features = [model.arch_features(space.largest()), model.arch_features(space.smallest())]
    return {
        "router_entropy": {
            n: _significant(routing_entropy(m, features)) for n, m in layers.items()
        },
        "bank_distance": {n: _significant(bank_distance(m)) for n, m in layers.items()},
        "router_grad_share": None if grad_share is None else _significant(grad_share),
    }
