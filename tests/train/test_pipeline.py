"""``train_run`` on a tiny two-context set with the ``test_tiny`` backbone: a complete run folder,
really out-of-fold margins, and ``ctxsim train`` / ``ctxsim compare`` on the result."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from ctxsim.train import pipeline as train_module
from ctxsim.train.member_fits import MemberTrainer
from ctxsim.cli import main
from ctxsim.compare.trained import RunComparator
from ctxsim.config import load_config
from ctxsim.embedding.distances import margins
from ctxsim.members.inference import SPECS_FILE
from ctxsim.schema import ZEROSHOT_KIND
from ctxsim.train.pipeline import image_folds, image_table, labels, train_run
from ctxsim.data.triplets import read_triplets
from tests.synthetic import GROUPS, write_training_set, write_unseen_set

TINY = ["backbone=test_tiny", "views=[]", "folds=2", "member.epochs=2", "contexts.min_triplets=10"]
MEMBERS = ["zeroshot", "global", "context-blue", "context-red"]
COMBINERS = ["stacker", "majority_vote", "pca_credibility", "mlp_weighted", "best_member", "global", "zeroshot"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One trained run, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("train")
    csv = write_training_set(root)
    metrics = train_run(csv, root / "run", cfg=load_config(None, TINY), progress=False)
    return root, csv, metrics


def test_image_folds_are_balanced_and_seeded():
    folds = image_folds(11, 3, seed=0)
    assert sorted(np.bincount(folds).tolist()) == [3, 4, 4]
    np.testing.assert_array_equal(folds, image_folds(11, 3, seed=0))
    assert not np.array_equal(folds, image_folds(11, 3, seed=1))


def test_tied_votes_weigh_nothing_and_margin_weighting_follows_the_lead():
    # rows: 5-0, 1-3, a 2-2 tie, a row without votes (another data set's), 3-2
    df = pl.DataFrame({"label": ["A", "B", "A", "A", "A"], "votes_a": [5, 1, 2, None, 3], "votes_b": [0, 3, 2, None, 2]})
    y, majority = labels(df)
    np.testing.assert_array_equal(y, [1, -1, 1, 1, 1])
    np.testing.assert_array_equal(majority, [1, 1, 0, 1, 1])
    _, margin = labels(df, "margin")
    # leads 5, 2, 1 over the three rows with a majority, scaled to their total weight (3); unvoted rows keep 1
    np.testing.assert_allclose(margin, [5 * 3 / 8, 2 * 3 / 8, 0, 1, 1 * 3 / 8])


def test_train_run_writes_a_complete_run_folder(run):
    root, _, metrics = run
    out = root / "run"
    for name in ("run.json", "contexts/contexts.json", "members/members.json", "metrics.json", "ensemble/ensemble.json", "report/oof_scored.parquet",
                 "report/report.html", "report/report.json", "report/report.md"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "members").glob("*.safetensors")) == sorted(f"{m}.safetensors" for m in MEMBERS if m != "zeroshot")
    meta = json.loads((out / "run.json").read_text())
    assert meta["backbone"] == "test_tiny" and sorted(meta["members"]) == sorted(MEMBERS) and meta["contexts"] == ["blue", "red"]
    assert meta["config"]["folds"] == 2 and meta["config"]["member"]["epochs"] == 2
    contexts = json.loads((out / "contexts" / "contexts.json").read_text())
    assert contexts["kind"] == "declared" and contexts["names"] == ["blue", "red"]

    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["n_triplets"] == 2 * 10 * 12 and metrics["n_images"] == 20
    assert "out-of-fold" in metrics["validation"]
    assert set(metrics["ensemble"]["cv_accuracy"]) == set(COMBINERS) and metrics["ensemble"]["folds"] == 2
    systems = set(metrics["accuracy"])
    assert systems == {"ensemble"} | {f"member:{m}" for m in MEMBERS} | {f"baseline:{c}" for c in COMBINERS}
    contexts_seen = {row["context"] for row in metrics["accuracy"]["ensemble"]}
    assert contexts_seen == {"(all)", "blue", "red"}
    assert set(metrics["members"]) == set(MEMBERS) - {"zeroshot"}

    scored = pl.read_parquet(out / "report" / "oof_scored.parquet")
    assert scored.height == 240 and scored["context"].to_list() == read_triplets(root / "train.csv")["context"].to_list()
    assert {f"margin_{m}" for m in MEMBERS} | {f"p_a_{c}" for c in COMBINERS} <= set(scored.columns)
    # the reported accuracy is the accuracy of the out-of-fold predictions
    overall = next(r for r in metrics["accuracy"]["ensemble"] if r["context"] == "(all)")
    assert overall["accuracy"] == pytest.approx(scored["correct"].mean())


def test_out_of_fold_margins_are_really_out_of_fold(tmp_path, monkeypatch):
    """For fold f, every member copy trains on triplets naming no fold-f image, and the margins of the
    rows whose reference is in fold f come from that copy."""
    csv = write_training_set(tmp_path)
    folds_seen, calls = [], []
    original_folds = train_module.image_folds
    original_train = MemberTrainer.train

    def spy_folds(*args):
        folds_seen.append(original_folds(*args))
        return folds_seen[-1]

    def spy_train(self, spec, triplets, seed, desc, init=None, refit=False):
        result = original_train(self, spec, triplets, seed, desc, init=init, refit=refit)
        calls.append((spec.name, desc, triplets, result[1]))
        return result

    monkeypatch.setattr(train_module, "image_folds", spy_folds)
    monkeypatch.setattr(MemberTrainer, "train", spy_train)
    # a high learning rate, validated on the training rows: every copy moves away from the zero-shot backbone;
    # image folds only (the triplet folds' copies are checked in tests/train/test_regimes.py)
    cfg = load_config(None, [*TINY, "folds=3", "triplet_folds=0", "contexts.mode=discovered", "contexts.k=2", "member.lr=0.02",
                             "member.min_val_triplets=100000"])
    train_run(csv, tmp_path / "run", cfg=cfg, progress=False)

    (fold_of_image,) = folds_seen
    df = read_triplets(csv)
    paths, idx = image_table(df)
    assert len(fold_of_image) == len(paths) == 20
    scored = pl.read_parquet(tmp_path / "run" / "report" / "oof_scored.parquet")
    by_member: dict[str, dict[int, np.ndarray]] = {}
    for name, desc, triplets, emb in calls:
        if " fold " not in desc:  # the final member, trained on all of its rows
            continue
        fold = int(desc.rsplit(" ", 1)[1])
        unseen = np.flatnonzero(fold_of_image == fold)
        assert len(triplets) > 0 and not triplets.touches(unseen).any(), desc
        by_member.setdefault(name, {})[fold] = emb
    trained = [m for m in json.loads((tmp_path / "run" / "run.json").read_text())["members"] if m != "zeroshot"]
    assert len(trained) == 3 and set(by_member) == set(trained)  # global and a member per discovered context
    row_fold = fold_of_image[idx["ref"]]
    for name, per_fold in by_member.items():
        assert sorted(per_fold) == [0, 1, 2]
        # the copies differ, so the check below can tell which copy scored which row
        assert min(np.abs(per_fold[f] - per_fold[g]).max() for f, g in ((0, 1), (0, 2), (1, 2))) > 1e-3, name
        expected = np.empty(len(df))
        for fold, emb in per_fold.items():
            rows = row_fold == fold
            expected[rows] = margins(emb, idx["ref"][rows], idx["a"][rows], idx["b"][rows])
        np.testing.assert_allclose(scored[f"margin_{name}"].to_numpy(), expected, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.fixture
def isolated_cwd(tmp_path, monkeypatch):
    """CLI commands that write beside the working directory (e.g. a default tracking store) write into tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_compare_scores_a_run_and_routes_contexts(run, tmp_path, capsys, isolated_cwd):
    root, _, _ = run
    unseen = write_unseen_set(tmp_path)
    out = tmp_path / "scored.csv"
    code = main(["compare", str(root / "run"), str(unseen), "--out", str(out), "--margins", "--baselines",
                 "--report", str(tmp_path / "report")])
    assert code == 0, capsys.readouterr().err
    scored = pl.read_csv(out)
    assert scored.height == 2 * 5 * 3
    assert {"context", "p_a", "pred", "correct"} <= set(scored.columns)
    assert {f"margin_{m}" for m in MEMBERS} | {f"p_a_{c}" for c in COMBINERS} <= set(scored.columns)
    # never-seen images are routed to the context of their group
    truth = scored["ref"].str.extract(r"images/([a-z]+)\d+\.png")
    assert set(GROUPS) == set(truth.to_list())
    assert scored["context"].to_list() == truth.to_list()
    assert ((scored["p_a"] >= 0.5) == (scored["pred"] == "A")).all()
    assert (scored["margin_global"] - scored["margin_zeroshot"]).abs().max() > 1e-4  # a trained member, not a copy
    assert (tmp_path / "report" / "report.html").is_file()


