"""Shared fixtures: small distinct images, a raw CSV writer, the shared data folder.

No test reaches a model hub (``HF_HUB_OFFLINE=1`` is set before anything imports huggingface_hub)
and no test touches ``~/.cache``: ``CTXSIM_CACHE`` points at a temporary folder for the session.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# OpenMP threads (LightGBM, scikit-learn, torch) sleep instead of spinning while they wait: on a small,
# shared machine spinning threads starve each other and tiny fits take 50x longer.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

#: Default size (width, height) of the generated test images.
IMAGE_SIZE = (48, 36)
TRIPLET_HEADER = ("ref", "a", "b", "label")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every embedding cache, downloaded model and MLflow store of the session lives in a temporary
    folder, never in ~/.cache or the working directory (``ctxsim train`` tracks by default)."""
    store = tmp_path_factory.mktemp("mlflow")
    isolated = {
        "CTXSIM_CACHE": str(tmp_path_factory.mktemp("ctxsim-cache")),
        "CTXSIM_MODEL_CACHE": str(tmp_path_factory.mktemp("ctxsim-models")),
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
    }
    old = {k: os.environ.get(k) for k in isolated}
    os.environ.update(isolated)
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def write_image(path: Path, seed: int, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    """A small image that differs from the image of every other seed (noise plus a seeded colour)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, size=3)
    pixels = np.clip(base + rng.normal(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_near(path: Path, source: Path, seed: int, noise: float = 8.0) -> Path:
    """A copy of ``source`` with a little noise: clearly closer to it than any other test image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.asarray(Image.open(source).convert("RGB"), dtype=np.float64)
    Image.fromarray(np.clip(pixels + rng.normal(0, noise, pixels.shape), 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def make_images(tmp_path):
    """``make_images(n, folder="images", ext="png")`` writes n distinct images under tmp_path/folder."""

    def make(n: int = 6, folder: str | Path = "images", ext: str = "png", size=IMAGE_SIZE, start: int = 0) -> list[Path]:
        root = Path(folder) if Path(folder).is_absolute() else tmp_path / folder
        return [write_image(root / f"img{i}.{ext}", seed=1000 + i, size=size) for i in range(start, start + n)]

    return make


def write_csv(path: Path, rows: Iterable[Sequence], header: Sequence[str] | None = TRIPLET_HEADER) -> Path:
    """Write rows as they are (bad values included); ``header=None`` writes no header line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(name="write_csv")
def write_csv_fixture():
    return write_csv


def shared_data_dir() -> Path:
    if "CTXSIM_DATA" in os.environ:
        return Path(os.environ["CTXSIM_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real human-judgement data (``$CTXSIM_DATA`` or ``../shared/data``); missing data is a failure."""
    data = shared_data_dir()
    assert (data / "zappos" / "deconflicted_triplets.csv").is_file(), f"shared data not found in {data} (set CTXSIM_DATA)"
    assert (data / "materials" / "answers_processed_train.json").is_file(), f"shared data not found in {data}"
    return data


@pytest.fixture
def triplet_set(tmp_path, make_images, write_csv):
    """A valid labelled CSV beside its images: 6 images, 12 rows, every image named."""
    images = make_images(6)
    names = [f"images/{p.name}" for p in images]
    rows = [(names[i], names[(i + 1) % 6], names[(i + 2 + k) % 6], "AB"[(i + k) % 2]) for i in range(6) for k in range(2)]
    return write_csv(tmp_path / "triplets.csv", rows), images
