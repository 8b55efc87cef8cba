"""Shared fixtures: spaces and small supernets, one per mode."""

from __future__ import annotations

import pytest
import torch

from mos_search import Supernet, SupernetConfig, load_space

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cpu_space():
    return load_space("cpu-small")


@pytest.fixture(scope="session")
def hat_space():
    return load_space("hat-wmt14")


@pytest.fixture(scope="session", params=["shared", "layer", "neuron"])
def supernet(request, cpu_space):
    torch.manual_seed(0)
    return Supernet(SupernetConfig(space=cpu_space, mode=request.param, vocab_size=97)).eval()
