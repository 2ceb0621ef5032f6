"""Fitting one member on A:R vs B:R judgements, with early stopping on images it never trained on.

Triplets are integer indices into an image table. The validation split holds out a share of the
*images*: training uses only triplets whose three images are all training images, validation the
triplets that name a held-out image, so early stopping rewards what carries over to new images.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ctxsim.console import bar_disabled
from ctxsim.members.config import MemberConfig
from ctxsim.members.losses import LOSSES

log = logging.getLogger(__name__)


@dataclass
class Triplets:
    """Triplets as indices into an image table; ``y`` is +1 when A is closer, -1 when B is."""

    ref: np.ndarray
    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ref)

    def subset(self, mask: np.ndarray) -> Triplets:
        w = None if self.weight is None else self.weight[mask]
        return Triplets(self.ref[mask], self.a[mask], self.b[mask], self.y[mask], w)

    def images(self) -> np.ndarray:
        return np.unique(np.concatenate([self.ref, self.a, self.b]))

    def touches(self, images: np.ndarray) -> np.ndarray:
        """Rows naming any of ``images``."""
        return np.isin(self.ref, images) | np.isin(self.a, images) | np.isin(self.b, images)


def split_by_images(triplets: Triplets, fraction: float, rng: np.random.Generator) -> tuple[Triplets, Triplets]:
    """(train, validation): validation rows name at least one held-out image, training rows none."""
    images = triplets.images()
    held = rng.choice(images, size=min(len(images), max(1, round(fraction * len(images)))), replace=False)
    touches = triplets.touches(held)
    return triplets.subset(~touches), triplets.subset(touches)


def accuracy(delta: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> float:
    hit = (np.sign(delta) == np.sign(y)).astype(float)
    return float(np.average(hit, weights=weight)) if len(hit) else float("nan")


def _margins(embed: Callable[[torch.Tensor], torch.Tensor], t: Triplets, idx: np.ndarray) -> torch.Tensor:
    """Margins ``d(R,B) - d(R,A)`` for rows ``idx``: each unique image of the batch is embedded once and
    margins are read off their Gram matrix (far less memory traffic than gathering vectors per row)."""
    rows = np.concatenate([t.ref[idx], t.a[idx], t.b[idx]])
    uniq, inverse = np.unique(rows, return_inverse=True)
    emb = embed(torch.as_tensor(uniq))
    gram = emb @ emb.T
    r, a, b = torch.as_tensor(inverse).view(3, -1)
    return gram[r, a] - gram[r, b]


def fit(
    module: nn.Module,
    embed: Callable[[torch.Tensor], torch.Tensor],
    train: Triplets,
    val: Triplets,
    cfg: MemberConfig,
    *,
    seed: int = 0,
    desc: str = "member",
    progress: bool = True,
    penalty: Callable[[], torch.Tensor] | None = None,
    epochs: int | None = None,
) -> dict:
    """Train ``module``'s parameters so that ``embed(image indices)`` orders triplets like people do.

    Keeps the parameters of the epoch with the best validation accuracy (epoch 0: untrained).
    ``val`` None: no validation, exactly ``epochs`` epochs (a refit on all triplets for the
    number of epochs early stopping chose). Returns the training history.
    """
    from tqdm import tqdm

    if len(train) == 0:  # e.g. an out-of-fold copy of a small context's member: it stays untrained
        log.warning("%s: no training triplets; the member stays untrained", desc)
        return {"val_accuracy": [], "train_loss": [], "best_epoch": 0, "best_val_accuracy": float("nan")}
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = LOSSES[cfg.loss]
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    y = torch.as_tensor(train.y, dtype=torch.float32)
    w = None if train.weight is None else torch.as_tensor(train.weight, dtype=torch.float32)

    # Modules stay in the mode the caller set: a LoRA backbone keeps its batch-norm statistics frozen.
    def validate() -> float:
        if val is None:
            return float("nan")
        with torch.no_grad():
            delta = _margins(embed, val, np.arange(len(val))).numpy()
        return accuracy(delta, val.y, val.weight)

    # a refit (no validation) keeps its last epoch: nothing to copy
    best_acc, best_state, best_epoch, stale = validate(), None if val is None else copy.deepcopy(module.state_dict()), 0, 0
    history = {"val_accuracy": [best_acc], "train_loss": [], "best_epoch": 0}
    bar = tqdm(range(1, (cfg.epochs if epochs is None else epochs) + 1), desc=desc, unit="epoch", disable=bar_disabled(progress), leave=False)
    for epoch in bar:
        order = rng.permutation(len(train))
        steps = min(cfg.max_steps_per_epoch, max(1, -(-len(order) // cfg.batch_size)))
        losses = []
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(idx) == 0:
                break
            delta = _margins(embed, train, idx)
            loss = loss_fn(delta, y[idx], margin=cfg.margin, weight=None if w is None else w[idx])
            if penalty is not None:  # e.g. a context member's pull toward its global member
                loss = loss + penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        acc = validate()
        history["train_loss"].append(float(np.mean(losses)))
        history["val_accuracy"].append(acc)
        bar.set_postfix(val_acc=f"{acc:.3f}")
        if val is None:
            best_epoch = epoch
        elif acc > best_acc:
            best_acc, best_state, best_epoch, stale = acc, copy.deepcopy(module.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    history.update(best_epoch=best_epoch, best_val_accuracy=best_acc)
    log.debug("%s: best epoch %d, validation accuracy %.4f", desc, best_epoch, best_acc)
    return history
