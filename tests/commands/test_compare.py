"""``ctxsim compare`` on a warm cache: no torch, scikit-learn or LightGBM, and the same answers as cold."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ctxsim.cli import main
from ctxsim.config import load_config
from ctxsim.train.pipeline import train_run
from ctxsim.compare.trained import RunComparator
from tests.synthetic import write_training_set

TINY = ["backbone=test_tiny", 'views=["mid"]', "folds=2", "member.epochs=2", "contexts.min_triplets=10"]
HEAVY = ["torch", "timm", "sklearn", "lightgbm", "lleaves", "mlflow", "ray", "pandas"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    csv = write_training_set(root)
    train_run(csv, root / "run", cfg=load_config(None, TINY), progress=False)
    return root, csv


def test_a_warm_compare_imports_no_model_stack_and_answers_as_a_cold_one(trained, tmp_path):
    root, csv = trained
    cold = tmp_path / "cold.csv"
    assert main(["compare", str(root / "run"), str(csv), "--out", str(cold), "--margins"]) == 0  # embeds: the cache fills
    warm = tmp_path / "warm.csv"
    probe = (f"import json, sys; from ctxsim.cli import main; rc = main({['compare', str(root / 'run'), str(csv), '--out', str(warm), '--margins']!r}); "
             f"print(json.dumps({{'rc': rc, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ.copy(), check=False)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "loaded": []}, done.stderr
    assert warm.read_bytes() == cold.read_bytes()


def test_backbones_are_built_only_for_images_not_in_the_cache(trained, make_images):
    root, csv = trained
    assert main(["compare", str(root / "run"), str(csv), "--out", str(root / "fill.csv")]) == 0
    comparator = RunComparator(root / "run", progress=False)
    cached = sorted(str(p) for p in (root / "images").rglob("*.png"))
    comparator.prepare(cached)
    assert not any(view.backbone.is_built for view in comparator.members.views.values())
    comparator.prepare([str(p) for p in make_images(2, start=900)])  # new images: every view embeds them
    assert all(view.backbone.is_built for view in comparator.members.views.values())
