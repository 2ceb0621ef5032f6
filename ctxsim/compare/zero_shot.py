"""The zero-shot comparator: one pretrained backbone's features compared by cosine distance (``backbone:NAME``).

It builds its backbone (torch, the weights) when created: the weights name the embedding cache's key."""
from __future__ import annotations

import polars as pl

from ctxsim.compare.comparator import ZERO_SHOT_SCALE, Comparator, sigmoid
from ctxsim.embedding import distances
from ctxsim.embedding.cache import embed_images
from ctxsim.members.inference import build_backbone
from ctxsim.schema import DEFAULT_CONTEXT, ZEROSHOT


class ZeroShotComparator(Comparator):
    """One member, ``zeroshot``: a pretrained backbone's features compared by cosine distance."""

    def __init__(self, backbone_name: str, **kw):
        super().__init__(**kw)
        self.backbone = build_backbone(backbone_name, pretrained=True)

    @property
    def member_names(self) -> list[str]:
        return [ZEROSHOT]

    def _image_data(self, paths):
        feats = embed_images(paths, self.backbone, self.cache, device=self.device, progress=self.progress)
        return {ZEROSHOT: distances.l2_normalize(feats)}

    def _combine(self, margins, codes, chunk):
        context = chunk["context"].fill_null(DEFAULT_CONTEXT) if "context" in chunk.columns else pl.Series([DEFAULT_CONTEXT] * chunk.height)
        return sigmoid(ZERO_SHOT_SCALE * margins[ZEROSHOT]), context, {}

