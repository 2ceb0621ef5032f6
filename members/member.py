"""Training members: head members (MLP on frozen features) and LoRA members.

A member is described by a :class:`~ctxsim.members.inference.MemberSpec` and its weights (safetensors);
:class:`~ctxsim.members.inference.MemberSet` evaluates a run's members at compare time without torch.
This module is the torch side: fitting heads and adapters, and merging a LoRA member into its backbone.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctxsim.members.backbones import Backbone, create_backbone
from ctxsim.members.config import MemberConfig
from ctxsim.members.heads import ResidualHead
from ctxsim.members.inference import MemberSpec, lora_weights_tag
from ctxsim.members.offsets import split_memory
from ctxsim.members.training import Triplets, fit, split_by_images
from ctxsim.schema import LORA_KIND

log = logging.getLogger(__name__)

def _split(triplets: Triplets, cfg: MemberConfig, seed: int) -> tuple[Triplets, Triplets]:
    train, val = split_by_images(triplets, cfg.val_fraction, np.random.default_rng(seed))
    if len(val) < cfg.min_val_triplets or len(train) == 0:
        log.warning("only %d validation triplets: early stopping watches the training triplets", len(val))
        return triplets, triplets
    return train, val


def train_head(features: torch.Tensor, triplets: Triplets, cfg: MemberConfig, *, seed: int = 0, desc: str = "head",
               progress: bool = True, init: dict[str, torch.Tensor] | None = None,
               refit: bool = False) -> tuple[ResidualHead, dict]:
    """A residual MLP head on frozen features (rows of ``features`` are the image table).

    ``init``: start from these weights (a global member's) and pull toward them with ``cfg.pull``.
    ``refit``: after early stopping, train a fresh head on all of ``triplets`` for the epochs it chose."""
    def fresh_head() -> ResidualHead:
        torch.manual_seed(seed)
        head = ResidualHead(features.shape[1], cfg.hidden)
        if init is not None:
            head.load_state_dict(split_memory(init)[0])  # a global member's memory is its own
        return head

    head = fresh_head()
    penalty = None
    if init is not None:
        anchor = [p.detach().clone() for p in head.parameters()]

        def penalty():  # reads ``head`` when called: the refit's head once it exists
            return cfg.pull * sum(((p - a) ** 2).sum() for p, a in zip(head.parameters(), anchor))

    train, val = _split(triplets, cfg, seed)
    history = fit(head, lambda idx: head(features[idx]), train, val, cfg, seed=seed, desc=desc, progress=progress,
                  penalty=penalty)
    if refit and val is not triplets:
        # Early stopping held out a share of the images, and with them every triplet naming one (about half
        # the rows at 20%): train again on all triplets for the number of epochs it chose.
        head = fresh_head()
        again = fit(head, lambda idx: head(features[idx]), triplets, None, cfg, seed=seed, desc=f"{desc} refit",
                    progress=progress, penalty=penalty, epochs=history["best_epoch"])
        history["refit"] = {"triplets": len(triplets), "train_loss": again["train_loss"]}
    return head, history


def lora_model(backbone: Backbone, cfg: MemberConfig):
    """The backbone's network with LoRA adapters (peft) on ``cfg.lora_targets`` (default: the backbone's
    own ``lora_targets``); only they train."""
    from peft import LoraConfig, get_peft_model

    targets = list(cfg.lora_targets) or backbone.lora_targets
    if not targets:
        raise ValueError(f"no default LoRA targets for backbone {backbone.name!r}: set member.lora_targets")
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=targets, lora_dropout=0.0)
    return get_peft_model(backbone.model, config)


def train_lora(backbone_name: str, pixels: torch.Tensor, triplets: Triplets, cfg: MemberConfig, *, seed: int = 0,
               desc: str = "lora", progress: bool = True, device: str = "cpu", pretrained: bool = True):
    """LoRA adapters on a fresh copy of the backbone; ``pixels`` are the preprocessed image table."""
    torch.manual_seed(seed)
    backbone = create_backbone(backbone_name, pretrained=pretrained)
    model = lora_model(backbone, cfg).to(device).eval()  # eval: batch-norm statistics stay frozen
    pixels = pixels.to(device)
    train, val = _split(triplets, cfg, seed)
    history = fit(model, lambda idx: F.normalize(model(pixels[idx.to(device)]), dim=-1).cpu(), train, val, cfg,
                  seed=seed, desc=desc, progress=progress)
    return model, history


def lora_state(model) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def head_state(head: ResidualHead) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}


def merged_lora_backbone(backbone_name: str, spec: MemberSpec, path: Path, pretrained: bool) -> Backbone:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    backbone = create_backbone(backbone_name, pretrained=pretrained)
    cfg = MemberConfig(kind=LORA_KIND, lora_rank=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_targets=spec.lora_targets)
    model = lora_model(backbone, cfg)
    state = load_file(str(path))
    set_peft_model_state_dict(model, state)
    merged = Backbone(spec.name, model.merge_and_unload(), backbone.preprocess, backbone.feature_dim,
                      lora_weights_tag(backbone.cache_key, state))
    return merged.eval()