def test_run_comparator_score_is_symmetric_on_a_trained_run(run, tmp_path):
    from ctxsim.compare.model_uri import load_comparator

    root, csv, _ = run
    df = pl.read_csv(csv).head(60)
    comparator = load_comparator(str(root / "run"), baselines=True, progress=False)
    p = comparator.score(df, images=root)
    q = comparator.score(df.rename({"a": "b", "b": "a"}), images=root)
    np.testing.assert_allclose(q["p_a"].to_numpy(), 1 - p["p_a"].to_numpy(), atol=1e-12)
    for c in COMBINERS:
        np.testing.assert_allclose(q[f"p_a_{c}"].to_numpy(), 1 - p[f"p_a_{c}"].to_numpy(), atol=1e-12, err_msg=c)


def test_ctxsim_train_command(tmp_path, capsys, isolated_cwd):
    csv = write_training_set(tmp_path, per_group=6, pairs_per_ref=8)
    argv = ["train", "--triplets", str(csv), "--out", str(tmp_path / "run"), "--backbone", "test_tiny", "--folds", "2",
            "--epochs", "1", "--stacker", "logistic", "--set", "contexts.min_triplets=10"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Out-of-fold accuracy" in printed and str(tmp_path / "run") in printed
    assert "expected coverage at each target accuracy" in printed
    cfg = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert cfg["ensemble"]["stacker"] == "logistic" and cfg["member"]["epochs"] == 1 and cfg["backbone"] == "test_tiny"
    # a bad setting is refused before anything is trained
    assert main(["train", "--triplets", str(csv), "--out", str(tmp_path / "bad"), "--set", "member.nope=1"]) == 2
    assert "unknown setting(s) nope" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_train_run_with_lora_members(tmp_path, monkeypatch):
    """LoRA members train inside a run; the run folder reloads them merged, with the same embeddings."""
    from ctxsim.embedding.cache import EmbeddingCache
    from ctxsim.compare.trained import RunComparator

    csv = write_training_set(tmp_path, per_group=6, pairs_per_ref=8)
    final = {}
    original_train = MemberTrainer.train

    def spy_train(self, spec, triplets, seed, desc, init=None, refit=False):
        result = original_train(self, spec, triplets, seed, desc, init=init, refit=refit)
        if desc == spec.name:
            final[spec.name] = (self.paths, result[1])
        return result

    monkeypatch.setattr(MemberTrainer, "train", spy_train)
    cfg = load_config(None, [*TINY, "member.kind=lora", "member.lora_rank=2", "member.lr=0.02", "member.min_val_triplets=100000"])
    train_run(csv, tmp_path / "run", cfg=cfg, progress=False)
    specs = json.loads((tmp_path / "run" / "members" / "members.json").read_text())
    assert {s["name"]: s["kind"] for s in specs} == {"zeroshot": "zeroshot", "global": "lora", "context-blue": "lora", "context-red": "lora"}
    assert all(s["lora_targets"] == ["conv_pwl"] and s["lora_rank"] == 2 for s in specs if s["kind"] == "lora")

    comparator = RunComparator(tmp_path / "run", cache=EmbeddingCache(), progress=False)
    for name, (paths, emb) in final.items():
        np.testing.assert_allclose(comparator.embed(paths, member=name), emb, atol=1e-5, err_msg=name)
    zero = comparator.embed(final["global"][0], member="zeroshot")
    assert np.abs(final["global"][1] - zero).max() > 1e-3  # the LoRA member did train
    scored = comparator.score(pl.read_csv(csv), images=tmp_path)
    assert scored["p_a"].is_between(0, 1).all() and set(scored["context"]) == set(GROUPS)


def test_train_on_invalid_input_writes_no_run_folder(tmp_path):
    from ctxsim.errors import InputError

    csv = tmp_path / "bad.csv"
    csv.write_text("ref,a,b\nx.png,y.png,z.png\n")  # no label column, no images
    with pytest.raises(InputError):
        train_run([csv], tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_views_give_members_of_their_own_and_context_members_start_from_global(tmp_path):
    """Three more views (the middle layer, the grid, a flip-averaged copy): each has its zero-shot, global and
    context members, named with the view; a context head starts as its view's global head (with no
    epochs to train, it stays exactly that); the other views' members carry member.extra_views_loss."""
    from safetensors.torch import load_file

    csv = write_training_set(tmp_path, per_group=6, pairs_per_ref=8)
    cfg = load_config(None, [*TINY, 'views=["mid", "grid", "test_tiny+flip"]', "member.epochs=0",
                             "member.extra_views_loss=ce_hinge"])
    metrics = train_run(csv, tmp_path / "run", cfg=cfg, progress=False)
    comparator = RunComparator(tmp_path / "run", progress=False)
    expected = [f"{base}{suffix}" for suffix in ("", "@test_tiny-mid", "@test_tiny-grid", "@test_tiny-flip")
                for base in ("zeroshot", "global", "context-blue", "context-red")]
    assert comparator.member_names == expected
    assert set(metrics["members"]) == {n for n in expected if not n.startswith("zeroshot")}
    members = tmp_path / "run" / "members"
    specs = json.loads((members / SPECS_FILE).read_text())
    losses = {s["name"]: s["loss"] for s in specs if s["kind"] != ZEROSHOT_KIND}
    assert losses == {n: "hinge" if "@" not in n else "ce_hinge" for n in expected if not n.startswith("zeroshot")}
    for suffix in ("", "@test_tiny-mid"):
        global_head = load_file(str(members / f"global{suffix}.safetensors"))
        for context in ("blue", "red"):
            head = load_file(str(members / f"context-{context}{suffix}.safetensors"))
            assert all(torch.equal(head[k], global_head[k]) for k in head)
    scored = comparator.score(pl.read_csv(csv).head(10), tmp_path, margins=True)
    assert {"margin_global@test_tiny-mid", "margin_global@test_tiny-grid", "margin_context-red@test_tiny-flip"} <= set(scored.columns)
    assert scored["p_a"].is_between(0, 1).all()
