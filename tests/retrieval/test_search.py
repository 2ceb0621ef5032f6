"""Search in context on a tiny trained run: routing, the members that retrieve, pairwise re-ranking by
the ensemble, ``ctxsim.load(...).search`` and the ``index build`` / ``search`` commands."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import ctxsim
from ctxsim.cli import main
from ctxsim.config import load_config
from ctxsim.retrieval.index import build_index
from ctxsim.retrieval.search import pairwise_preferences, retrieval_members
from ctxsim.train.pipeline import train_run
from tests.synthetic import write_images, write_training_set

TINY = ["backbone=test_tiny", "views=[]", "folds=2", "member.epochs=2", "contexts.min_triplets=10"]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """A trained run (declared contexts red, blue), and an index over new images of both groups."""
    root = tmp_path_factory.mktemp("search")
    csv = write_training_set(root)
    train_run(csv, root / "run", cfg=load_config(None, TINY), progress=False)
    write_images(root / "cat", 8, start=30)
    comparator = ctxsim.load(str(root / "run"), progress=False)
    build_index(comparator, root / "cat", root / "index", model=str(root / "run"), progress=False)
    return root, comparator


def test_a_query_retrieves_with_its_context_member_and_the_global_member(catalogue):
    root, comparator = catalogue
    assert retrieval_members(comparator, "red") == ["context-red", "global"]
    query = root / "cat" / "images" / "red31.png"
    results = comparator.search(query, k=5, index=root / "index", rerank=10)
    assert results.columns == ["rank", "path", "score", "similarity", "context", "members"]
    assert results["rank"].to_list() == [1, 2, 3, 4, 5]
    assert set(results["context"]) == {"red"}
    assert query.resolve().as_posix() not in results["path"].to_list()  # the query itself is left out
    assert results["score"].is_sorted(descending=True)
    assert all(set(m.split(",")) <= {"context-red", "global"} for m in results["members"])
    assert sum("red" in p.rsplit("/", 1)[-1] for p in results["path"]) >= 4  # its own group first


def test_rerank_is_the_ensembles_pairwise_borda_order(catalogue):
    root, comparator = catalogue
    query = (root / "cat" / "images" / "blue30.png").as_posix()
    results = comparator.search(query, k=6, index=root / "index", rerank=6)
    pref = pairwise_preferences(comparator, query, results["path"].to_list())
    np.testing.assert_allclose(results["score"].to_numpy(), pref.sum(1) / 5, atol=1e-9)
    row = comparator.score(pl.DataFrame({"ref": [query], "a": [results["path"][0]], "b": [results["path"][1]]}))
    assert pref[0, 1] == pytest.approx((row["p_a"][0] + 1 - comparator.compare(query, results["path"][1], results["path"][0])) / 2)
    plain = comparator.search(query, k=6, index=root / "index", rerank=0)
    assert plain["score"].is_null().all() and plain["similarity"].is_sorted(descending=True)


def test_cli_index_build_and_search(catalogue, tmp_path, capsys):
    root, _ = catalogue
    run, index = str(root / "run"), str(tmp_path / "index")
    assert main(["index", "build", run, "--images", str(root / "cat"), "--out", index]) == 0
    assert "16 images: 16 added, 0 already indexed" in capsys.readouterr().out
    assert main(["index", "build", run, "--images", str(root / "cat"), "--out", index]) == 0
    assert "0 added, 16 already indexed" in capsys.readouterr().out
    query = str(root / "cat" / "images" / "red30.png")
    out_csv, out_json, page = tmp_path / "r.csv", tmp_path / "r.json", tmp_path / "r.html"
    assert main(["search", run, "--index", index, "--query", query, "--k", "4", "--out", str(out_csv), "--html", str(page)]) == 0
    assert pl.read_csv(out_csv)["rank"].to_list() == [1, 2, 3, 4]
    assert main(["search", run, "--index", index, "--query", query, "--k", "3", "--ranking", "copeland", "--out", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())
    assert len(rows) == 3 and rows[0]["context"] == "red"
    assert page.read_text().count("data:image/jpeg;base64,") == 5  # the query and four results
    assert main(["search", run, "--index", index, "--query", query, "--k", "2"]) == 0
    assert "red" in capsys.readouterr().out


def test_cli_bad_input_is_exit_2(catalogue, tmp_path, capsys):
    root, _ = catalogue
    run = str(root / "run")
    assert main(["search", run, "--index", str(tmp_path / "nothing"), "--query", str(root / "cat" / "images" / "red30.png")]) == 2
    assert "not a catalogue index" in capsys.readouterr().err
    assert main(["search", run, "--index", str(root / "index"), "--query", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "bad.png").write_bytes(b"nope")
    assert main(["index", "build", run, "--images", str(tmp_path / "cat"), "--out", str(tmp_path / "i")]) == 2
    assert "bad.png" in capsys.readouterr().err
