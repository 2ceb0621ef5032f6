"""A tiny two-context triplet set for training tests: reddish and bluish images whose "human" judgement
follows a green tint (the candidate whose tint is closer to the reference's is the closer one), while a
random shade of every channel distracts the zero-shot backbone."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from tests.conftest import write_csv

#: Base colour of each context's images.
GROUPS = {"red": (220, 40, 40), "blue": (40, 40, 220)}
SIZE = 40


def write_group_image(path: Path, group: str, seed: int) -> float:
    """One image of ``group``: its base colour, a random shade (a distractor) and a random green tint;
    returns the tint, which is what the synthetic judges look at."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    shade, tint = rng.uniform(-20, 20), rng.uniform(-30, 30)
    colour = np.asarray(GROUPS[group]) + shade + np.array([0.0, tint, 0.0])
    pixels = np.clip(colour + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return float(tint)


def write_images(root: Path, per_group: int, start: int = 0) -> dict[str, dict[str, float]]:
    """``root/images/<group><i>.png`` for i in [start, start + per_group); group -> {relative path: tint}."""
    out = {}
    for g, group in enumerate(GROUPS):
        out[group] = {f"images/{group}{i}.png": write_group_image(root / "images" / f"{group}{i}.png", group, 100 * g + i)
                      for i in range(start, start + per_group)}
    return out


def triplet_rows(images: dict[str, dict[str, float]], pairs_per_ref: int, seed: int, context: bool = True) -> list[tuple]:
    """Triplets within each group, labelled by tint: (ref, a, b, label[, context])."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, tint in images.items():
        names = list(tint)
        for ref in names:
            pairs = list(itertools.combinations([n for n in names if n != ref], 2))
            for k in rng.choice(len(pairs), min(pairs_per_ref, len(pairs)), replace=False):
                a, b = pairs[k] if rng.random() < 0.5 else pairs[k][::-1]
                label = "A" if abs(tint[a] - tint[ref]) < abs(tint[b] - tint[ref]) else "B"
                rows.append((ref, a, b, label, group) if context else (ref, a, b, label))
    return rows


def write_training_set(root: Path, per_group: int = 10, pairs_per_ref: int = 12, seed: int = 0) -> Path:
    images = write_images(root, per_group)
    return write_csv(root / "train.csv", triplet_rows(images, pairs_per_ref, seed), ("ref", "a", "b", "label", "context"))


def write_unseen_set(root: Path, per_group: int = 5, start: int = 50, pairs_per_ref: int = 3, seed: int = 1) -> Path:
    """New images of both groups and triplets over them, with no context column (compare must route them)."""
    images = write_images(root, per_group, start)
    return write_csv(root / "unseen.csv", triplet_rows(images, pairs_per_ref, seed, context=False))
