"""Trust end to end on a tiny trained run: ``compare --target-accuracy/--delta/--calibrate-on/--explain``,
out-of-context references, the report's trust section, ``label plan --strategy out-of-context|abstained``."""
from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

import ctxsim
from ctxsim.cli import main
from ctxsim.config import load_config
from ctxsim.ensemble.features import REGIME_GROUP
from ctxsim.ensemble.selective import SelectiveCalibration, confidence
from ctxsim.run_folder import RunFolder
from ctxsim.train.pipeline import train_run
from tests.conftest import write_csv
from tests.synthetic import write_training_set, write_unseen_set

TINY = ["backbone=test_tiny", "views=[]", "folds=2", "member.epochs=2", "contexts.min_triplets=10"]


def write_odd_image(path, seed: int) -> None:
    """A green-and-white checkerboard: nothing like the reddish and bluish training images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    board = (np.indices((40, 40)).sum(axis=0) // 4) % 2
    pixels = np.where(board[..., None] == 1, [0, 255, 0], [255, 255, 255]) + rng.normal(0, 3, (40, 40, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    csv = write_training_set(root)
    metrics = train_run(csv, root / "run", cfg=load_config(None, TINY), progress=False)
    unseen = write_unseen_set(root)
    for i in range(4):
        write_odd_image(root / "images" / f"odd{i}.png", i)
    odd = write_csv(root / "odd.csv", [("images/odd0.png", "images/odd1.png", "images/odd2.png", "A"),
                                       ("images/odd3.png", "images/odd1.png", "images/red50.png", "B"),
                                       ("images/red50.png", "images/red51.png", "images/red52.png", "A")])
    return {"root": root, "run": root / "run", "train": csv, "unseen": unseen, "odd": odd, "metrics": metrics}


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def compare(trained, tmp_path, *flags, csv=None) -> tuple[int, pl.DataFrame | None]:
    out = tmp_path / "scored.csv"
    code = main(["compare", str(trained["run"]), str(csv or trained["unseen"]), "--out", str(out), *flags])
    return code, (pl.read_csv(out) if out.exists() else None)


def test_train_stores_the_calibration_and_context_floors(trained):
    run, metrics = trained["run"], trained["metrics"]
    files = json.loads((run / "run.json").read_text())["files"]
    assert {"trust/calibration.safetensors", "trust/thresholds.json"} <= set(files)  # digested like every model file
    oof = pl.read_parquet(run / "report" / "oof_scored.parquet")  # p_a: the chosen combiner's out-of-fold predictions
    expected = SelectiveCalibration.from_predictions(oof["p_a"].to_numpy(), (oof["label"] == "A").to_numpy(),
                                                     groups=oof["ref"].to_numpy())  # rows of one reference are correlated
    stored = RunFolder(run).load_calibration()
    assert len(stored) == oof.height == 240
    np.testing.assert_array_equal(stored.confidences, expected.confidences)
    pairs = np.unique(np.column_stack([stored.groups, expected.groups]), axis=0)  # the same partition into references
    assert len(pairs) == len(np.unique(stored.groups)) == len(np.unique(expected.groups)) == oof["ref"].n_unique()
    targets = metrics["selective"]["targets"]
    assert [t["target"] for t in targets] == [0.9, 0.95, 0.99]
    # each regime (no image seen by the copy that scored the row / some seen) gets its own threshold
    assert set(np.unique(stored.regimes)) == {0, 1}
    assert targets == [stored.select(t, 0.05).as_dict() for t in (0.9, 0.95, 0.99)]
    assert all(set(t["regimes"]) == {"new", "known"} for t in targets)
    assert json.loads((run / "trust" / "thresholds.json").read_text()) == targets
    floors = json.loads((run / "contexts" / "contexts.json").read_text())["floors"]
    assert len(floors) == 2 and metrics["out_of_context"]["floors"] == dict(zip(["blue", "red"], floors))


def feasible_target(run) -> float:
    cal = RunFolder(run).load_calibration()
    return max((t for t in np.arange(0.5, 0.96, 0.05) if cal.select(float(t), 0.05).feasible), default=0.5)


def test_compare_with_a_target_accuracy(trained, tmp_path, capsys):
    target = round(feasible_target(trained["run"]), 2)
    selection = RunFolder(trained["run"]).load_calibration().select(target, 0.05)
    code, scored = compare(trained, tmp_path, "--target-accuracy", str(target), "--baselines", "--report", str(tmp_path / "rep"))
    assert code == 0, capsys.readouterr().err
    conf = confidence(scored["p_a"].to_numpy())
    answered = scored["answered"].to_numpy()
    # every image of the unseen set is new to the run: the new-images regime's threshold applies to every row
    np.testing.assert_array_equal(answered, conf >= selection.by_regime["new"].threshold)
    raw = np.where(scored["p_a"].to_numpy() >= 0.5, "A", "B")
    assert scored["pred_raw"].to_list() == raw.tolist()
    assert scored["pred"].to_list() == np.where(answered, raw, "abstain").tolist()
    assert scored["correct"].to_list() == (raw == scored["label"].to_numpy()).tolist()  # judged on pred_raw
    printed = capsys.readouterr().out
    assert "answered" in printed and "answered_accuracy" in printed
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    overall = next(r for r in report["trust"]["selective"] if r["context"] == "(all)")
    assert overall["coverage"] == pytest.approx(answered.mean())
    assert report["trust"]["target"]["target"] == target
    assert {"ensemble", "stacker", "majority_vote"} <= set(report["trust"]["risk_coverage"])
    assert report["trust"]["risk_coverage"]["ensemble"][-1]["coverage"] == 1.0
    assert "Risk-coverage" in (tmp_path / "rep" / "report.html").read_text()


def test_a_target_of_one_abstains_on_everything(trained, tmp_path, capsys):
    code, scored = compare(trained, tmp_path, "--target-accuracy", "1.0")
    assert code == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "abstaining on every row" in line]
    assert len(warnings) == 1
    assert not scored["answered"].any() and set(scored["pred"]) == {"abstain"} and set(scored["pred_raw"]) <= {"A", "B"}


def test_calibrate_on_chooses_the_threshold_on_the_labelled_csv(trained, tmp_path, capsys):
    comparator = ctxsim.load(str(trained["run"]), progress=False)
    scored_train = comparator.score(pl.read_csv(trained["train"]), images=trained["root"])
    cal = SelectiveCalibration.from_predictions(scored_train["p_a"].to_numpy(), (scored_train["label"] == "A").to_numpy(),
                                                groups=scored_train["ref"].to_numpy())
    target = max((t for t in (0.6, 0.7, 0.8, 0.9) if cal.select(t, 0.1).feasible), default=0.6)
    expected = cal.select(target, 0.1)
    code, scored = compare(trained, tmp_path, "--target-accuracy", str(target), "--delta", "0.1",
                           "--calibrate-on", str(trained["train"]), "--images", str(trained["root"]))
    assert code == 0, capsys.readouterr().err
    np.testing.assert_array_equal(scored["answered"].to_numpy(), confidence(scored["p_a"].to_numpy()) >= expected.threshold)


@pytest.mark.parametrize("flags, message", [
    (["--target-accuracy", "1.5"], "--target-accuracy: target accuracy must be in (0, 1], got 1.5"),
    (["--target-accuracy", "0.9", "--delta", "0"], "--delta: delta must be in (0, 1), got 0.0"),
    (["--calibrate-on", "x.csv"], "--calibrate-on: chooses the threshold of --target-accuracy"),
])
def test_bad_trust_options_exit_2_with_one_line(trained, tmp_path, capsys, flags, message):
    code, scored = compare(trained, tmp_path, *flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and scored is None
    assert len(err) == 1 and message in err[0]


def test_explain_names_members_and_full_contributions_add_up(trained, tmp_path, capsys):
    code, scored = compare(trained, tmp_path, "--explain=full", "--report", str(tmp_path / "rep"))
    assert code == 0, capsys.readouterr().err
    # groups: members, contexts' memberships and (with triplet folds, the default) the seen_* regime features
    members = set(json.loads((trained["run"] / "run.json").read_text())["members"]) | {"membership:blue", "membership:red", REGIME_GROUP}
    for why in scored["why"]:
        parts = why.split("; ")
        assert 1 <= len(parts) <= 3 and all(p.rsplit(" ", 1)[0] in members for p in parts)
        values = [abs(float(p.rsplit(" ", 1)[1])) for p in parts]
        assert values == sorted(values, reverse=True)
    contrib = [c for c in scored.columns if c.startswith("contrib_")]
    assert "contrib_margin_global" in contrib
    comparator = ctxsim.load(str(trained["run"]), progress=False)
    row = scored.row(0, named=True)
    explained = comparator.explain(trained["root"] / row["ref"], trained["root"] / row["a"], trained["root"] / row["b"])
    assert explained["p_a"] == pytest.approx(row["p_a"]) and explained["why"] == row["why"]
    assert sum(row[c] for c in contrib) + explained["bias"] == pytest.approx(explained["total"], abs=1e-9)
    assert sum(explained["groups"].values()) + explained["bias"] == pytest.approx(explained["total"], abs=1e-9)
    table = json.loads((tmp_path / "rep" / "report.json").read_text())["trust"]["contributions"]
    assert set(table["contexts"]) == {"(all)", "blue", "red"} and "global" in table["groups"]
    # plain --explain: why only, from group sums; the same answers and the same top groups
    full = scored
    code, scored = compare(trained, tmp_path, "--explain")
    assert code == 0 and "why" in scored.columns and not any(c.startswith("contrib_") for c in scored.columns)
    assert scored["why"].to_list() == full["why"].to_list()
    code, plain = compare(trained, tmp_path)
    assert scored["p_a"].to_list() == plain["p_a"].to_list() == full["p_a"].to_list()  # explaining never changes p_a


def test_references_far_from_every_training_image_are_out_of_context(trained, tmp_path):
    code, scored = compare(trained, tmp_path, "--images", str(trained["root"]), csv=trained["odd"])
    assert code == 0
    assert scored["out_of_context"].to_list() == [True, True, False]
    floors = json.loads((trained["run"] / "contexts" / "contexts.json").read_text())["floors"]
    assert scored["context_similarity"][0] < min(floors)


def test_label_plan_out_of_context_and_abstained(trained, tmp_path, capsys):
    images = tmp_path / "pool"
    for name in [f"red{i}" for i in range(5)] + [f"blue{i}" for i in range(5)] + [f"odd{i}" for i in range(4)]:
        (images / "set").mkdir(parents=True, exist_ok=True)
        shutil.copy(trained["root"] / "images" / f"{name}.png", images / "set" / f"{name}.png")
    out = tmp_path / "plan.csv"
    argv = ["label", "plan", "--images", str(images), "--n", "3", "--model", str(trained["run"]), "--out", str(out), "--pool-factor", "30"]
    assert main([*argv, "--strategy", "out-of-context"]) == 0, capsys.readouterr().err
    assert all(r.startswith("set/odd") for r in pl.read_csv(out)["ref"])
    assert main([*argv, "--strategy", "abstained"]) == 0, capsys.readouterr().err
    assert pl.read_csv(out).height == 3
    assert main([*argv[:-4], "--model", "backbone:test_tiny", "--out", str(out), "--strategy", "out-of-context"]) == 2
    assert "needs a trained run" in capsys.readouterr().err
