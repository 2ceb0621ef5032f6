"""Views: what a member sees of an image — a backbone, one of its layers, optionally flip-averaged.

Diverse views, not finer contexts alone, make an ensemble beat its best member (DreamSim's ensemble
of backbones; LPIPS's several layers). A view is written ``BACKBONE[/LAYER][+flip]``:
``efficientnet_lite1`` (last layer), ``efficientnet_lite0/mid`` (the average-pooled second-to-last
feature stage), ``efficientnet_lite0/grid`` (the last feature map pooled over a 3 x 3 grid of the image
instead of the whole of it: where in the picture a feature is, which global pooling forgets — the shape of
a shoe photographed from the side), ``efficientnet_lite0+flip`` (features of the image and its mirror image
averaged). In a run's config, ``mid`` and ``grid`` alone name the primary backbone's. Torch-free: the config
imports it; :func:`ctxsim.members.backbones.create_view` builds the network.
"""
from __future__ import annotations

from dataclasses import dataclass

LAST, MID, GRID = "last", "mid", "grid"
LAYERS = (LAST, MID, GRID)
#: Cells per side of a ``grid`` view: the last feature map average-pooled to GRID_SIDE x GRID_SIDE.
GRID_SIDE = 3
FLIP_SUFFIX = "+flip"
#: Separates a member's name from its view's label: ``global@lite1``.
VIEW_SEPARATOR = "@"
_SHORT_PREFIX = "efficientnet_"


@dataclass(frozen=True)
class View:
    backbone: str
    layer: str = LAST
    flip: bool = False

    @classmethod
    def parse(cls, spec: str, primary: str | None = None) -> View:
        """``spec`` as written in a config; ``mid``, ``grid`` (``+flip``) name a layer of ``primary``."""
        text, flip = (spec[: -len(FLIP_SUFFIX)], True) if spec.endswith(FLIP_SUFFIX) else (spec, False)
        if text in LAYERS:
            if primary is None:
                raise ValueError(f"view {spec!r} names a layer but no backbone")
            backbone, layer = primary, text
        else:
            backbone, _, layer = text.partition("/")
            layer = layer or LAST
        if not backbone or layer not in LAYERS:
            raise ValueError(f"view {spec!r}: expected BACKBONE[/{'|'.join(LAYERS)}][{FLIP_SUFFIX}]")
        return cls(backbone, layer, flip)

    @property
    def spec(self) -> str:
        """The canonical spelling (what a run stores)."""
        return self.backbone + ("" if self.layer == LAST else f"/{self.layer}") + (FLIP_SUFFIX if self.flip else "")

    @property
    def label(self) -> str:
        """A short name for member names: ``lite0-mid``, ``lite1``, ``test_tiny-flip``."""
        name = self.backbone.removeprefix(_SHORT_PREFIX)
        return name + ("" if self.layer == LAST else f"-{self.layer}") + ("-flip" if self.flip else "")


def member_name(base: str, view: View, primary: View) -> str:
    """Members of the primary view keep their plain names (``global``); the others carry their view."""
    return base if view == primary else f"{base}{VIEW_SEPARATOR}{view.label}"
