"""The CPU dropout of models/dropout.py: its drop rate, unbiasedness, gradient, determinism, and
the switch back to `F.dropout`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_search.models.dropout import LEVELS, drop_threshold, dropout, reference_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_the_drop_rate_is_p_within_sampling_error(p):
    torch.manual_seed(0)
    n = 1_000_000
    out = dropout(torch.ones(n), p, True)
    rate = (out == 0).double().mean().item()
    nominal = drop_threshold(p) / LEVELS
    assert abs(nominal - p) <= 0.5 / LEVELS
    assert abs(rate - nominal) < 5 * math.sqrt(p * (1 - p) / n)  # 5 standard errors


def test_kept_elements_are_scaled_so_the_mean_is_unchanged():
    torch.manual_seed(1)
    x = torch.rand(2000, 500) + 0.5
    out = dropout(x, 0.1, True)
    kept = out != 0
    scale = LEVELS / (LEVELS - drop_threshold(0.1))
    assert torch.allclose(out[kept], x[kept] * scale)
    assert out.mean().item() == pytest.approx(x.mean().item(), rel=2e-3)


def test_neighbouring_elements_are_not_correlated():
    """Four elements share one 64-bit draw: their masks must still be independent."""
    torch.manual_seed(2)
    mask = (dropout(torch.ones(400_000), 0.5, True) != 0).double().view(-1, 4)
    corr = torch.corrcoef(mask.T)
    off_diagonal = corr[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max().item() < 0.02


def test_the_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(3)
    x = torch.randn(64, 33, requires_grad=True)
    out = dropout(x, 0.2, True)
    out.sum().backward()
    scale = LEVELS / (LEVELS - drop_threshold(0.2))
    expected = (out != 0).float() * scale
    assert torch.allclose(x.grad, expected)


def test_the_same_seed_gives_the_same_mask():
    x = torch.randn(1000)
    torch.manual_seed(4)
    first = dropout(x, 0.1, True)
    torch.manual_seed(4)
    assert torch.equal(first, dropout(x, 0.1, True))
    assert not torch.equal(first, dropout(x, 0.1, True))


def test_evaluation_and_zero_rate_return_the_input():
    x = torch.randn(10, 10)
    assert dropout(x, 0.1, False) is x
    assert dropout(x, 0.0, True) is x
    assert dropout(x, 1e-6, True) is x  # below one level: nothing is dropped


def test_bf16_stays_bf16():
    x = torch.randn(100, 100, dtype=torch.bfloat16)
    assert dropout(x, 0.1, True).dtype == torch.bfloat16


def test_reference_dropout_is_pytorchs():
    x = torch.randn(500)
    with reference_dropout():
        torch.manual_seed(5)
        ours = dropout(x, 0.1, True)
    torch.manual_seed(5)
    assert torch.equal(ours, F.dropout(x, 0.1, True))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), p=st.floats(0.01, 0.99))
def test_any_shape_keeps_its_shape(shape, p):
    x = torch.ones(shape)
    out = dropout(x, p, True)
    assert out.shape == x.shape
    scale = LEVELS / (LEVELS - drop_threshold(p))
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, scale))
