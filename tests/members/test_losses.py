"""Losses on distance margins, against numbers worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from ctxsim.members.losses import CE_HINGE_WEIGHT, CE_LOGIT_SCALE, HINGE_MARGIN, LOSSES, ce_hinge_loss, hinge_loss

# delta = d(R,B) - d(R,A); y = +1: A closer
DELTA = torch.tensor([0.2, 0.02, -0.1, 0.0])
Y = torch.tensor([1.0, 1.0, 1.0, -1.0])


def test_named_defaults():
    assert HINGE_MARGIN == 0.05 and CE_HINGE_WEIGHT == 0.1
    assert LOSSES == {"hinge": hinge_loss, "ce_hinge": ce_hinge_loss}


def test_hinge_by_hand():
    # per row: max(0, 0.05 - y * delta) = 0, 0.03, 0.15, 0.05
    assert hinge_loss(DELTA, Y).item() == pytest.approx((0 + 0.03 + 0.15 + 0.05) / 4)
    # a larger margin: 0.3 - 0.2, 0.3 - 0.02, 0.3 + 0.1, 0.3
    assert hinge_loss(DELTA, Y, margin=0.3).item() == pytest.approx((0.1 + 0.28 + 0.4 + 0.3) / 4)


def test_hinge_weighted_mean():
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    assert hinge_loss(DELTA, Y, weight=w).item() == pytest.approx((0 + 0 + 2 * 0.15 + 0.05) / 4)
    # all weights zero: no division by zero
    assert hinge_loss(DELTA, Y, weight=torch.zeros(4)).item() == 0.0


def test_hinge_is_symmetric_under_swap():
    # swapping A and B flips the sign of delta and of y: the loss is unchanged
    assert hinge_loss(-DELTA, -Y).item() == pytest.approx(hinge_loss(DELTA, Y).item())


def test_ce_hinge_by_hand():
    def softplus(z):
        return math.log1p(math.exp(z))

    expected = []
    for d, y in zip(DELTA.tolist(), Y.tolist()):
        ce = softplus(-CE_LOGIT_SCALE * d) if y > 0 else softplus(CE_LOGIT_SCALE * d)  # -log sigmoid(+-10 d)
        expected.append(ce + 0.1 * max(0.0, 0.05 - y * d))
    assert ce_hinge_loss(DELTA, Y).item() == pytest.approx(sum(expected) / 4, rel=1e-6)
    # row 0 alone: -log sigmoid(2) + 0 = 0.126928...
    assert ce_hinge_loss(DELTA[:1], Y[:1]).item() == pytest.approx(0.1269280110, rel=1e-6)
    # row 3 alone (delta 0, B closer): log 2 + 0.1 * 0.05
    assert ce_hinge_loss(DELTA[3:], Y[3:]).item() == pytest.approx(math.log(2) + 0.005, rel=1e-6)


def test_ce_hinge_weighted_and_differentiable():
    delta = DELTA.clone().requires_grad_(True)
    w = torch.tensor([0.0, 0.0, 1.0, 0.0])
    loss = ce_hinge_loss(delta, Y, weight=w)
    assert loss.item() == pytest.approx(ce_hinge_loss(DELTA[2:3], Y[2:3]).item(), rel=1e-6)
    loss.backward()
    # only row 2 has weight; raising its delta (towards A, the right answer) lowers the loss
    assert delta.grad[[0, 1, 3]].abs().sum() == 0 and delta.grad[2] < 0
