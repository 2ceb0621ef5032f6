"""The comparator's image index: codes in the order images were added, missing paths handed over once."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ctxsim.compare.image_index import ImageIndex


def test_codes_follow_the_order_paths_were_added():
    index = ImageIndex(["/x/b.jpg", "/x/a.jpg"])
    assert len(index) == 2
    got = index.codes(pl.Series(["/x/a.jpg", "/x/b.jpg", "/x/a.jpg"]))
    assert got.dtype == np.int64 and got.tolist() == [1, 0, 1]


def test_missing_paths_are_handed_over_once_in_first_seen_order_then_coded():
    index, handed = ImageIndex(["/x/known.jpg"]), []
    paths = pl.Series(["/x/new2.jpg", "/x/known.jpg", "/x/new1.jpg", "/x/new2.jpg", None], dtype=pl.String).drop_nulls()
    got = index.codes(paths, handed.append)
    assert handed == [["/x/new2.jpg", "/x/new1.jpg"]]
    assert got.tolist() == [1, 0, 2, 1] and len(index) == 3
    index.codes(paths, handed.append)  # nothing new: the callback is not called again
    assert len(handed) == 1


def test_an_unknown_path_without_a_callback_is_a_key_error():
    index = ImageIndex()
    assert len(index) == 0 and index.codes(pl.Series([], dtype=pl.String)).tolist() == []
    with pytest.raises(KeyError, match="/x/none.jpg"):
        index.codes(pl.Series(["/x/none.jpg"]))


def test_a_large_index_codes_every_row():
    paths = [f"/cat/{i:06d}.jpg" for i in range(50_000)]
    index = ImageIndex(paths)
    rows = np.random.default_rng(0).integers(0, len(paths), 200_000)
    np.testing.assert_array_equal(index.codes(pl.Series(np.asarray(paths)[rows])), rows)
