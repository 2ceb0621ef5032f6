"""report.md must not carry raw HTML or live Markdown from the data (context names, model names, titles)."""
from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ctxsim.reports.report import build_report
from ctxsim.reports.scored import read_scored
from tests.reports.conftest import _scored_frame, write_images

HOSTILE = "<script>alert(1)</script>|*x*"


def _cells(line: str) -> int:
    """Cells of a GFM table row: borders are the pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_hostile_context_and_title_are_inert_in_report_md(tmp_path: Path):
    root = tmp_path / "run"
    write_images(root)
    frame = _scored_frame().with_columns(pl.col("context").replace({"red": HOSTILE}))
    frame.write_csv(root / "scored.csv")
    out = tmp_path / "report"
    build_report(read_scored(root / "scored.csv"), out, title="<img src=x onerror=alert(2)> *bold* | title",
                 notes={"<b>note</b>": "[link](javascript:alert(3))"})
    md = (out / "report.md").read_text()
    assert "<script" not in md.lower() and "<img" not in md.lower() and "<b>" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md) and "\\[link\\]" in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|\\*x\\*" in md  # still readable, escaped
    heading = md.splitlines()[0]
    assert heading.startswith("# ") and "\\*bold\\*" in heading and "\\|" in heading
    # every table keeps as many cells per row as its header
    blocks = re.findall(r"((?:^\|.*\|$\n?)+)", md, re.M)
    assert blocks
    for block in blocks:
        rows = block.strip("\n").splitlines()
        assert {_cells(r) for r in rows} == {_cells(rows[0])}, block
    assert any(HOSTILE.split("|")[0][:3] not in r and "alert(1)" in r for b in blocks for r in b.splitlines())
