"""``compare --skip-bad-images``: unreadable images are listed beside the output, their rows left out,
the rest scored; without the flag the same input is exit 2 naming the file, row and column."""
from __future__ import annotations

import polars as pl

from ctxsim.cli import main
from ctxsim.embedding.bad_images import bad_images_file
from tests.conftest import write_csv


def test_compare_skips_rows_naming_unreadable_images(tmp_path, make_images, capsys):
    good = [p.name for p in make_images(4, folder=tmp_path)]  # beside the CSV
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows = [(good[0], good[1], good[2], "A"), (good[0], "broken.png", good[3], "B"), (good[1], good[2], good[3], "A")]
    csv = write_csv(tmp_path / "t.csv", rows)
    out = tmp_path / "scored.csv"
    assert main(["compare", "backbone:test_tiny", str(csv), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "row 2" in err and not out.exists()
    assert main(["compare", "backbone:test_tiny", str(csv), "--out", str(out), "--skip-bad-images"]) == 0
    assert pl.read_csv(out)["a"].to_list() == [good[1], good[2]]
    listed = bad_images_file(out).read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(str((tmp_path / "broken.png").resolve()))
    assert "row 2" in listed[0]
