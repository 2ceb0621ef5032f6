"""A small file that decodes to a huge image is refused from its header, with bounded memory."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from ctxsim.cli import main
from ctxsim.data.images import load_image
from ctxsim.errors import ImageError
from tests.conftest import write_csv

SIDE = 12000  # 144 megapixels: ~430 MB as RGB, more on the way; under PIL's own bomb limit


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("1", (SIDE, SIDE)).save(path)  # all zeros: a few hundred KB on disk
    return path


def _triplets_with(tmp_path, image):
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(small)
    return write_csv(tmp_path / "t.csv", [(str(image), str(small), str(small))], ("ref", "a", "b"))


def test_data_validate_refuses_a_huge_image_naming_it(tmp_path, huge_png, capsys):
    assert main(["data", "validate", str(_triplets_with(tmp_path, huge_png))]) == 2
    err = capsys.readouterr()
    assert "huge.png" in err.out + err.err and "too large" in err.out + err.err and "Traceback" not in err.err


def test_a_decompression_bomb_is_an_image_error(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 MP: over PIL's own limit too
    with pytest.raises(ImageError, match="too large"):
        load_image(bomb)


def test_the_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "mid.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setenv("CTXSIM_MAX_IMAGE_PIXELS", "5000")
    with pytest.raises(ImageError, match="5,000"):
        load_image(path)
    monkeypatch.setenv("CTXSIM_MAX_IMAGE_PIXELS", "20000")
    assert load_image(path).size == (100, 100)


def test_a_big_jpeg_is_shrunk_while_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (800, 600), (10, 200, 30)).save(path)
    monkeypatch.setenv("CTXSIM_MAX_IMAGE_PIXELS", str(800 * 600 // 4))
    img = load_image(path)
    assert img.size == (400, 300) and img.getpixel((5, 5))[1] > 150


def test_validating_a_huge_image_keeps_memory_bounded(tmp_path, huge_png):
    csv = _triplets_with(tmp_path, huge_png)
    code = textwrap.dedent(f"""
        import json, resource, sys
        from ctxsim.cli import main
        from ctxsim.data.triplets import validate
        validate([{str(tmp_path / 'small_only.csv')!r}])  # warm up: every import and a small image
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        code = main(["data", "validate", {str(csv)!r}])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"code": code, "base_kb": base, "peak_kb": peak}}))
    """)
    small = tmp_path / "small.png"
    write_csv(tmp_path / "small_only.csv", [(str(small), str(small), str(small))], ("ref", "a", "b"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 2, done.stderr
    assert result["peak_kb"] - result["base_kb"] < 300 * 1024, result
