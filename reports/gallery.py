"""The hardest misjudged triplets: the ensemble's most confident wrong answers, as small thumbnails.

Thumbnails are JPEGs embedded as ``data:`` URIs so the report stays one self-contained file. An
image that cannot be loaded gets a placeholder and one warning; it never stops the report.
"""
from __future__ import annotations

import base64
import io
import logging

import polars as pl
from PIL import Image, ImageDraw

from ctxsim.data.images import load_image
from ctxsim.errors import ImageError
from ctxsim.schema import IMAGE_COLUMNS, PATH

log = logging.getLogger(__name__)

#: Triplets shown in the gallery.
DEFAULT_GALLERY_SIZE = 12
#: Longest side of a thumbnail, in pixels.
DEFAULT_THUMB_PX = 112
#: JPEG quality of thumbnails: small files, faces and textures still recognisable.
JPEG_QUALITY = 80
_PLACEHOLDER_BG, _PLACEHOLDER_FG = (230, 230, 230), (160, 60, 60)


def hardest_misjudged(frame: pl.DataFrame, n: int = DEFAULT_GALLERY_SIZE) -> pl.DataFrame:
    """Labelled rows the ensemble got wrong, most confident first (``confidence`` = P of its answer)."""
    if "label" not in frame.columns:
        return frame.clear().with_columns(pl.lit(None, pl.Float64).alias("confidence"))
    confidence = pl.max_horizontal(pl.col("p_a"), 1 - pl.col("p_a")).alias("confidence")
    return (
        frame.filter(pl.col("label").is_not_null() & (pl.col("pred") != pl.col("label")))
        .with_columns(confidence)
        .sort(["confidence", "_row"], descending=[True, False])
        .head(n)
    )


class Thumbnailer:
    """Turns image paths into small JPEG ``data:`` URIs; each path is loaded once."""

    def __init__(self, size: int = DEFAULT_THUMB_PX, quality: int = JPEG_QUALITY):
        self.size, self.quality = size, quality
        self._uris: dict[str, str] = {}
        self.missing: dict[str, str] = {}  # path -> why it could not be shown

    def __call__(self, path: str) -> str:
        if path not in self._uris:
            try:
                img = load_image(path)
            except ImageError as err:
                log.warning("report gallery: %s; showing a placeholder", err)
                self.missing[path] = err.reason
                img = self._placeholder()
            img.thumbnail((self.size, self.size))
            self._uris[path] = self._encode(img)
        return self._uris[path]

    def _placeholder(self) -> Image.Image:
        img = Image.new("RGB", (self.size, self.size), _PLACEHOLDER_BG)
        draw = ImageDraw.Draw(img)
        draw.line((0, 0, self.size, self.size), fill=_PLACEHOLDER_FG, width=2)
        draw.line((0, self.size, self.size, 0), fill=_PLACEHOLDER_FG, width=2)
        return img

    def _encode(self, img: Image.Image) -> str:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=self.quality)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def gallery(frame: pl.DataFrame, n: int = DEFAULT_GALLERY_SIZE, thumbnails: Thumbnailer | None = None) -> list[dict]:
    """One dict per hardest misjudged triplet: what happened, and a thumbnail of ref, A and B."""
    thumbnails = thumbnails or Thumbnailer()
    items = []
    for row in hardest_misjudged(frame, n).iter_rows(named=True):
        item = {k: row.get(k) for k in ("id", "context", "ref", "a", "b", "label", "pred", "p_a", "confidence", "votes_a", "votes_b")}
        item["thumbs"] = {c: thumbnails(row[PATH[c]]) for c in IMAGE_COLUMNS}
        item["missing"] = [c for c in IMAGE_COLUMNS if row[PATH[c]] in thumbnails.missing]
        items.append(item)
    return items
