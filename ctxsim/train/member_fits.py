"""One member fit of ``train``: which triplets it sees (:class:`FitJob`) and how it is trained
(:class:`MemberTrainer`), shared by the single-machine loop and the Ray tasks."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ctxsim.config import TrainConfig
from ctxsim.data.images import file_digest
from ctxsim.embedding.cache import preprocess_images
from ctxsim.members.backbones import create_backbone
from ctxsim.members.config import MEMORY_VALIDATION_HELD, REFIT_ALL, REFIT_RUN
from ctxsim.members.inference import MemberSpec
from ctxsim.members.member import (
    head_state,
    lora_state,
    train_head,
    train_lora,
)
from ctxsim.members.memory import memory_state, train_memory
from ctxsim.members.training import Triplets
from ctxsim.schema import HEAD_KIND


class MemberTrainer:
    """Trains a member of either kind on a subset of triplets: its weights, image-table embeddings and history."""

    def __init__(self, cfg: TrainConfig, features: dict[str, np.ndarray], paths: list[str], device: str, progress: bool):
        """``features``: each view's (spec -> image table features)."""
        import torch

        self.cfg, self.device, self.progress = cfg, device, progress
        self.features = {view: torch.as_tensor(f) for view, f in features.items()}
        self.paths = paths
        self._pixels = None
        self._digests = None

    def digests(self) -> list[str]:
        """The image table's content digests (what a member's memory is keyed by), computed once."""
        if self._digests is None:
            self._digests = [file_digest(p) for p in self.paths]
        return self._digests

    def pixels(self):
        """The preprocessed image table, for LoRA members (built once)."""
        if self._pixels is None:
            self._pixels = preprocess_images(self.paths, create_backbone(self.cfg.backbone, pretrained=False).preprocess)
        return self._pixels

    def fit(self, job: FitJob) -> tuple[dict, np.ndarray, dict]:
        """One fit job: (weights, the image table's embeddings, history)."""
        choice = self.cfg.member.refit  # a run's member has no fold; "all" refits its out-of-fold copies too
        refit = choice == REFIT_ALL or (choice == REFIT_RUN and job.fold is None)
        return self.train(job.spec, job.triplets, job.seed, job.desc, init=job.init, refit=refit)

    def train(self, spec: MemberSpec, triplets: Triplets, seed: int, desc: str, init: dict | None = None,
              refit: bool = False) -> tuple[dict, np.ndarray, dict]:
        """(weights, the image table's embeddings, history); ``init``: a head's starting weights; ``refit``: see
        :func:`~ctxsim.members.member.train_head`."""
        import torch

        mcfg = self.cfg.member if spec.loss is None else replace(self.cfg.member, loss=spec.loss)
        if spec.kind == HEAD_KIND:
            features = self.features[spec.view]
            head, history = train_head(features, triplets, mcfg, seed=seed, desc=desc, progress=self.progress, init=init,
                                       refit=refit)
            with torch.no_grad():
                emb = head(features)
            state = head_state(head)
            if spec.memory:  # offsets for its training images, on top of the frozen head
                emb_without = None
                if mcfg.memory_validation == MEMORY_VALIDATION_HELD:
                    def emb_without(rows: Triplets):  # a head that never saw the rows the memory's epochs are chosen on
                        held_head, _ = train_head(features, rows, mcfg, seed=seed, desc=f"{desc} memory head",
                                                  progress=self.progress, init=init, refit=refit)
                        with torch.no_grad():
                            return held_head(features)

                offsets, images, history["memory"] = train_memory(emb, triplets, mcfg, seed=seed, desc=f"{desc} memory",
                                                                  progress=self.progress, emb_without=emb_without)
                state |= memory_state(offsets, [self.digests()[i] for i in images])
                at = torch.as_tensor(images, dtype=torch.long)
                emb = emb.clone()
                emb[at] = torch.nn.functional.normalize(emb[at] + offsets, dim=-1)
            return state, emb.numpy(), history
        model, history = train_lora(self.cfg.backbone, self.pixels(), triplets, mcfg, seed=seed, desc=desc,
                                    progress=self.progress, device=self.device)
        with torch.no_grad():
            emb = torch.cat([torch.nn.functional.normalize(model(chunk.to(self.device)), dim=-1).cpu()
                             for chunk in self.pixels().split(mcfg.batch_size)]).numpy()
        return lora_state(model), emb, history


#: Out-of-fold copies: without a fold's images (new images), or without a fold's rows (triplet folds:
#: images stay known; ctxsim/train/regimes.py).
IMAGE_FOLDS, TRIPLET_FOLDS = "image", "triplet"


@dataclass
class FitJob:
    """One member fit: on all of the member's triplets (``fold`` None), or without fold ``fold``'s images
    (``folds`` IMAGE_FOLDS) or rows (TRIPLET_FOLDS)."""

    spec: MemberSpec
    fold: int | None
    triplets: Triplets
    seed: int
    init: dict | None = None  # starting weights (a context head: its view's global head of the same fold)
    folds: str = IMAGE_FOLDS

    @property
    def key(self) -> tuple[str, int | None]:
        """Which fit of its member this is (the same key names the global member's fit of the same fold)."""
        return self.folds, self.fold

    @property
    def desc(self) -> str:
        if self.fold is None:
            return self.spec.name
        return f"{self.spec.name} fold {self.fold}" if self.folds == IMAGE_FOLDS else f"{self.spec.name} triplet fold {self.fold}"


