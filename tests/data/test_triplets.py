"""The triplet CSV layer: reading, resolving paths, validation that reports every problem, writing."""
from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from ctxsim.errors import InputError, Problem
from ctxsim.data.triplets import iter_triplet_chunks, read_triplets, relative_to, validate, write_triplets
from ctxsim.schema import PATH, ROW, SOURCE


def where(report):
    """Problems as comparable (row, column, severity) tuples."""
    return sorted(((p.row or 0, p.column or "", p.severity) for p in report.problems))


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# -- reading and path resolution ---------------------------------------------------------------------
def test_valid_file_reads_with_generated_ids_and_paths_resolved_against_its_folder(triplet_set, tmp_path):
    csv, images = triplet_set
    report = validate(csv)
    assert report.ok and report.problems == [] and report.n_rows == 12

    df = read_triplets(csv)
    assert df.height == 12
    assert df["id"].to_list() == [str(i) for i in range(1, 13)]
    assert df[ROW].to_list() == list(range(1, 13))
    assert set(df[SOURCE]) == {str(csv)}
    root = tmp_path.resolve()
    for c in ("ref", "a", "b"):
        assert all(Path(p) == root / rel for p, rel in zip(df[PATH[c]], df[c]))
    assert {Path(p).name for p in df[PATH["ref"]]} == {p.name for p in images}


def test_existing_id_column_is_kept(tmp_path, make_images, write_csv):
    a, b, c = make_images(3)
    csv = write_csv(tmp_path / "t.csv", [("x7", a.name, b.name, c.name)], header=("id", "ref", "a", "b"))
    (tmp_path / "images").rename(tmp_path / "imgs")
    df = read_triplets(csv, tmp_path / "imgs")
    assert df["id"].to_list() == ["x7"]


def test_paths_resolve_against_images_root_when_given(tmp_path, make_images, write_csv, monkeypatch):
    imgs = make_images(3, folder="pictures")
    rows = [tuple(p.name for p in imgs) + ("A",)]
    csv = write_csv(tmp_path / "csvs" / "t.csv", rows)
    # Without --images the paths resolve against the CSV's folder, where the images are not.
    report = validate(csv)
    assert not report.ok
    assert where(report) == [(1, "a", "error"), (1, "b", "error"), (1, "ref", "error")]
    assert all(str(tmp_path / "csvs") in p.message for p in report.problems)
    # With --images they are found; a relative root is taken from the working directory.
    assert validate(csv, tmp_path / "pictures").ok
    monkeypatch.chdir(tmp_path)
    df = read_triplets(csv, "pictures")
    assert Path(df[PATH["a"]][0]) == imgs[1].resolve()


def test_absolute_paths_are_used_as_they_are(tmp_path, make_images, write_csv):
    imgs = make_images(3, folder="elsewhere")
    csv = write_csv(tmp_path / "sub" / "t.csv", [tuple(str(p.resolve()) for p in imgs) + ("B",)])
    assert validate(csv, tmp_path / "no-such-root").ok
    df = read_triplets(csv, tmp_path / "no-such-root")
    assert df[PATH["b"]].to_list() == [str(imgs[2].resolve())]


def test_several_csvs_at_once(tmp_path, make_images, write_csv):
    imgs = [f"images/{p.name}" for p in make_images(4)]
    one = write_csv(tmp_path / "one.csv", [(imgs[0], imgs[1], imgs[2], "A"), (imgs[1], imgs[2], imgs[3], "B")])
    two = write_csv(
        tmp_path / "two.csv", [(imgs[3], imgs[0], imgs[1], "A", "shoes")], header=("ref", "a", "b", "label", "context")
    )
    report = validate([one, two])
    assert report.ok and report.n_rows == 3
    df = read_triplets([one, two])
    assert df.height == 3
    assert df[SOURCE].to_list() == [str(one), str(one), str(two)]
    assert df["context"].to_list() == [None, None, "shoes"]
    assert df["id"].to_list() == ["1", "2", "1"]


