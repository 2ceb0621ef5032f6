"""Known images: a member's learned per-image offset, for the images it was trained on.

A member with memory embeds image ``i`` as ``normalize(e_i + o_i)``: ``e_i`` is its head's embedding,
``o_i`` an offset learned for each training image and zero for every image it never saw, so on new
images the member is exactly its head. The offsets are fitted after the head, with the head frozen,
on the member's own triplets with the loss ``memory_loss`` (none: the member's), early-stopped on a
random share of the *rows*, where images stay known (the regime the offsets are for), with an L2
penalty ``memory_l2 x sum ||o_i||^2``.

Offsets are saved with the member's weights, keyed by the image's content digest
(:func:`ctxsim.data.images.file_digest`, SHA-256 of the file's bytes), so at compare time an image
that was in training gets its offset whatever its path, and any other image gets none. An
out-of-fold copy is trained without its fold's images, so they get zero offsets by construction.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctxsim.members.config import MemberConfig
from ctxsim.members.offsets import DIGESTS, OFFSETS, digest_rows
from ctxsim.members.training import Triplets, fit


class Offsets(nn.Module):
    """One learnable offset per row of an image table, added to fixed embeddings and renormalised."""

    def __init__(self, emb: torch.Tensor):
        super().__init__()
        self.emb = emb
        self.offsets = nn.Parameter(torch.zeros_like(emb))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.emb[idx] + self.offsets[idx], dim=-1)


def split_by_rows(triplets: Triplets, fraction: float, rng: np.random.Generator) -> tuple[Triplets, Triplets]:
    """(train, validation): a random share of the rows; their images stay in training."""
    held = rng.random(len(triplets)) < fraction
    return triplets.subset(~held), triplets.subset(held)


def train_memory(emb: torch.Tensor, triplets: Triplets, cfg: MemberConfig, *, seed: int = 0, desc: str = "memory",
                 progress: bool = True,
                 emb_without: Callable[[Triplets], torch.Tensor] | None = None) -> tuple[torch.Tensor, np.ndarray, dict]:
    """Offsets for the images of ``triplets`` on top of fixed (normalised) embeddings ``emb`` of the image table.

    ``emb_without(rows)``: the image table's embeddings by a head trained on ``rows`` only. With it
    (``memory_validation = "held"``), the offsets' epochs are chosen on held rows that neither that head
    nor the offsets trained on, then offsets on ``emb`` train on all of ``triplets`` for that many epochs.
    Without it, the held rows are ones ``emb``'s head may have trained on (a refitted head did: the
    first epochs then rarely look better than none).

    Returns (offsets of the trained images, those images' table indices, history)."""
    if cfg.memory_loss is not None:
        cfg = replace(cfg, loss=cfg.memory_loss)
    train, val = split_by_rows(triplets, cfg.val_fraction, np.random.default_rng(seed))
    if len(val) < cfg.min_val_triplets or len(train) == 0:
        train, val = triplets, triplets
    if emb_without is not None and val is not triplets:
        _, history = _fit_offsets(emb_without(train), train, val, cfg, seed, desc, progress)
        module, again = _fit_offsets(emb, triplets, None, cfg, seed, f"{desc} refit", progress, epochs=history["best_epoch"])
        history["refit"] = {"triplets": len(triplets), "train_loss": again["train_loss"]}
        train = triplets
    else:
        module, history = _fit_offsets(emb, train, val, cfg, seed, desc, progress)
    images = train.images() if len(train) else np.zeros(0, dtype=np.int64)
    return module.offsets.detach()[torch.as_tensor(images, dtype=torch.long)].clone(), images, history


def _fit_offsets(emb: torch.Tensor, train: Triplets, val: Triplets | None, cfg: MemberConfig, seed: int, desc: str,
                 progress: bool, epochs: int | None = None) -> tuple[Offsets, dict]:
    """Offsets on ``emb`` fitted with the L2 penalty (``val`` None: exactly ``epochs`` epochs); and the history."""
    torch.manual_seed(seed)
    module = Offsets(emb.detach())

    def penalty():
        return cfg.memory_l2 * (module.offsets ** 2).sum()

    return module, fit(module, module, train, val, cfg, seed=seed, desc=desc, progress=progress, penalty=penalty,
                       epochs=epochs)


def memory_state(offsets: torch.Tensor, digests: list[str]) -> dict[str, torch.Tensor]:
    """The tensors a member's weights file keeps for its memory: offsets and their images' digests."""
    return {OFFSETS: offsets.contiguous(), DIGESTS: torch.as_tensor(digest_rows(digests))}
