"""Ray (``ctxsim[ray]``) on a local two-CPU instance shared by the module: a sharded compare writes exactly
the single-machine output, ``train --ray`` fits the members as Ray tasks into a loadable run, and the
single-machine paths never import Ray."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ctxsim.cli import main
from ctxsim.compare.model_uri import load_comparator
from ctxsim.config import load_config
from ctxsim.compare.ray_backend import compare_ray, shards
from ctxsim.compare.trained import RunComparator
from ctxsim.compare.scoring import compare_files
from ctxsim.train.pipeline import train_run
from tests.conftest import write_csv

pytestmark = pytest.mark.ray

TINY = ["backbone=test_tiny", "views=[]", "folds=2", "member.epochs=2", "contexts.min_triplets=10"]
SHARD = 70
GROUPS = {"red": (220, 40, 40), "blue": (40, 40, 220)}


def write_training_set(root: Path, per_group: int = 10, pairs_per_ref: int = 12) -> Path:
    """Two declared contexts of tinted images; the "judges" pick the candidate whose green tint is closer."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for g, (group, colour) in enumerate(GROUPS.items()):
        tint = {}
        for i in range(per_group):
            name = f"images/{group}{i}.png"
            tint[name] = rng.uniform(-30, 30)
            pixels = np.clip(np.asarray(colour) + rng.uniform(-20, 20) + [0, tint[name], 0] + rng.normal(0, 12, (40, 40, 3)), 0, 255)
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name)
        names = list(tint)
        for ref in names:
            for _ in range(pairs_per_ref):
                a, b = rng.choice([n for n in names if n != ref], 2, replace=False)
                label = "A" if abs(tint[a] - tint[ref]) < abs(tint[b] - tint[ref]) else "B"
                rows.append((ref, a, b, label, group))
    return write_csv(root / "train.csv", rows, ("ref", "a", "b", "label", "context"))


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny labelled set, a run trained on one machine, and a second CSV without labels or contexts."""
    root = tmp_path_factory.mktemp("distributed")
    csv = write_training_set(root)
    metrics = train_run(csv, root / "run", cfg=load_config(None, TINY), progress=False)
    plain = root / "plain.csv"
    pl.read_csv(csv).select("ref", "a", "b").head(50).write_csv(plain)
    return root, csv, plain, metrics


def test_shards_cover_every_row_in_order(trained):
    root, csv, plain, _ = trained
    parts = shards([csv, plain], shard_rows=SHARD)
    n = pl.read_csv(csv).height
    assert [(p["csv"], p["offset"]) for p in parts[:2]] == [(str(csv), 0), (str(csv), SHARD)]
    assert sum(p["length"] for p in parts) == n + 50
    assert [p["shard"] for p in parts] == list(range(len(parts)))


def test_ray_compare_writes_the_single_machine_output(ray_session, trained, tmp_path):
    root, csv, plain, _ = trained
    run = str(root / "run")
    single, sharded = tmp_path / "single.csv", tmp_path / "sharded.csv"
    expected = compare_files(load_comparator(run, progress=False), [csv, plain], single, margins=True, progress=False)
    tally = compare_ray(run, [csv, plain], sharded, shard_rows=SHARD, margins=True, progress=False)
    assert len(shards([csv, plain], shard_rows=SHARD)) >= 4  # really sharded: more shards than actors
    assert sharded.read_bytes() == single.read_bytes()  # same columns, order, rows and numbers
    assert tally.summary() == expected.summary()  # accuracy counted on the driver as the rows arrive
    df = pl.read_csv(sharded)
    assert df.columns[:5] == ["ref", "a", "b", "label", "id"] and {"context", "p_a", "margin_global"} <= set(df.columns)
    assert df.height == pl.read_csv(csv).height + 50 and df["label"].null_count() == 50  # the unlabelled file too


def test_cli_compare_ray_flag(trained, tmp_path, monkeypatch):
    """``--ray`` with and without an address reaches :func:`compare_ray`; ``--resume`` is refused with it."""
    from ctxsim.commands import compare as commands
    from ctxsim.metrics import AccuracyTally

    root, csv, _, _ = trained
    calls = []
    monkeypatch.setattr(commands, "compare_ray", lambda *a, **kw: (calls.append((a, kw)), AccuracyTally())[1])
    argv = ["compare", str(root / "run"), str(csv), "--out", str(tmp_path / "o.csv"), "--chunk-rows", "70", "--margins"]
    assert main([*argv, "--ray"]) == 0
    assert main([*argv, "--ray", "ray://head:10001"]) == 0
    assert [kw["address"] for _, kw in calls] == ["auto", "ray://head:10001"]
    assert calls[0][0][:3] == (str(root / "run"), [str(csv)], str(tmp_path / "o.csv"))
    assert calls[0][1]["shard_rows"] == 70 and calls[0][1]["margins"] is True
    assert main([*argv, "--resume", "--ray"]) == 2


def test_train_with_ray_gives_a_loadable_run(ray_session, trained, tmp_path):
    root, csv, _, metrics = trained
    out = tmp_path / "ray_run"
    ray_metrics = train_run(csv, out, cfg=load_config(None, TINY), progress=False, ray="auto")  # the running instance
    comparator = RunComparator(out, progress=False)
    single = RunComparator(root / "run", progress=False)
    assert comparator.member_names == single.member_names == ["zeroshot", "global", "context-blue", "context-red"]
    assert list(ray_metrics["members"]) == list(metrics["members"])  # every member fitted, in spec order
    assert json.loads((out / "metrics.json").read_text())["n_triplets"] == metrics["n_triplets"]
    scored = comparator.score(pl.read_csv(csv).head(20), root)
    assert scored["p_a"].is_between(0, 1).all()


def test_cli_ray_flags():
    from ctxsim.cli import build_parser

    parser = build_parser()
    train = ["train", "--triplets", "t.csv", "--out", "run"]
    assert parser.parse_args(train).ray is None
    assert parser.parse_args([*train, "--ray"]).ray == "auto"
    assert parser.parse_args([*train, "--ray", "10.0.0.1:6379"]).ray == "10.0.0.1:6379"
    assert parser.parse_args(["compare", "run", "t.csv", "--out", "o.csv", "--resume"]).resume is True


def test_single_machine_compare_does_not_import_ray(trained, tmp_path):
    root, csv, _, _ = trained
    code = ("import sys\n"
            "from ctxsim.cli import main\n"
            f"assert main(['compare', 'backbone:pixels', {str(csv)!r}, '--out', {str(tmp_path / 'o.csv')!r}]) == 0\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                   "CTXSIM_CACHE": str(tmp_path / "cache")})
