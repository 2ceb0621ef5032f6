"""Known images end to end: a run with ``member.memory`` and triplet folds on the tiny two-context set.
The global member's offsets cover exactly the images each copy trained on, the stacker reads seen_*
features built from the out-of-fold structure, and compare finds known images by content digest."""
from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
from safetensors.torch import load_file

from ctxsim.compare.trained import RunComparator
from ctxsim.config import load_config
from ctxsim.data.images import file_digest
from ctxsim.data.triplets import read_triplets
from ctxsim.members.offsets import DIGESTS, Memory
from ctxsim.train import pipeline as train_module
from ctxsim.train.member_fits import MemberTrainer
from ctxsim.train.pipeline import image_table, train_run
from tests.synthetic import write_training_set, write_unseen_set

TINY = ["backbone=test_tiny", "views=[]", "folds=2", "member.epochs=2", "contexts.min_triplets=10",
        "member.memory=true", "triplet_folds=2", "member.min_val_triplets=100000"]


def test_memory_and_triplet_folds_end_to_end(tmp_path, monkeypatch):
    csv = write_training_set(tmp_path)
    folds_seen, calls = [], []
    original_folds, original_train = train_module.image_folds, MemberTrainer.train

    def spy_folds(*args):
        folds_seen.append(original_folds(*args))
        return folds_seen[-1]

    def spy_train(self, spec, triplets, seed, desc, init=None, refit=False):
        result = original_train(self, spec, triplets, seed, desc, init=init, refit=refit)
        calls.append((spec.name, desc, triplets, result[0]))
        return result

    monkeypatch.setattr(train_module, "image_folds", spy_folds)
    monkeypatch.setattr(MemberTrainer, "train", spy_train)
    metrics = train_run(csv, tmp_path / "run", cfg=load_config(None, TINY), progress=False)
    run = tmp_path / "run"

    paths, idx = image_table(read_triplets(csv))
    digests = [file_digest(p) for p in paths]
    (fold_of_image,) = folds_seen
    # fits: 3 trained members x (1 + 2 image folds + 2 triplet folds); only global has a memory
    assert len(calls) == 3 * 5 and sum("triplet fold" in d for _, d, _, _ in calls) == 6
    for name, desc, triplets, state in calls:
        assert (DIGESTS in state) == (name == "global"), desc
        if name != "global":
            continue
        remembered = {bytes(row.tolist()).hex() for row in state[DIGESTS]}
        assert remembered == {digests[i] for i in triplets.images()}, desc  # exactly the images it trained on
        if " fold " in desc and "triplet" not in desc:  # an image-fold copy: its fold's images get no offset
            fold = int(desc.rsplit(" ", 1)[1])
            assert remembered.isdisjoint(digests[i] for i in np.flatnonzero(fold_of_image == fold)), desc
        if "triplet fold" in desc:  # a triplet-fold copy trained on half of the rows: images stay known
            assert 0.3 * len(idx["ref"]) < len(triplets) < 0.7 * len(idx["ref"]) and len(triplets.images()) == 20

    manifest = json.loads((run / "run.json").read_text())
    assert "known/digests.json" in manifest["files"]
    assert sorted(json.loads((run / "known" / "digests.json").read_text())) == sorted(digests)
    assert Memory({k: v for k, v in load_file(str(run / "members" / "global.safetensors")).items() if k.startswith("memory.")}).index.keys() == set(digests)
    meta = json.loads((run / "ensemble" / "ensemble.json").read_text())
    assert meta["feature_names"][-3:] == ["seen_ref", "seen_a", "seen_b"] and meta["combiners"]["stacker"]["regime"] is True
    assert metrics["n_triplets"] == 240 and pl.read_parquet(run / "report" / "oof_scored.parquet").height == 240

    # compare: a training image under another name is known (same bytes); an image never trained on is not
    unseen_csv = write_unseen_set(tmp_path / "unseen")
    shutil.copy(tmp_path / "images" / "red0.png", tmp_path / "renamed.png")
    comparator = RunComparator(run, progress=False)
    assert comparator.ensemble.regime and len(comparator.known) == 20
    unseen = sorted(str(p) for p in (tmp_path / "unseen" / "images").glob("*.png"))[:2]
    images = [str(tmp_path / "images" / "red0.png"), str(tmp_path / "renamed.png"), *unseen]
    with_memory = comparator.embed(images, member="global")
    plain = RunComparator(run, progress=False)
    plain.members.memories = {}
    without = plain.embed(images, member="global")
    assert np.abs(with_memory[:2] - without[:2]).max() > 1e-4  # known images get their offset
    np.testing.assert_allclose(with_memory[0], with_memory[1], atol=1e-6)
    np.testing.assert_array_equal(with_memory[2:], without[2:])  # the others none
    np.testing.assert_array_equal(comparator.known.flags([file_digest(p) for p in images]), [1, 1, 0, 0])

    # exact A/B symmetry with seen_a/seen_b swapping: rows mixing known and new candidates
    rows = pl.DataFrame({"ref": [images[0], images[2]], "a": [images[1], images[0]], "b": [images[2], images[3]]})
    p = comparator.score(rows)["p_a"].to_numpy()
    q = comparator.score(rows.rename({"a": "b", "b": "a"}))["p_a"].to_numpy()
    np.testing.assert_allclose(p + q, 1.0, atol=1e-12)
    assert pl.read_csv(unseen_csv).height > 0