# -- validation: every problem, with file, row and column ----------------------------------------------
def test_every_problem_is_reported_with_its_row_and_column(tmp_path, make_images, write_csv):
    imgs = [f"images/{p.name}" for p in make_images(6)]
    corrupt = truncate(tmp_path / imgs[5])
    rows = [
        (imgs[0], imgs[1], imgs[2], "A"),  # 1 fine
        (imgs[0], imgs[1], "", "A"),  # 2 empty cell in b
        (imgs[1], imgs[2], imgs[3], "C"),  # 3 label other than A/B
        (imgs[1], imgs[3], imgs[4], ""),  # 4 empty label
        (imgs[2], "images/missing.png", imgs[3], "B"),  # 5 missing image in a
        (imgs[3], imgs[4], imgs[5], "A"),  # 6 corrupt image in b
        (imgs[4], imgs[4], imgs[0], "B"),  # 7 ref equal to a
        (imgs[0], imgs[2], imgs[1], "B"),  # 8 duplicate of row 1 (candidates swapped): a warning
        (imgs[2], imgs[0], imgs[2], "A"),  # 9 ref equal to b
    ]
    csv = write_csv(tmp_path / "bad.csv", rows)
    report = validate(csv)
    assert not report.ok
    assert report.n_rows == 9
    assert where(report) == [
        (2, "b", "error"),
        (3, "label", "error"),
        (4, "label", "error"),
        (5, "a", "error"),
        (6, "b", "error"),
        (7, "a", "error"),
        (8, "", "warning"),
        (9, "b", "error"),
    ]
    assert all(p.file == str(csv) for p in report.problems)
    by_row = {p.row: p for p in report.problems}
    assert "'C'" in by_row[3].message
    assert "not found" in by_row[5].message and "missing.png" in by_row[5].message
    assert "truncated" in by_row[6].message and str(corrupt.resolve()) in by_row[6].message
    assert "duplicate of row 1" in by_row[8].message
    # The message says where: file, row (and the line it is on), column.
    assert str(by_row[3]) == f"error: {csv}, row 3 (line 4), column 'label': expected 'A' or 'B', got 'C'"

    with pytest.raises(InputError) as err:
        read_triplets(csv)
    assert len(err.value.problems) == 7  # warnings are logged, not raised
    assert all(p.severity == "error" for p in err.value.problems)


def test_bad_label_in_row_7(tmp_path, triplet_set, write_csv):
    csv, _ = triplet_set
    rows = pl.read_csv(csv).rows()
    rows[6] = (*rows[6][:3], "a")
    csv = write_csv(csv, rows)
    (problem,) = validate(csv).problems
    assert (problem.row, problem.column, problem.severity) == (7, "label", "error")


def test_missing_required_columns_are_reported_and_other_files_still_checked(tmp_path, triplet_set, write_csv):
    good, _ = triplet_set
    no_a = write_csv(tmp_path / "no_a.csv", [("images/img0.png", "images/img1.png")], header=("ref", "b"))
    bad_row = write_csv(tmp_path / "bad_row.csv", [("images/img0.png", "images/img1.png", "images/img2.png", "X")])
    report = validate([no_a, good, bad_row], require_label=True)
    got = sorted((Path(p.file).name, p.row, p.column) for p in report.problems)
    assert got == [("bad_row.csv", 1, "label"), ("no_a.csv", None, "a"), ("no_a.csv", None, "label")]
    assert all("the header has: ref, b" in p.message for p in report.problems if p.row is None)
    assert report.n_rows == 12 + 1
    # the label column is optional unless required
    assert validate(write_csv(tmp_path / "unlabelled.csv", [("images/img0.png", "images/img1.png", "images/img2.png")], header=("ref", "a", "b"))).ok


def test_missing_file_empty_file_and_header_only_file(tmp_path, write_csv):
    assert [p.message for p in validate(tmp_path / "nope.csv").problems] == ["triplet file not found"]
    (tmp_path / "empty.csv").write_text("")
    (problem,) = validate(tmp_path / "empty.csv").problems
    assert problem.severity == "error" and "not a readable CSV" in problem.message
    header_only = write_csv(tmp_path / "header.csv", [])
    report = validate(header_only)
    assert report.ok and report.n_rows == 0
    assert read_triplets(header_only).height == 0


def test_rows_with_too_many_fields_are_named(tmp_path, triplet_set):
    csv, _ = triplet_set
    lines = csv.read_text().splitlines()
    lines[3] += ",extra"  # data row 3
    lines[8] += ",x,y"  # data row 8
    csv.write_text("\n".join(lines) + "\n")
    report = validate(csv)
    assert [(p.row, p.severity) for p in report.problems] == [(3, "error"), (8, "error")]
    assert report.problems[0].message == "5 fields, but the header has 4 columns"
    with pytest.raises(InputError):
        read_triplets(csv)


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"ref,a,b,label\nx\xe9.png,y.png,z.png,A\n")
    (problem,) = validate(bad).problems
    assert problem.row is None and "not a readable CSV file" in problem.message


def test_duplicates_are_only_warnings(tmp_path, triplet_set, write_csv):
    csv, _ = triplet_set
    rows = pl.read_csv(csv).rows()
    csv = write_csv(csv, rows + [rows[0], (rows[3][0], rows[3][2], rows[3][1], "A")])
    report = validate(csv)
    assert report.ok
    assert [(p.row, p.severity) for p in report.problems] == [(13, "warning"), (14, "warning")]
    assert [p.message for p in report.problems] == ["duplicate of row 1 (same ref and candidates)", "duplicate of row 4 (same ref and candidates)"]
    assert read_triplets(csv).height == 14


