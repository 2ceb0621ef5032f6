"""``ctxsim report``: exit codes, what it prints, and that the parser stays light."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from ctxsim.cli import main
from ctxsim.errors import EXIT_INVALID_INPUT


def test_report_command_writes_three_files(scored_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(scored_dir / "scored.csv"), "--out", str(out), "--gallery", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    report = json.loads((out / "report.json").read_text())
    assert report["title"] == "ctxsim report: scored.csv" and len(report["hardest"]) == 1
    printed = capsys.readouterr().out
    assert "ensemble" in printed and "majority_vote" in printed and str(out / "report.html") in printed


def test_images_flag_sets_the_root_of_relative_paths(scored_dir: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    csv = elsewhere / "scored.csv"
    csv.write_bytes((scored_dir / "scored.csv").read_bytes())
    out = tmp_path / "rep"
    assert main(["report", str(csv), "--images", str(scored_dir), "--out", str(out)]) == 0
    assert "missing_images" not in json.loads((out / "report.json").read_text())


def test_bad_scored_csv_exits_2_names_the_cell_and_writes_nothing(scored_dir: Path, tmp_path: Path, capsys):
    df = pl.read_csv(scored_dir / "scored.csv", infer_schema=False)
    bad = scored_dir / "bad.csv"
    df.with_columns(pl.when(pl.col("id") == "3").then(pl.lit("C")).otherwise(pl.col("label")).alias("label")).write_csv(bad)
    out = tmp_path / "rep"
    assert main(["report", str(bad), "--out", str(out)]) == EXIT_INVALID_INPUT
    err = capsys.readouterr().err
    assert f"{bad}, row 3 (line 4), column 'label'" in err
    assert not out.exists()
    assert main(["report", str(tmp_path / "missing.csv"), "--out", str(out)]) == EXIT_INVALID_INPUT


def test_building_the_parser_imports_no_heavy_library():
    code = (
        "import sys; from ctxsim.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('matplotlib', 'torch', 'polars', 'sklearn', 'PIL') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
