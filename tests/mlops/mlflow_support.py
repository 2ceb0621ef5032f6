"""Shared by the MLflow tests: a tiny labelled data set, tiny trained runs (trained once per session,
kept on disk), and a temporary tracking store.

The data: each reference image has a near copy (a little noise) and far images (other seeds);
the label says which candidate is the near copy, so a model that learned it is right everywhere
and a model trained on the flipped labels is wrong everywhere. Two declared contexts, ``x`` and ``y``.
"""
from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_image, write_near

#: Settings of every tiny run: random-weight backbone, 2 folds (members and combiners), 2 epochs.
TINY = ["backbone=test_tiny", "views=[]", "folds=2", "member.epochs=2", "contexts.min_triplets=10", "ensemble.folds=2"]
TINY_FLAGS = ["--backbone", "test_tiny", "--set", "views=[]", "--folds", "2", "--epochs", "2", "--set", "contexts.min_triplets=10", "--set", "ensemble.folds=2"]
HEADER = ("ref", "a", "b", "label", "context")


def write_triplets(root: Path, name: str, refs: range, per_ref: int, flip: bool = False, seed: int = 0) -> Path:
    """``root/name``: ``per_ref`` labelled triplets per reference, images under ``root/images``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in refs:
        ref = root / "images" / f"r{i}.png"
        if not ref.exists():
            write_image(ref, 10 + i)
            write_near(root / "images" / f"n{i}.png", ref, 100 + i)
            write_image(root / "images" / f"f{i}.png", 200 + i)
    far = [f"images/f{i}.png" for i in refs]
    for k, i in enumerate(refs):
        for j in range(per_ref):
            near, other = f"images/n{i}.png", far[(k + j) % len(far)]
            a_is_near = rng.random() < 0.5
            label = "A" if a_is_near != flip else "B"
            a, b = (near, other) if a_is_near else (other, near)
            rows.append((f"images/r{i}.png", a, b, label, "x" if i % 2 else "y"))
    path = root / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def data_set(base: Path) -> dict[str, Path]:
    """Training CSV (12 references), the same with flipped labels, and a held-out eval CSV (other references)."""
    root = base / "data"
    if not (root / "eval.csv").is_file():
        root.mkdir(parents=True, exist_ok=True)
        write_triplets(root, "train.csv", range(12), 12)
        write_triplets(root, "flipped.csv", range(12), 12, flip=True)
        write_triplets(root, "eval.csv", range(12, 20), 6, seed=1)
    return {"root": root, "train": root / "train.csv", "flipped": root / "flipped.csv", "eval": root / "eval.csv"}


def trained_run(base: Path, kind: str = "train") -> tuple[Path, dict, object]:
    """A tiny run trained on ``kind`` (``train`` or ``flipped``), once per test session."""
    from ctxsim.config import load_config
    from ctxsim.train.pipeline import train_run

    data = data_set(base)
    out = base / "runs" / kind
    cfg = load_config(None, TINY)
    if not (out / "metrics.json").is_file():
        train_run(data[kind], out, data["root"], cfg, progress=False)
    return out, json.loads((out / "metrics.json").read_text()), cfg


def session_base(tmp_path_factory) -> Path:
    """A folder shared by every test module of the session (runs and data are reused from it)."""
    base = tmp_path_factory.getbasetemp() / "mlflow-shared"
    base.mkdir(exist_ok=True)
    return base


@contextlib.contextmanager
def tracking_store(root: Path):
    """MLFLOW_TRACKING_URI on a fresh SQLite file under ``root`` (ctxsim keeps its artifacts beside it),
    the model download cache under it, and no telemetry."""
    root.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.setenv("CTXSIM_MODEL_CACHE", str(root / "model-cache"))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        yield root
