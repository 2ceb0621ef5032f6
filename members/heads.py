"""Head members: a small residual MLP on frozen backbone features, and K heads evaluated at once.

``embed(x) = normalize(x + W2 gelu(W1 x + b1) + b2)`` with ``W2`` zero-initialised, so a fresh
head is exactly the zero-shot backbone and training can only move away from it when the
validation split says so. :class:`StackedHeads` applies K trained heads to one backbone pass as
batched matrix products (``einsum`` over stacked weights): K members cost one backbone pass plus
K small matrix products.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctxsim.members.config import DEFAULT_HIDDEN


class ResidualHead(nn.Module):
    def __init__(self, dim: int, hidden: int = DEFAULT_HIDDEN):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1)
        return F.normalize(x + self.fc2(F.gelu(self.fc1(x))), dim=-1)


class StackedHeads(nn.Module):
    """K :class:`ResidualHead` s with stacked weights: ``forward(x) -> (K, N, dim)``."""

    def __init__(self, heads: list[ResidualHead]):
        super().__init__()
        self.w1 = nn.Parameter(torch.stack([h.fc1.weight.T for h in heads]))  # (K, dim, hidden)
        self.b1 = nn.Parameter(torch.stack([h.fc1.bias for h in heads]))  # (K, hidden)
        self.w2 = nn.Parameter(torch.stack([h.fc2.weight.T for h in heads]))  # (K, hidden, dim)
        self.b2 = nn.Parameter(torch.stack([h.fc2.bias for h in heads]))  # (K, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1)
        hidden = F.gelu(torch.einsum("nd,kdh->knh", x, self.w1) + self.b1[:, None])
        out = x[None] + torch.einsum("knh,khd->knd", hidden, self.w2) + self.b2[:, None]
        return F.normalize(out, dim=-1)