def test_memory_views_all_gives_every_views_global_member_a_memory(tmp_path):
    """``member.memory_views``: the primary view's global member only (default), or every view's; context
    members never. At compare time each memory member's known images get their own offsets."""
    csv = write_training_set(tmp_path, per_group=6, pairs_per_ref=8)
    has_memory = {}
    for choice in ("primary", "all"):
        run = tmp_path / choice
        cfg = load_config(None, [*TINY, 'views=["mid"]', "triplet_folds=0", f"member.memory_views={choice}"])
        train_run(csv, run, cfg=cfg, progress=False)
        has_memory[choice] = {f.stem for f in (run / "members").glob("*.safetensors")
                              if DIGESTS in load_file(str(f))}
    assert has_memory == {"primary": {"global"}, "all": {"global", "global@test_tiny-mid"}}
    comparator = RunComparator(tmp_path / "all", progress=False)
    assert set(comparator.members.memories) == {"global", "global@test_tiny-mid"}
    known = [str(tmp_path / "images" / "red0.png")]
    plain = RunComparator(tmp_path / "all", progress=False)
    plain.members.memories = {}
    shift = comparator.embed(known, member="global@test_tiny-mid") - plain.embed(known, member="global@test_tiny-mid")
    assert np.abs(shift).max() > 1e-4  # the mid view's global member adds its own offset


def test_memory_member_own_keeps_a_plain_global_member_beside_a_remembering_one(tmp_path):
    """``member.memory_member = "own"``: the global member stays plain and a ``memory`` member (the same head,
    trained again with the same seed, plus offsets) remembers; the two differ only on known images."""
    csv = write_training_set(tmp_path, per_group=6, pairs_per_ref=8)
    run = tmp_path / "own"
    cfg = load_config(None, [*TINY, "triplet_folds=0", "member.memory_member=own"])
    train_run(csv, run, cfg=cfg, progress=False)
    has_memory = {f.stem: DIGESTS in load_file(str(f)) for f in (run / "members").glob("*.safetensors")}
    assert "global" in has_memory and {name for name, remembers in has_memory.items() if remembers} == {"memory"}
    comparator = RunComparator(run, progress=False)
    assert "memory" in comparator.member_names and set(comparator.members.memories) == {"memory"}
    known = [str(tmp_path / "images" / "red0.png")]
    shift = comparator.embed(known, member="memory") - comparator.embed(known, member="global")
    assert np.abs(shift).max() > 1e-4  # its offsets move a known image
    write_unseen_set(tmp_path)
    unseen = [str(tmp_path / "images" / name) for name in ("red50.png", "blue51.png")]
    np.testing.assert_allclose(comparator.embed(unseen, member="memory"), comparator.embed(unseen, member="global"), atol=1e-5)
