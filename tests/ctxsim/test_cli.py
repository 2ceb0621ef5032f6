"""The ``ctxsim`` command, called in-process through ``main(argv)``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ctxsim.cli import main
from ctxsim.embedding.cache import EmbeddingCache
from ctxsim.errors import EXIT_INVALID_INPUT
from ctxsim.data.images import file_digest
from ctxsim.members.backbones import create_backbone
from tests.conftest import write_image


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def with_row(csv, row_number, **changes):
    df = pl.read_csv(csv)
    df = df.with_columns(
        pl.when(pl.int_range(1, df.height + 1) == row_number).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
        for c, v in changes.items()
    )
    df.write_csv(csv)
    return csv


# -- "Checked by": each bad input gets exit code 2 and a message naming the row -------------------------
def test_bad_label_in_row_7(capsys, triplet_set, tmp_path):
    csv = with_row(triplet_set[0], 7, label="maybe")
    code, out, err = run(capsys, "data", "validate", csv)
    assert code == EXIT_INVALID_INPUT
    assert f"{csv}, row 7 (line 8), column 'label': expected 'A' or 'B', got 'maybe'" in err
    assert "12 rows, 1 errors, 0 warnings" in out

    code, _, err = run(capsys, "compare", "backbone:pixels", csv, "--out", tmp_path / "scored.csv")
    assert code == EXIT_INVALID_INPUT and "row 7 (line 8), column 'label'" in err
    assert not (tmp_path / "scored.csv").exists()


def test_missing_image(capsys, triplet_set, tmp_path):
    csv = with_row(triplet_set[0], 3, b="images/gone.png")
    code, _, err = run(capsys, "data", "validate", csv)
    assert code == EXIT_INVALID_INPUT
    assert "row 3 (line 4), column 'b': image file not found" in err and "gone.png" in err
    code, _, err = run(capsys, "compare", "backbone:pixels", csv, "--out", tmp_path / "scored.csv")
    assert code == EXIT_INVALID_INPUT and "row 3 (line 4), column 'b'" in err
    assert not (tmp_path / "scored.csv").exists()


def test_truncated_jpeg(capsys, tmp_path, write_csv):
    paths = [write_image(tmp_path / "images" / f"{i}.jpg", seed=i) for i in range(4)]
    rows = [(f"images/{i}.jpg", f"images/{(i + 1) % 4}.jpg", f"images/{(i + 2) % 4}.jpg", "A") for i in range(4)]
    csv = write_csv(tmp_path / "t.csv", rows)
    assert run(capsys, "data", "validate", csv)[0] == 0
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])  # images/2.jpg: first named by row 1, column b
    code, _, err = run(capsys, "data", "validate", csv)
    assert code == EXIT_INVALID_INPUT
    assert "row 1 (line 2), column 'b': corrupt or truncated image" in err and "2.jpg" in err
    code, _, err = run(capsys, "compare", "backbone:test_tiny", csv, "--out", tmp_path / "scored.csv")
    assert code == EXIT_INVALID_INPUT and "row 1 (line 2), column 'b'" in err
    assert not (tmp_path / "scored.csv").exists()


def test_row_with_too_many_fields(capsys, triplet_set, tmp_path):
    csv, _ = triplet_set
    lines = csv.read_text().splitlines()
    lines[5] += ",oops"
    csv.write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "compare", "backbone:pixels", csv, "--out", tmp_path / "scored.csv")
    assert code == EXIT_INVALID_INPUT and "row 5 (line 6): 5 fields, but the header has 4 columns" in err
    assert not (tmp_path / "scored.csv").exists()


# -- data validate ------------------------------------------------------------------------------------
def test_validate_good_files_with_images_root(capsys, tmp_path, make_images, write_csv):
    imgs = make_images(4, folder="pics")
    names = [p.name for p in imgs]
    one = write_csv(tmp_path / "csv" / "one.csv", [(names[0], names[1], names[2], "A")] * 2)
    two = write_csv(tmp_path / "csv" / "two.csv", [(names[3], names[1], names[2], "B")])
    code, out, err = run(capsys, "data", "validate", one, two, "--images", tmp_path / "pics")
    assert code == 0
    assert "3 rows, 0 errors, 1 warnings" in out
    assert "warning:" in err and "row 2 (line 3): duplicate of row 1" in err
    # without --images the paths resolve against the CSVs' folder
    code, out, _ = run(capsys, "data", "validate", one, two)
    assert code == EXIT_INVALID_INPUT and "3 rows, 4 errors" in out  # each missing image once, at its first row


def test_validate_require_label(capsys, tmp_path, make_images, write_csv):
    names = [f"images/{p.name}" for p in make_images(3)]
    csv = write_csv(tmp_path / "t.csv", [names], header=("ref", "a", "b"))
    assert run(capsys, "data", "validate", csv)[0] == 0
    code, _, err = run(capsys, "data", "validate", csv, "--require-label")
    assert code == EXIT_INVALID_INPUT and "column 'label': missing required column" in err


def test_many_problems_are_all_counted(capsys, tmp_path, make_images, write_csv):
    names = [f"images/{p.name}" for p in make_images(3)]
    csv = write_csv(tmp_path / "t.csv", [(*names, "x")] * 250 + [(*names, "A")])
    code, out, err = run(capsys, "data", "validate", csv)
    assert code == EXIT_INVALID_INPUT
    assert "251 rows, 250 errors" in out
    assert err.count("expected 'A' or 'B'") == 200 and "... and " in err


# -- data import --------------------------------------------------------------------------------------
def test_import_zappos_and_materials(capsys, tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        write_image(src / "z" / "images" / f"{i}.jpg", seed=i)
        write_image(src / "m" / "images" / f"m{i}.jpg", seed=10 + i)
    (src / "z" / "deconflicted_triplets.csv").write_text("0,1,2\n1,2,3\n3,0,1\n")
    (src / "m" / "answers_processed_train.json").write_text(json.dumps({"answers": [[0, 1, 2], [3, 2, 1]], "agreement": [[4, 1], [3, 3]]}))

    code, out, _ = run(capsys, "data", "import", "zappos", src / "z", "--out", tmp_path / "z", "--context", "shoes", "--seed", "5")
    assert code == 0 and out.strip() == str(tmp_path / "z" / "triplets.csv")
    z = pl.read_csv(tmp_path / "z" / "triplets.csv")
    assert z.height == 3 and set(z["context"]) == {"shoes"}

    code, out, _ = run(capsys, "data", "import", "materials", src / "m", "--out", tmp_path / "m")
    assert code == 0 and out.strip() == str(tmp_path / "m" / "train.csv")
    m = pl.read_csv(tmp_path / "m" / "train.csv")
    assert m["ref"].to_list() == ["images/m0.jpg", "images/m3.jpg"]
    assert sorted(m.select("votes_a", "votes_b").rows()[0]) == [1, 4]

    code, _, err = run(capsys, "data", "validate", tmp_path / "z" / "triplets.csv", tmp_path / "m" / "train.csv", "--require-label")
    assert code == 0

    code, _, err = run(capsys, "data", "import", "zappos", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert code == EXIT_INVALID_INPUT and "deconflicted_triplets.csv not found" in err


# -- compare ------------------------------------------------------------------------------------------
def test_compare_prints_accuracy_per_context(capsys, tmp_path, make_images, write_csv):
    names = [f"images/{p.name}" for p in make_images(5)]
    rows = [
        (names[i], names[(i + 1) % 5], names[(i + 2) % 5], "AB"[i % 2], ["shoes", "metal"][i % 2], i % 3, 2) for i in range(5)
    ] * 3
    csv = write_csv(tmp_path / "t.csv", rows, header=("ref", "a", "b", "label", "context", "votes_a", "votes_b"))
    out_csv = tmp_path / "out" / "scored.csv"
    code, out, err = run(capsys, "compare", "backbone:test_tiny", csv, "--out", out_csv, "--margins", "--chunk-rows", "4")
    assert code == 0, err
    scored = pl.read_csv(out_csv)
    assert scored.height == 15 and "margin_zeroshot" in scored.columns
    for context in ("shoes", "metal", "(all)"):
        part = scored if context == "(all)" else scored.filter(pl.col("context") == context)
        line = next(line for line in out.splitlines() if f" {context} " in line)
        assert f"{part['correct'].mean():.3f}" in line
        assert f" {part.height} " in line
        votes_for_pred = [va if p == "A" else vb for va, vb, p in part.select("votes_a", "votes_b", "pred").rows()]
        agreement = sum(votes_for_pred) / (part["votes_a"].sum() + part["votes_b"].sum())
        assert f"{agreement:.3f}" in line
    assert "vote_agreement" in out
    # the embeddings went to the session's cache folder ($CTXSIM_CACHE), where the next run finds them
    cache = EmbeddingCache(os.environ["CTXSIM_CACHE"])
    assert len(cache.get_many(create_backbone("test_tiny").cache_key, [file_digest(p) for p in tmp_path.glob("images/*.png")])) == 5


def test_compare_with_images_root_and_missing_csv(capsys, tmp_path, make_images, write_csv):
    names = [p.name for p in make_images(4, folder="pics")]
    csv = write_csv(tmp_path / "csvs" / "t.csv", [(names[i], names[(i + 1) % 4], names[(i + 2) % 4], "A") for i in range(4)])
    out = tmp_path / "scored.csv"
    code, _, err = run(capsys, "compare", "backbone:pixels", csv, "--images", tmp_path / "pics", "--out", out)
    assert code == 0, err
    assert pl.read_csv(out)["ref"].to_list() == names  # paths are written as they were given
    code, _, err = run(capsys, "compare", "backbone:pixels", tmp_path / "nope.csv", "--out", tmp_path / "o.csv")
    assert code == EXIT_INVALID_INPUT and "nope.csv: triplet file not found" in err
    assert not (tmp_path / "o.csv").exists()


def test_compare_unknown_or_unavailable_backbone(capsys, triplet_set, tmp_path):
    csv, _ = triplet_set
    code, _, err = run(capsys, "compare", "backbone:nope", csv, "--out", tmp_path / "o.csv")
    assert code == 1 and "unknown backbone 'nope'" in err
    code, _, err = run(capsys, "compare", "backbone:dinov2_vits14", csv, "--out", tmp_path / "o.csv")
    assert code == 1 and "dinov2_vits14" in err and "HF_HUB_OFFLINE=1" in err
    assert not (tmp_path / "o.csv").exists()


def test_demo_needs_its_data(capsys, tmp_path, monkeypatch):
    from ctxsim.demo import data_dir

    code, _, err = run(capsys, "demo", "--data", tmp_path / "nowhere", "--out", tmp_path / "demo")
    assert code == EXIT_INVALID_INPUT and "data folder not found" in err
    monkeypatch.setenv("CTXSIM_DATA", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere" and data_dir(tmp_path) == tmp_path
    monkeypatch.delenv("CTXSIM_DATA")
    assert data_dir() == Path(__file__).resolve().parents[3] / "shared" / "data"  # beside the checkout


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and "ctxsim 0.1.0" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["data", "validate"])
    assert exit_.value.code == 2


def test_importing_the_cli_is_cheap():
    """``ctxsim --help`` must not pay for torch, mlflow or ray."""
    code = (
        "import sys, ctxsim.cli\n"
        "ctxsim.cli.build_parser()\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'ray', 'timm', 'open_clip') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
