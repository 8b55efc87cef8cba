"""The architecture router: maps an architecture's feature vector to expert mixing weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Router(nn.Module):
    """features(a) -> Linear -> ReLU -> Dropout -> Linear -> softmax over the experts.

    Layer-wise routing gives one mixing vector, shape (1, m); neuron-wise routing gives one per
    output neuron of the largest layer, shape (rows, m). It sees the architecture only, never the
    tokens, so for a fixed architecture the mixing (and the generated weight) is static.
    """

    def __init__(
        self,
        num_features: int,
        experts: int,
        rows: int = 1,
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.experts, self.rows = experts, rows
        self.net = nn.Sequential(
            nn.Linear(num_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, rows * experts),
        )

    def forward(self, features: Tensor) -> Tensor:
        """(num_features,) -> mixing weights (rows, m), each row summing to 1."""
        return torch.softmax(self.net(features).view(self.rows, self.experts), dim=-1)
