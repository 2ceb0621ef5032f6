"""ctxsim.mlops.registry on a temporary SQLite store: versions, download_run by version and alias, the cache,
``ctxsim.load`` and ``ctxsim compare`` on ``models:/NAME@champion``."""
from __future__ import annotations

import polars as pl
import pytest

from ctxsim.compare.model_uri import ModelRef, RegistryError
from ctxsim.mlops.registry import accuracy_tags
from tests.mlops.mlflow_support import data_set, session_base, trained_run, tracking_store

NAME = "reg-model"


# -- pure helpers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri, ref", [
    ("models:/demo@champion", ModelRef("demo", None, "champion")),
    ("models:/demo/3", ModelRef("demo", "3", None)),
    ("models:/demo/latest", ModelRef("demo", "latest", None)),
    ("models:/m-0123abc", None),
    ("runs:/abc/model", None),
])
def test_model_uris(uri, ref):
    assert ModelRef.parse(uri) == ref


def test_accuracy_tags_from_metrics():
    metrics = {"accuracy": {"ensemble": [
        {"context": "shoes", "labelled": 10, "accuracy": 0.8},
        {"context": "odd (name)", "labelled": 5, "accuracy": 1 / 3},
        {"context": "(all)", "labelled": 15, "accuracy": 0.644444, "ci_low": 0.39, "ci_high": 0.84}]}}
    assert accuracy_tags(metrics) == {"oof_accuracy.shoes": "0.8000", "oof_accuracy.odd _name_": "0.3333",
                                      "oof_accuracy": "0.6444", "oof_accuracy.ci": "[0.3900, 0.8400]", "oof_triplets": "15"}


# -- the registry flow ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """Two versions of NAME: v1 trained on the labels, v2 on the flipped labels; champion -> v1."""
    from ctxsim.mlops.registry import set_champion
    from ctxsim.mlops.tracking import track_run

    base = session_base(tmp_path_factory)
    data = data_set(base)
    with tracking_store(tmp_path_factory.mktemp("registry")) as root:
        versions = {}
        for kind in ("train", "flipped"):
            run_dir, _, _ = trained_run(base, kind)
            _, versions[kind] = track_run(run_dir, data[kind], register=NAME)  # config and metrics read from the folder
        set_champion(NAME, versions["train"])
        yield {"root": root, "data": data, "versions": versions, "good": trained_run(base)[0], "bad": trained_run(base, "flipped")[0]}


def test_versions_are_numbered_and_tagged(registered):
    from ctxsim.mlops.registry import champion
    from ctxsim.compare.model_uri import get_version

    assert registered["versions"] == {"train": "1", "flipped": "2"}
    assert str(champion(NAME).version) == "1"
    assert str(get_version(NAME, "latest").version) == "2"
    assert float(get_version(NAME, 1).tags["oof_accuracy"]) > 0.9
    assert float(get_version(NAME, 2).tags["oof_accuracy"]) > 0.9  # right about the labels it was trained on
    assert champion("no-such-model") is None


def test_download_run_by_version_and_alias_is_cached(registered, monkeypatch):
    import mlflow.artifacts

    from ctxsim.compare.model_uri import download_run
    from ctxsim.mlops.registry import set_champion

    v1 = download_run(f"models:/{NAME}/1")
    assert (v1 / "run.json").read_text() == (registered["good"] / "run.json").read_text()
    assert not (v1 / "report").exists()

    def no_download(**kw):
        raise AssertionError(f"downloaded again: {kw}")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    assert download_run(f"models:/{NAME}@champion") == v1  # alias resolved, version already cached
    monkeypatch.undo()
    try:
        set_champion(NAME, 2)
        v2 = download_run(f"models:/{NAME}@champion")  # the alias is resolved again on every call
        assert v2 != v1 and (v2 / "run.json").read_text() == (registered["bad"] / "run.json").read_text()
    finally:
        set_champion(NAME, 1)


@pytest.mark.parametrize("uri", [f"models:/{NAME}/9", f"models:/{NAME}@nobody", "models:/no-such-model/1"])
def test_unknown_versions_aliases_and_models(registered, uri):
    from ctxsim.compare.model_uri import download_run

    with pytest.raises(RegistryError, match="no-such-model|version 9|alias 'nobody'"):
        download_run(uri)


def test_runs_uri_downloads_the_run_folder(registered):
    from ctxsim.compare.model_uri import download_run, get_version

    run_id = get_version(NAME, 1).run_id
    assert (download_run(f"runs:/{run_id}/model") / "members" / "members.json").is_file()


def test_load_champion_scores_like_the_run_folder(registered):
    import ctxsim

    images = registered["data"]["root"]
    frame = pl.read_csv(registered["data"]["eval"])
    champion = ctxsim.load(f"models:/{NAME}@champion", progress=False).score(frame, images)
    local = ctxsim.load(str(registered["good"]), progress=False).score(frame, images)
    assert champion["p_a"].to_list() == pytest.approx(local["p_a"].to_list())
    assert (champion["pred"] == frame["label"]).mean() > 0.9


def test_compare_cli_on_the_champion(registered, tmp_path, capsys):
    from ctxsim.cli import main

    out = tmp_path / "scored.csv"
    assert main(["compare", f"models:/{NAME}@champion", str(registered["data"]["eval"]), "--out", str(out)]) == 0
    scored = pl.read_csv(out)
    assert scored.height == pl.read_csv(registered["data"]["eval"]).height
    assert scored["correct"].mean() > 0.9
    assert main(["compare", f"models:/{NAME}@nobody", str(registered["data"]["eval"]), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no alias 'nobody'" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
