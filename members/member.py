"""Members: the zero-shot backbone, head members (MLP on frozen features) and LoRA members.

A member is described by a :class:`MemberSpec` and its weights (safetensors). :class:`MemberSet`
evaluates every member of a run together: one backbone pass per image (cached), all head members
as one batched product (:class:`StackedHeads`), and each LoRA member as its own backbone (merged
adapters), on separate CUDA streams when there is a GPU.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctxsim.data.images import file_digest
from ctxsim.embedding.cache import embed_images
from ctxsim.embedding.distances import l2_normalize
from ctxsim.members.backbones import Backbone, create_backbone, create_view
from ctxsim.members.config import MemberConfig
from ctxsim.members.heads import ResidualHead, StackedHeads
from ctxsim.members.memory import Memory, split_memory
from ctxsim.members.training import Triplets, fit, split_by_images
from ctxsim.members.views import View
from ctxsim.schema import HEAD_KIND, LORA_KIND

log = logging.getLogger(__name__)

#: The members' specs, inside the folder a run gives the members.
SPECS_FILE = "members.json"



@dataclass
class MemberSpec:
    name: str
    kind: str  # "zeroshot", "head" or "lora"
    context: str | None = None  # None: trained on every context (or not trained)
    hidden: int | None = None
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_targets: list[str] | None = None
    view: str | None = None  # View.spec of what the member sees; None: the run's backbone, last layer
    memory: bool = False  # per-image offsets for its training images (members/memory.py)


def _split(triplets: Triplets, cfg: MemberConfig, seed: int) -> tuple[Triplets, Triplets]:
    train, val = split_by_images(triplets, cfg.val_fraction, np.random.default_rng(seed))
    if len(val) < cfg.min_val_triplets or len(train) == 0:
        log.warning("only %d validation triplets: early stopping watches the training triplets", len(val))
        return triplets, triplets
    return train, val


def train_head(features: torch.Tensor, triplets: Triplets, cfg: MemberConfig, *, seed: int = 0, desc: str = "head",
               progress: bool = True, init: dict[str, torch.Tensor] | None = None) -> tuple[ResidualHead, dict]:
    """A residual MLP head on frozen features (rows of ``features`` are the image table).

    ``init``: start from these weights (a global member's) and pull toward them with ``cfg.pull``."""
    torch.manual_seed(seed)
    head = ResidualHead(features.shape[1], cfg.hidden)
    penalty = None
    if init is not None:
        head.load_state_dict(split_memory(init)[0])  # a global member's memory is its own
        anchor = [p.detach().clone() for p in head.parameters()]

        def penalty():
            return cfg.pull * sum(((p - a) ** 2).sum() for p, a in zip(head.parameters(), anchor))

    train, val = _split(triplets, cfg, seed)
    history = fit(head, lambda idx: head(features[idx]), train, val, cfg, seed=seed, desc=desc, progress=progress,
                  penalty=penalty)
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


def save_members(folder: Path, specs: list[MemberSpec], weights: dict[str, dict[str, torch.Tensor]]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        if spec.name in weights:
            save_file(weights[spec.name], str(_weights_file(folder, spec.name)))
    (folder / SPECS_FILE).write_text(json.dumps([asdict(s) for s in specs], indent=1))


def _weights_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.safetensors"


class MemberSet:
    """Every member of a run, evaluated together on a list of image paths."""

    def __init__(self, folder: Path, backbone_name: str, *, pretrained: bool = True):
        from safetensors.torch import load_file

        self.specs = [MemberSpec(**d) for d in json.loads((folder / SPECS_FILE).read_text())]
        primary = View(backbone_name).spec
        self.views: dict[str, _ViewMembers] = {}  # view spec -> its backbone, zero-shot and head members
        self.lora_backbones = {}
        self.memories: dict[str, Memory] = {}  # member name -> its known images' offsets
        for spec in self.specs:
            view = spec.view or primary
            if spec.kind == LORA_KIND:
                self.lora_backbones[spec.name] = _merged_lora_backbone(backbone_name, spec, _weights_file(folder, spec.name), pretrained)
                continue
            if view not in self.views:
                self.views[view] = _ViewMembers(create_view(View.parse(view), pretrained=pretrained))
            members = self.views[view]
            if spec.kind == HEAD_KIND:
                head = ResidualHead(members.backbone.feature_dim, spec.hidden)
                state, memory = split_memory(load_file(str(_weights_file(folder, spec.name))))
                head.load_state_dict(state)
                if memory:
                    self.memories[spec.name] = Memory(memory)
                members.heads.append(head)
                members.head_names.append(spec.name)
            else:
                members.zeroshot_names.append(spec.name)
        for members in self.views.values():
            members.stacked = StackedHeads(members.heads).eval() if members.heads else None
        self.backbone = self.views[primary].backbone if primary in self.views else create_backbone(backbone_name, pretrained=pretrained)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def head_names(self) -> list[str]:
        """The head members, view by view (each view's heads run as one stacked product)."""
        return [n for members in self.views.values() for n in members.head_names]

    def embed(self, paths: list[str], cache, *, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
        """Every member's normalised embedding of ``paths``: one backbone pass per view, then its heads
        as one batched product."""
        out = {}
        for members in self.views.values():
            feats = embed_images(paths, members.backbone, cache, device=device, progress=progress)
            out.update({name: l2_normalize(feats) for name in members.zeroshot_names})
            if members.stacked is not None:
                with torch.inference_mode():
                    stacked = members.stacked.to(device)(torch.as_tensor(feats, device=device)).cpu().numpy()
                out.update(zip(members.head_names, stacked))
        out.update(self._embed_lora(paths, cache, device, progress))
        if self.memories:  # known images get their offsets, looked up by content digest
            digests = [file_digest(p) for p in paths]
            out.update({name: memory.apply(out[name], digests) for name, memory in self.memories.items()})
        return {s.name: out[s.name] for s in self.specs}

    def _embed_lora(self, paths, cache, device, progress) -> dict[str, np.ndarray]:
        if not self.lora_backbones:
            return {}
        if not device.startswith("cuda"):
            return {n: l2_normalize(embed_images(paths, b, cache, device=device, progress=progress)) for n, b in self.lora_backbones.items()}
        # One CUDA stream per LoRA member: their backbone passes overlap on the GPU.
        results, streams = {}, {n: torch.cuda.Stream() for n in self.lora_backbones}
        for name, backbone in self.lora_backbones.items():
            with torch.cuda.stream(streams[name]):
                results[name] = embed_images(paths, backbone, cache, device=device, progress=progress)
        torch.cuda.synchronize()
        return {n: l2_normalize(v) for n, v in results.items()}


@dataclass
class _ViewMembers:
    """The members of one view: its backbone, its zero-shot members and its heads (stacked)."""

    backbone: Backbone
    zeroshot_names: list[str] = field(default_factory=list)
    heads: list[ResidualHead] = field(default_factory=list)
    head_names: list[str] = field(default_factory=list)
    stacked: StackedHeads | None = None


def _merged_lora_backbone(backbone_name: str, spec: MemberSpec, path: Path, pretrained: bool) -> Backbone:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    backbone = create_backbone(backbone_name, pretrained=pretrained)
    cfg = MemberConfig(kind=LORA_KIND, lora_rank=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_targets=spec.lora_targets)
    model = lora_model(backbone, cfg)
    state = load_file(str(path))
    set_peft_model_state_dict(model, state)
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()[:16]
    merged = Backbone(spec.name, model.merge_and_unload(), backbone.preprocess, backbone.feature_dim, f"{backbone.cache_key}+lora-{digest}")
    return merged.eval()
