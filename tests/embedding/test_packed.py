"""Packed embeddings: every member's margins in one native pass, for any number of unique images."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ctxsim.embedding import packed
from ctxsim.embedding.distances import cosine_distance_table, l2_normalize, margins
from ctxsim.embedding.packed import LANES, PackedEmbeddings, margins_ir
from ctxsim.native import CACHE_SUBDIR


def _pool(n=300, dims=(16, 16, 16), seed=0):
    rng = np.random.default_rng(seed)
    return [l2_normalize(rng.normal(size=(n, d))) for d in dims]


@pytest.mark.parametrize("dims", [(16, 16, 16), (8, 24, 5), (1280, 3)])  # aligned, padded, one wide member
@pytest.mark.parametrize("threads", [1, 2])
def test_packed_margins_equal_the_tables(dims, threads, monkeypatch):
    monkeypatch.setattr(packed, "BLOCK_ROWS", 64)  # many blocks, shared between the threads
    embs = _pool(dims=dims)
    rng = np.random.default_rng(1)
    ref, a, b = (rng.integers(0, 300, 1001) for _ in range(3))  # not a multiple of the block
    got = PackedEmbeddings(embs).margins(ref, a, b, threads=threads)
    assert got.shape == (1001, len(dims)) and got.dtype == np.float32
    for i, emb in enumerate(embs):
        np.testing.assert_allclose(got[:, i], margins(emb, ref, a, b, cosine_distance_table(emb)), atol=2e-6)


def test_margins_do_not_depend_on_threads_or_row_order():
    embs = _pool(dims=(40, 16))
    rng = np.random.default_rng(2)
    ref, a, b = (rng.integers(0, 300, 5000) for _ in range(3))
    p = PackedEmbeddings(embs)
    one, two = p.margins(ref, a, b, threads=1), p.margins(ref, a, b, threads=2)
    np.testing.assert_array_equal(one, two)
    shuffled = rng.permutation(5000)
    np.testing.assert_array_equal(p.margins(ref[shuffled], a[shuffled], b[shuffled]), one[shuffled])


def test_float16_storage_halves_the_matrix_and_stays_close():
    embs = _pool(n=500, dims=(1280, 1280))
    rng = np.random.default_rng(3)
    ref, a, b = (rng.integers(0, 500, 2000) for _ in range(3))
    full, half = PackedEmbeddings(embs), PackedEmbeddings(embs, dtype=np.float16)
    assert half.matrix.dtype == np.float16 and half.matrix.nbytes * 2 == full.matrix.nbytes
    # each value rounded to 11 significant bits: the margin moves by ~1e-5, far below a margin's scale
    diff = np.abs(half.margins(ref, a, b) - full.margins(ref, a, b))
    assert diff.max() < 2e-4 and diff.mean() < 3e-5
    with pytest.raises(ValueError, match="float32 or float16"):
        PackedEmbeddings(embs, dtype=np.float64)


def test_views_share_the_padded_matrix_and_indices_are_checked():
    embs = _pool(n=10, dims=(4, 6))
    p = PackedEmbeddings(embs)
    assert p.matrix.flags.c_contiguous and p.matrix.shape == (10, 2 * LANES)
    assert list(p.offsets) == [0, LANES]
    assert not p.matrix[:, 4:LANES].any() and not p.matrix[:, LANES + 6:].any()  # padding is zeros
    for view, emb in zip(p.views(), embs):
        np.testing.assert_array_equal(view, emb)
        assert np.shares_memory(view, p.matrix)
    ref = np.array([-1, 0])  # numpy's negative indices
    np.testing.assert_allclose(p.margins(ref, np.array([1, 2]), np.array([3, 4]))[:, 0],
                               margins(embs[0], ref, np.array([1, 2]), np.array([3, 4]), cosine_distance_table(embs[0])), atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        p.margins(np.array([10]), np.array([0]), np.array([1]))
    with pytest.raises(IndexError, match="out of range"):
        p.margins(np.array([0]), np.array([-11]), np.array([1]))
    with pytest.raises(ValueError, match="same length"):
        p.margins(np.array([0, 1]), np.array([0]), np.array([1]))
    assert p.margins(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)).shape == (0, 2)


def test_kernel_object_code_is_cached_on_disk():
    layout = ("float", (0, 32), (32, 16), 48)
    PackedEmbeddings(_pool(n=5, dims=(20, 9))).margins(np.array([0]), np.array([1]), np.array([2]))
    folder = Path(os.environ["CTXSIM_CACHE"]) / CACHE_SUBDIR
    assert [p for p in folder.glob("margins-*.o")]
    ir = margins_ir(*layout)
    assert "fpext" not in ir and "fpext" in margins_ir("half", *layout[1:])  # float16 is widened, float32 read as is
