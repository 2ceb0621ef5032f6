"""Head members: a fresh residual head is the zero-shot backbone; stacked heads equal heads applied one by one."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ctxsim.members.heads import ResidualHead, StackedHeads

DIM, HIDDEN = 12, 6


def trained_like(seed: int) -> ResidualHead:
    """A head whose weights have all moved away from the initialisation (as after training)."""
    torch.manual_seed(seed)
    head = ResidualHead(DIM, HIDDEN)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return head


def test_fresh_head_is_the_zero_shot_normalised_features():
    torch.manual_seed(0)
    x = 5 * torch.randn(9, DIM)
    head = ResidualHead(DIM, HIDDEN)
    assert torch.equal(head.fc2.weight, torch.zeros(DIM, HIDDEN)) and torch.equal(head.fc2.bias, torch.zeros(DIM))
    torch.testing.assert_close(head(x), F.normalize(x, dim=-1), rtol=0, atol=1e-6)


def test_head_output_is_unit_norm_and_moves_once_trained():
    x = torch.randn(9, DIM)
    out = trained_like(1)(x)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(9))
    assert (out - F.normalize(x, dim=-1)).abs().max() > 1e-2


def test_stacked_heads_equal_each_head_applied_separately():
    heads = [trained_like(s) for s in range(3)] + [ResidualHead(DIM, HIDDEN)]
    x = torch.randn(7, DIM)
    stacked = StackedHeads(heads)
    with torch.no_grad():
        out = stacked(x)
        assert out.shape == (4, 7, DIM)
        for k, head in enumerate(heads):
            torch.testing.assert_close(out[k], head(x), rtol=1e-5, atol=1e-6)
        # distinct heads give distinct embeddings (the test would notice heads mixed up)
        assert (out[0] - out[1]).abs().max() > 1e-2


def test_stacked_single_head():
    head = trained_like(4)
    x = torch.randn(3, DIM)
    with torch.no_grad():
        torch.testing.assert_close(StackedHeads([head])(x)[0], head(x), rtol=1e-5, atol=1e-6)
