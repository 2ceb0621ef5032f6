"""Importers from the upstream zappos and materials formats into triplet CSVs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest

from ctxsim.errors import InputError
from ctxsim.data.importers import IMPORTERS, import_dataset
from ctxsim.data.triplets import read_triplets, validate
from tests.conftest import write_image

N_ROWS = 400  # enough rows that a fair shuffle puts label A between 40% and 60% of the time


def closer_of(df: pl.DataFrame) -> list[str]:
    return [a if lab == "A" else b for a, b, lab in df.select("a", "b", "label").rows()]


def farther_of(df: pl.DataFrame) -> list[str]:
    return [b if lab == "A" else a for a, b, lab in df.select("a", "b", "label").rows()]


@pytest.fixture
def zappos_src(tmp_path):
    """An upstream zappos folder: images/<id>.jpg and a header-less head,closer,farther CSV."""
    src = tmp_path / "zappos_src"
    for i in range(8):
        write_image(src / "images" / f"{i}.jpg", seed=i)
    rows = [(k % 8, (k + 1 + k // 8) % 8, (k + 3 + k // 8) % 8) for k in range(N_ROWS)]
    rows = [r for r in rows if len(set(r)) == 3]
    (src / "deconflicted_triplets.csv").write_text("".join(f"{h},{c},{f}\n" for h, c, f in rows))
    return src, rows


@pytest.fixture
def materials_src(tmp_path):
    """An upstream materials folder: images/*.jpg and answers_processed_<split>.json files."""
    src = tmp_path / "materials_src"
    names = ["zinc", "acrylic", "nickel", "brass", "gold", "maroon-plastic"]  # not in sorted order
    for i, n in enumerate(names):
        write_image(src / "images" / f"{n}.jpg", seed=100 + i)
    answers = [[k % 6, (k + 1) % 6, (k + 2 + k // 6) % 6] for k in range(N_ROWS)]
    answers = [t for t in answers if len(set(t)) == 3]
    votes = [[3 + k % 3, k % 4] for k in range(len(answers))]
    (src / "answers_processed_train.json").write_text(json.dumps({"answers": answers, "agreement": votes}))
    (src / "answers_processed_test.json").write_text(json.dumps({"answers": answers[:10], "agreement": votes[:10]}))
    return src, sorted(f"images/{n}.jpg" for n in names), answers, votes


def test_zappos_import(zappos_src, tmp_path):
    src, rows = zappos_src
    out = tmp_path / "out"
    (csv,) = import_dataset("zappos", src, out)
    assert csv == out / "triplets.csv"
    df = pl.read_csv(csv, infer_schema=False)
    assert df.columns == ["ref", "a", "b", "label"]
    assert df.height == len(rows)
    assert df["ref"].to_list() == [f"images/{h}.jpg" for h, _, _ in rows]
    assert closer_of(df) == [f"images/{c}.jpg" for _, c, _ in rows]
    assert farther_of(df) == [f"images/{f}.jpg" for _, _, f in rows]
    share_a = (df["label"] == "A").mean()
    assert 0.4 < share_a < 0.6
    # images are linked into OUT/images; paths are relative to OUT and the result validates
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{i}.jpg" for i in range(8))
    assert all((out / "images" / f"{i}.jpg").read_bytes() == (src / "images" / f"{i}.jpg").read_bytes() for i in range(8))
    report = validate(csv, require_label=True)
    assert report.ok and report.n_rows == len(rows)


def test_import_is_deterministic_per_seed_and_takes_a_context(zappos_src, tmp_path):
    src, _ = zappos_src
    first = pl.read_csv(import_dataset("zappos", src, tmp_path / "one")[0])
    again = pl.read_csv(import_dataset("zappos", src, tmp_path / "one")[0])  # re-import into the same folder
    other = pl.read_csv(import_dataset("zappos", src, tmp_path / "two", seed=1, context="shoes")[0])
    assert first.equals(again)
    assert not first["label"].equals(other["label"])
    assert closer_of(first) == closer_of(other)
    assert other["context"].unique().to_list() == ["shoes"]


def test_zappos_skips_rows_naming_images_that_do_not_exist(zappos_src, tmp_path, caplog):
    src, rows = zappos_src
    with open(src / "deconflicted_triplets.csv", "a") as f:
        f.write("0,1,99\n")
    with caplog.at_level(logging.WARNING):
        (csv,) = import_dataset("zappos", src, tmp_path / "out")
    assert pl.read_csv(csv).height == len(rows)
    assert "skipped 1 of" in caplog.text


def test_zappos_bad_input_is_refused_and_nothing_written(zappos_src, tmp_path):
    src, _ = zappos_src
    with open(src / "deconflicted_triplets.csv", "a") as f:
        f.write("0,,2\n")
    with pytest.raises(InputError) as err:
        import_dataset("zappos", src, tmp_path / "out")
    assert "empty cell" in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="deconflicted_triplets.csv not found"):
        import_dataset("zappos", tmp_path / "nowhere", tmp_path / "out2")


def test_materials_import(materials_src, tmp_path):
    src, names, answers, votes = materials_src
    out = tmp_path / "out"
    written = import_dataset("materials", src, out, context="materials")
    assert written == [out / "test.csv", out / "train.csv"]
    df = pl.read_csv(out / "train.csv")
    assert df.columns == ["ref", "a", "b", "label", "votes_a", "votes_b", "context"]
    assert df.height == len(answers)
    # indices point into the *sorted* file names
    assert df["ref"].to_list() == [names[r] for r, _, _ in answers]
    assert closer_of(df) == [names[c] for _, c, _ in answers]
    assert farther_of(df) == [names[o] for _, _, o in answers]
    # vote counts follow their candidate through the shuffle
    votes_closer = [va if lab == "A" else vb for va, vb, lab in df.select("votes_a", "votes_b", "label").rows()]
    votes_other = [vb if lab == "A" else va for va, vb, lab in df.select("votes_a", "votes_b", "label").rows()]
    assert votes_closer == [v[0] for v in votes] and votes_other == [v[1] for v in votes]
    assert 0.4 < (df["label"] == "A").mean() < 0.6
    assert set(df["context"]) == {"materials"}
    assert pl.read_csv(out / "test.csv").height == 10
    assert sorted(f"images/{p.name}" for p in (out / "images").iterdir()) == names
    assert validate(written, require_label=True).ok


def test_materials_bad_json_is_refused_with_rows_and_nothing_written(materials_src, tmp_path):
    src, _, answers, votes = materials_src
    answers[4] = [0, 1, 6]  # only 6 images
    votes[9] = [2]
    (src / "answers_processed_train.json").write_text(json.dumps({"answers": answers, "agreement": votes}))
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        import_dataset("materials", src, out)
    assert [(p.row, p.column) for p in err.value.problems] == [(5, "answers"), (10, "agreement")]
    assert not out.exists()  # no images linked, no CSV written for the valid split either
    (src / "answers_processed_train.json").write_text("{not json")
    with pytest.raises(InputError, match="expected JSON"):
        import_dataset("materials", src, out)
    assert not out.exists()


def test_materials_split_without_answers_gives_an_empty_csv(materials_src, tmp_path):
    src, *_ = materials_src
    (src / "answers_processed_empty.json").write_text(json.dumps({"answers": [], "agreement": []}))
    import_dataset("materials", src, tmp_path / "out")
    empty = pl.read_csv(tmp_path / "out" / "empty.csv")
    assert empty.height == 0 and empty.columns == ["ref", "a", "b", "label", "votes_a", "votes_b"]


def test_a_split_imports_the_same_whatever_other_splits_lie_beside_it(materials_src, tmp_path):
    src, *_ = materials_src
    both = pl.read_csv(import_dataset("materials", src, tmp_path / "both")[1])
    (src / "answers_processed_test.json").unlink()
    alone = pl.read_csv(import_dataset("materials", src, tmp_path / "alone")[0])
    assert alone.equals(both)


def test_reimport_replaces_a_changed_image_of_the_same_size(zappos_src, tmp_path):
    src, _ = zappos_src
    out = tmp_path / "out"
    import_dataset("zappos", src, out)
    first = (src / "images" / "0.jpg").read_bytes()
    changed = bytes([first[0], first[1]]) + bytes(255 - b for b in first[2:])  # same size, other bytes
    (src / "images" / "0.jpg").unlink()  # the imported copy may be a hard link: replace, do not edit in place
    (src / "images" / "0.jpg").write_bytes(changed)
    import_dataset("zappos", src, out)
    assert (out / "images" / "0.jpg").read_bytes() == changed


def test_importer_registry():
    assert sorted(IMPORTERS) == ["materials", "zappos"]


# -- the real shared data ----------------------------------------------------------------------------
def test_real_zappos(shared_data, tmp_path):
    (csv,) = import_dataset("zappos", shared_data / "zappos", tmp_path / "z")
    df = pl.read_csv(csv)
    assert df.height == 157_009
    assert len(list((tmp_path / "z" / "images").iterdir())) == 70
    assert 0.49 < (df["label"] == "A").mean() < 0.51
    raw = pl.read_csv(shared_data / "zappos" / "deconflicted_triplets.csv", has_header=False, n_rows=1000)
    head = df.head(1000)
    assert head["ref"].to_list() == [f"images/{i}.jpg" for i in raw[:, 0]]
    assert closer_of(head) == [f"images/{i}.jpg" for i in raw[:, 1]]
    report = validate(csv, require_label=True)
    assert report.ok, report.problems[:5]


def test_real_materials(shared_data, tmp_path):
    (csv,) = import_dataset("materials", shared_data / "materials", tmp_path / "m")
    df = read_triplets(csv, require_label=True)
    assert df.height == 22_801
    assert len(list((tmp_path / "m" / "images").iterdir())) == 100
    assert 0.49 < (df["label"] == "A").mean() < 0.51
    upstream = json.loads((shared_data / "materials" / "answers_processed_train.json").read_text())
    names = sorted(p.name for p in (shared_data / "materials" / "images").glob("*.jpg"))
    assert df["ref"].head(500).to_list() == [f"images/{names[r]}" for r, _, _ in upstream["answers"][:500]]
    label_votes = [va if lab == "A" else vb for va, vb, lab in df.select("votes_a", "votes_b", "label").head(500).rows()]
    assert label_votes == [v[0] for v in upstream["agreement"][:500]]
    assert Path(df["_a_path"][0]).is_file()