def test_a_missing_image_named_by_many_rows_is_reported_once_at_its_first_row(tmp_path, triplet_set, write_csv):
    csv, images = triplet_set
    images[4].unlink()  # img4 is named in rows 4..12 in several columns
    df = pl.read_csv(csv).with_row_index("row", offset=1)
    naming = df.filter(pl.any_horizontal(pl.col("ref", "a", "b") == "images/img4.png"))
    (problem,) = validate(csv).problems
    assert problem.row == naming["row"][0]
    assert f"named by {naming.height} rows" in problem.message


def test_vote_columns_must_be_whole_numbers(tmp_path, make_images, write_csv):
    imgs = [f"images/{p.name}" for p in make_images(4)]
    rows = [(imgs[0], imgs[1], imgs[2], "A", 3, 1), (imgs[1], imgs[2], imgs[3], "B", "-1", 2), (imgs[2], imgs[3], imgs[0], "A", 2, "x")]
    csv = write_csv(tmp_path / "v.csv", rows, header=("ref", "a", "b", "label", "votes_a", "votes_b"))
    assert where(validate(csv)) == [(2, "votes_a", "error"), (3, "votes_b", "error")]
    ok = write_csv(tmp_path / "ok.csv", [rows[0], (imgs[1], imgs[2], imgs[3], "B", "", "")], header=("ref", "a", "b", "label", "votes_a", "votes_b"))
    df = read_triplets(ok)
    assert df.schema["votes_a"] == pl.Int64
    assert df["votes_a"].to_list() == [3, None]


def test_image_checks_can_be_skipped(tmp_path, write_csv):
    csv = write_csv(tmp_path / "t.csv", [("r.png", "a.png", "b.png", "A")])
    assert not validate(csv).ok
    assert validate(csv, check_images=False).ok


# -- streaming and writing --------------------------------------------------------------------------
def test_chunks_cover_every_row_once_in_order(tmp_path, write_csv):
    rows = [(f"r{i}.png", f"a{i}.png", f"b{i}.png", "AB"[i % 2], i, 1) for i in range(25)]
    one = write_csv(tmp_path / "one.csv", rows, header=("ref", "a", "b", "label", "votes_a", "votes_b"))
    two = write_csv(tmp_path / "two.csv", rows[:3], header=("ref", "a", "b", "label", "votes_a", "votes_b"))
    chunks = list(iter_triplet_chunks([one, two], chunk_rows=7))
    assert [c.height for c in chunks] == [7, 7, 7, 4, 3]
    whole = pl.concat(chunks)
    assert whole["ref"].to_list() == [r[0] for r in rows] + [r[0] for r in rows[:3]]
    assert whole[ROW].to_list() == list(range(1, 26)) + [1, 2, 3]
    assert whole.schema["votes_a"] == pl.Int64


def test_write_triplets_writes_public_columns_and_round_trips(triplet_set, tmp_path):
    csv, _ = triplet_set
    df = read_triplets(csv)
    out = tmp_path / "deep" / "out.csv"
    write_triplets(df, out)
    assert out.read_text().splitlines()[0] == "ref,a,b,label,id"
    again = read_triplets(out, tmp_path)
    assert again.select("ref", "a", "b", "label", "id").equals(df.select("ref", "a", "b", "label", "id"))
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_write_triplets_leaves_nothing_half_written(tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    out.write_text("old\n")

    def fail(self, file, **kw):
        Path(file).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_csv", fail)
    with pytest.raises(OSError):
        write_triplets(pl.DataFrame({"ref": ["x"], "a": ["y"], "b": ["z"]}), out)
    assert out.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [out]


def test_written_files_are_readable_like_any_other_file(tmp_path):
    out = tmp_path / "out.csv"
    write_triplets(pl.DataFrame({"ref": ["x"], "a": ["y"], "b": ["z"]}), out)
    old = os.umask(0o022)
    os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o666 & ~old


def test_relative_to(tmp_path):
    root = tmp_path.resolve()
    paths = pl.Series([f"{root}/images/x.png", "/elsewhere/y.png"])
    assert pl.select(relative_to(pl.lit(paths), root)).to_series().to_list() == ["images/x.png", "/elsewhere/y.png"]


def test_problem_text():
    assert str(Problem("f.csv", "bad", 7, "label")) == "error: f.csv, row 7 (line 8), column 'label': bad"
    assert str(Problem("f.csv", "no file")) == "error: f.csv: no file"
    assert str(Problem("f.csv", "dup", 3, severity="warning")) == "warning: f.csv, row 3 (line 4): dup"
