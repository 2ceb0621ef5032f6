"""A small scored CSV whose every number in the report is worked out by hand in the tests.

Ensemble (p_a), one baseline (p_a_majority_vote) and two members (margin_*), two contexts,
vote counts with one tie per context, and tiny generated images.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from PIL import Image

#: id, context, ref, a, b, label, votes_a, votes_b, p_a, margin_zeroshot, margin_context-red, p_a_majority_vote
ROWS = [
    ("1", "red", "r1", "x1", "x2", "A", 3, 1, 0.9, 0.2, 0.1, 0.6),
    ("2", "red", "r1", "x2", "x3", "B", 1, 2, 0.8, -0.1, -0.3, 0.4),
    ("3", "red", "r2", "x1", "x3", "A", 2, 2, 0.3, 0.05, 0.0, 0.5),
    ("4", "red", "r2", "x4", "x1", "B", 0, 4, 0.1, -0.2, -0.1, 0.2),
    ("5", "blue", "b1", "x1", "y1", "A", 1, 0, 0.6, -0.05, 0.3, 0.7),
    ("6", "blue", "b1", "y1", "y2", "B", 2, 3, 0.45, 0.1, -0.2, 0.55),
    ("7", "blue", "b2", "y2", "y3", "A", 4, 1, 0.7, 0.3, 0.2, 0.5),
    ("8", "blue", "b3", "y3", "x1", "B", 1, 1, 0.2, -0.1, 0.1, 0.3),
]
COLUMNS = ["id", "context", "ref", "a", "b", "label", "votes_a", "votes_b", "p_a",
           "margin_zeroshot", "margin_context-red", "p_a_majority_vote"]
IMAGE_NAMES = sorted({name for row in ROWS for name in row[2:5]})
THUMB_SOURCE_PX = 40


def _scored_frame() -> pl.DataFrame:
    """The rows as ``compare`` would hold them in memory (typed), with image paths under images/."""
    df = pl.DataFrame(ROWS, schema=COLUMNS, orient="row")
    df = df.with_columns(pl.format("images/{}.png", c).alias(c) for c in ("ref", "a", "b"))
    pred = pl.when(pl.col("p_a") >= 0.5).then(pl.lit("A")).otherwise(pl.lit("B"))
    return df.with_columns(pred.alias("pred")).with_columns((pl.col("pred") == pl.col("label")).alias("correct"))


def write_images(root: Path) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(IMAGE_NAMES):
        colour = (40 + 17 * i % 200, 200 - 13 * i % 180, 90 + 29 * i % 160)
        Image.new("RGB", (THUMB_SOURCE_PX, THUMB_SOURCE_PX // 2), colour).save(root / "images" / f"{name}.png")


@pytest.fixture
def scored_dir(tmp_path: Path) -> Path:
    """A folder with images/ and scored.csv (the CSV's folder is the images root)."""
    root = tmp_path / "run"
    write_images(root)
    _scored_frame().write_csv(root / "scored.csv")
    return root


@pytest.fixture
def scored() -> pl.DataFrame:
    """The hand-checked rows, typed as ``compare`` holds them in memory; image paths under images/."""
    return _scored_frame()
