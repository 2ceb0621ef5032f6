"""The image loader (EXIF orientation, RGB, clear errors) and content digests."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from ctxsim.errors import ImageError
from ctxsim.data.images import file_digest, image_problem, load_image

EXIF_ORIENTATION = 0x0112
ROTATE_90_CW = 6  # the EXIF value meaning "rotate 90 degrees clockwise to display"


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high, the left half white
    stored[:, :20] = 255
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)

    img = load_image(tmp_path / "rotated.jpg")
    assert img.size == (20, 40)  # upright: 20 wide, 40 high
    px = np.asarray(img, dtype=float)
    # Rotating clockwise moves the stored left half to the top.
    assert px[:18].mean() > 240 and px[22:].mean() < 15


@pytest.mark.parametrize(
    ("mode", "shape"),
    [("L", (6, 5)), ("RGBA", (6, 5, 4)), ("P", (6, 5)), ("I;16", (6, 5)), ("RGB", (6, 5, 3))],
)
def test_every_mode_loads_as_rgb(tmp_path, mode, shape):
    arr = np.full(shape, 7, np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode not in ("RGBA", "RGB", "L") else Image.fromarray(arr)
    img.save(tmp_path / "x.png")
    out = load_image(tmp_path / "x.png")
    assert out.mode == "RGB" and out.size == (5, 6)


def test_loads_fully_decoded_and_file_released(tmp_path, make_images):
    (path,) = make_images(1, ext="jpg")
    img = load_image(path)
    os.remove(path)  # the pixels are already in memory
    assert np.asarray(img).shape == (36, 48, 3)


def test_truncated_jpeg_raises_a_clear_error(tmp_path, make_images):
    (path,) = make_images(1, ext="jpg")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert err.value.path == str(path)
    assert "truncated" in err.value.reason
    assert str(path) in str(err.value)
    assert image_problem(path) == err.value.reason


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b"this is not an image"), "not a readable image"),
        (lambda p: p.write_bytes(b""), "not a readable image"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: None, "image file not found"),
    ],
    ids=["garbage", "empty", "folder", "missing"],
)
def test_unusable_files_raise_image_error(tmp_path, make, reason):
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageError, match=reason):
        load_image(path)
    assert reason in image_problem(path)


def test_good_image_has_no_problem(make_images):
    assert [image_problem(p) for p in make_images(2)] == [None, None]


def test_file_digest_follows_content_not_path(tmp_path, make_images):
    a, b = make_images(2)
    copy = tmp_path / "copy.png"
    copy.write_bytes(a.read_bytes())
    assert file_digest(a) == file_digest(copy) != file_digest(b)
    assert len(file_digest(a)) == 64
    # a rewritten file gets a new digest even though its path is the same
    before = file_digest(copy)
    copy.write_bytes(b.read_bytes())
    os.utime(copy, ns=(1, 1))
    assert file_digest(copy) == file_digest(b) != before
