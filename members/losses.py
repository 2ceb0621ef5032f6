"""Losses on distance margins, after DreamSim: hinge with margin 0.05, and the paper's
cross-entropy + 0.1 x hinge. ``delta = d(R,B) - d(R,A)``; ``y = +1`` when A is closer, else ``-1``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ctxsim.members.config import CE_HINGE, HINGE

HINGE_MARGIN = 0.05
#: Weight of the hinge term in the cross-entropy variant (Liao & Chen).
CE_HINGE_WEIGHT = 0.1
#: Logit scale for the cross-entropy variant: cosine-distance margins are small numbers.
CE_LOGIT_SCALE = 10.0


def hinge_loss(delta: torch.Tensor, y: torch.Tensor, margin: float = HINGE_MARGIN, weight: torch.Tensor | None = None) -> torch.Tensor:
    per_row = F.relu(margin - y * delta)
    return _reduce(per_row, weight)


def ce_hinge_loss(
    delta: torch.Tensor, y: torch.Tensor, margin: float = HINGE_MARGIN, hinge_weight: float = CE_HINGE_WEIGHT,
    scale: float = CE_LOGIT_SCALE, weight: torch.Tensor | None = None,
) -> torch.Tensor:
    ce = F.binary_cross_entropy_with_logits(scale * delta, (y > 0).to(delta.dtype), reduction="none")
    return _reduce(ce + hinge_weight * F.relu(margin - y * delta), weight)


def _reduce(per_row: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum().clamp_min(1e-12)


LOSSES = {HINGE: hinge_loss, CE_HINGE: ce_hinge_loss}
