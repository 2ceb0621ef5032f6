"""build_report end to end: report.json numbers, report.md tables, notes, and all-or-nothing writing."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
import pytest

from ctxsim.errors import InputError
from ctxsim.schema import OVERALL
from ctxsim.reports.report import REPORT_FILES, build_report
from ctxsim.reports.scored import read_scored

NOTES = {"combiner": "majority_vote", "why": "the learned stacker did not beat majority vote on image-grouped validation"}


@pytest.fixture
def built(scored_dir: Path, tmp_path: Path) -> tuple[dict, Path]:
    out = tmp_path / "report"
    return build_report(read_scored(scored_dir / "scored.csv"), out, title="Hand-checked", notes=NOTES), out


def test_report_json_holds_the_hand_computed_numbers(built):
    returned, out = built
    report = json.loads((out / "report.json").read_text())
    assert report == returned
    assert report["title"] == "Hand-checked" and report["rows"] == 8 and report["labelled"] is True
    assert report["contexts"] == ["blue", "red"]
    assert [(m["name"], m["kind"]) for m in report["models"]] == [
        ("ensemble", "ensemble"), ("majority_vote", "baseline"), ("zeroshot", "member"), ("context-red", "member")]
    acc = {(r["model"], r["context"]): r for r in report["accuracy"]}
    assert acc[("ensemble", OVERALL)]["accuracy"] == pytest.approx(0.75)
    assert acc[("majority_vote", OVERALL)]["accuracy"] == pytest.approx(7 / 8)
    assert acc[("context-red", "red")]["accuracy"] == pytest.approx(0.75)
    assert acc[("ensemble", "red")]["vote_agreement"] == pytest.approx(10 / 15)
    assert set(report["calibration"]) == {"ensemble", "majority_vote"}  # members have margins, not probabilities
    assert report["calibration"]["ensemble"]["brier"] == pytest.approx(1.6425 / 8)
    # every ensemble forecast falls in its own bin, so ECE is the mean |label - p_a|
    assert report["calibration"]["ensemble"]["ece"] == pytest.approx(3.05 / 8)
    assert [h["id"] for h in report["hardest"]] == ["2", "3"]
    assert report["notes"] == NOTES
    assert any("2 triplets have tied votes" in m for m in report["messages"])
    assert {c["context"]: c["images"] for c in report["counts"]} == {"blue": 7, "red": 6, OVERALL: 12}


def test_report_md_has_every_table_and_the_notes(built):
    _, out = built
    md = (out / "report.md").read_text()
    for title in ("## Notes", "## Overall", "## Accuracy per context", "## Triplets and images per context",
                  "## Calibration", "## Hardest misjudged triplets"):
        assert title in md
    assert NOTES["why"] in md
    assert re.search(r"^\| red \| context-red \| member \| 4 \| 0\.750 \| \[0\.301, 0\.954\] \|", md, re.M)
    assert re.search(r"^\| \(all\) \| 8 \| 8 \| 5 \| 12 \|$", md, re.M)


def test_report_html_is_self_contained(built):
    _, out = built
    html = (out / "report.html").read_text()
    assert "<script" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r"(href|url)\s*[=(]", html)
    assert NOTES["why"] in html and 'id="per-context"' in html and 'id="counts"' in html


def test_unlabelled_csv_gets_counts_and_a_note(scored, scored_dir: Path, tmp_path: Path):
    csv = scored_dir / "unlabelled.csv"
    scored.drop("label", "correct").write_csv(csv)
    report = build_report(read_scored(csv), tmp_path / "r")
    assert report["labelled"] is False and report["calibration"] == {} and report["hardest"] == []
    assert any("accuracy" in m and "labelled" in m for m in report["messages"])
    assert {c["context"]: c["triplets"] for c in report["counts"]} == {"blue": 4, "red": 4, OVERALL: 8}
    assert all(r.get("accuracy") is None for r in report["accuracy"])
    assert "## Triplets and images per context" in (tmp_path / "r" / "report.md").read_text()


def test_bad_input_writes_nothing_and_keeps_an_earlier_report(built, scored):
    _, out = built
    before = {name: (out / name).read_bytes() for name in REPORT_FILES.values()}
    with pytest.raises(InputError):
        build_report(scored.with_columns(pl.lit(2.0).alias("p_a")), out)
    assert {name: (out / name).read_bytes() for name in REPORT_FILES.values()} == before
    assert sorted(os.listdir(out)) == sorted(REPORT_FILES.values())  # no temporary files left
    fresh = out.parent / "fresh"
    with pytest.raises(InputError):
        build_report(scored.drop("p_a"), fresh)
    assert not fresh.exists()


def test_a_failure_while_writing_leaves_no_half_report(scored, scored_dir: Path, tmp_path: Path, monkeypatch):
    real_write, calls = Path.write_text, []

    def second_write_fails(self, *args, **kw):
        calls.append(self)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(self, *args, **kw)

    monkeypatch.setattr(Path, "write_text", second_write_fails)
    out = tmp_path / "half"
    with pytest.raises(OSError, match="disk full"):
        build_report(scored, out, images_root=scored_dir)
    assert len(calls) == 2  # the first file was written (to its temporary name) ...
    assert os.listdir(out) == []  # ... and neither renamed nor left behind


def test_missing_gallery_image_is_reported_not_fatal(scored, scored_dir: Path, tmp_path: Path):
    (scored_dir / "images" / "x2.png").unlink()  # A of row 2, the hardest triplet
    report = build_report(scored, tmp_path / "r", images_root=scored_dir)
    assert [m["path"].rsplit("/", 1)[-1] for m in report["missing_images"]] == ["x2.png"]
    assert any("placeholder" in m for m in report["messages"])
    assert "(missing)" in (tmp_path / "r" / "report.html").read_text()
