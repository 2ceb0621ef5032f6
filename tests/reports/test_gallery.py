"""The hardest misjudged triplets and their thumbnails; a missing image gets a placeholder, not a crash."""
from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

from PIL import Image

from ctxsim.reports.gallery import Thumbnailer, gallery, hardest_misjudged
from ctxsim.reports.scored import prepare


def _decode(uri: str) -> Image.Image:
    head, data = uri.split(",", 1)
    assert head == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_most_confident_wrong_answers_come_first(scored, scored_dir: Path):
    frame, _ = prepare(scored, scored_dir)
    # wrong: row 2 (p_a 0.8, label B: 0.8 sure of A) and row 3 (p_a 0.3, label A: 0.7 sure of B)
    hardest = hardest_misjudged(frame)
    assert hardest["id"].to_list() == ["2", "3"]
    assert hardest["confidence"].to_list() == [0.8, 0.7]
    assert hardest_misjudged(frame, n=1)["id"].to_list() == ["2"]
    assert hardest_misjudged(frame.drop("label")).height == 0


def test_thumbnails_are_small_jpegs(scored, scored_dir: Path):
    frame, _ = prepare(scored, scored_dir)
    items = gallery(frame, thumbnails=Thumbnailer(size=16))
    assert [i["id"] for i in items] == ["2", "3"]
    ref = _decode(items[0]["thumbs"]["ref"])
    assert ref.format == "JPEG" and max(ref.size) == 16 and ref.size == (16, 8)  # aspect ratio kept
    assert items[0]["missing"] == []


def test_a_missing_image_shows_a_placeholder_and_logs_a_warning(scored, scored_dir: Path, caplog):
    (scored_dir / "images" / "x3.png").unlink()  # candidate B of row 2, B of row 3
    frame, _ = prepare(scored, scored_dir)
    thumbs = Thumbnailer(size=20)
    with caplog.at_level(logging.WARNING):
        items = gallery(frame, thumbnails=thumbs)
    assert [i["missing"] for i in items] == [["b"], ["b"]]
    assert _decode(items[0]["thumbs"]["b"]).size == (20, 20)
    assert list(thumbs.missing) == [(scored_dir / "images" / "x3.png").resolve().as_posix()]
    assert sum("x3.png" in r.getMessage() for r in caplog.records) == 1  # once per image, not per row
