"""Image hold-out splits: no held-out image ever reaches the fit part."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ctxsim.data.splits import split_by_images, split_files
from ctxsim.data.triplets import read_triplets
from ctxsim.schema import IMAGE_COLUMNS, PATH
from tests.synthetic import write_training_set


def images_of(df: pl.DataFrame) -> set[str]:
    return set().union(*(df[PATH[c]].to_list() for c in IMAGE_COLUMNS))


def test_fit_and_heldout_share_no_image(tmp_path):
    df = read_triplets(write_training_set(tmp_path), check_images=False)
    fit, held = split_by_images(df, holdout=0.3, seed=1)
    assert fit.height > 0 and held.height > 0
    assert not images_of(fit) & images_of(held)
    assert fit.height + held.height < df.height  # rows mixing kept and held-out images are in neither part
    again = split_by_images(df, holdout=0.3, seed=1)
    assert again[0].equals(fit) and again[1].equals(held)  # seeded
    assert not split_by_images(df, holdout=0.3, seed=2)[1].equals(held)


@pytest.mark.parametrize("holdout", [0, 1, -0.5, 1.5])
def test_holdout_must_be_a_share(tmp_path, holdout):
    df = read_triplets(write_training_set(tmp_path), check_images=False)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_by_images(df, holdout=holdout)


def test_split_files_write_paths_relative_to_each_output(tmp_path):
    csv = write_training_set(tmp_path / "src")
    n_fit, n_held = split_files([csv], None, tmp_path / "out" / "fit.csv", tmp_path / "other" / "held.csv", 0.25, 0)
    fit, held = read_triplets(tmp_path / "out" / "fit.csv"), read_triplets(tmp_path / "other" / "held.csv")
    assert (fit.height, held.height) == (n_fit, n_held)
    src = (tmp_path / "src").resolve()
    assert all(Path(p).resolve().is_relative_to(src) and Path(p).is_file() for p in images_of(fit) | images_of(held))
    assert not images_of(fit) & images_of(held)
