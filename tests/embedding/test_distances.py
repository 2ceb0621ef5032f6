"""Cosine distances and margins, against numbers worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ctxsim.embedding.distances import cosine_distance_table, l2_normalize, margins

# Four unit vectors in the plane: R along x, A at cos = 0.6 from R, B at 90 degrees, C opposite R.
R, A, B, C = [1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]
EMB = np.array([R, A, B, C], dtype=np.float32)


def test_l2_normalize():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])
    assert out.dtype == np.float32


def test_cosine_distance_table():
    table = cosine_distance_table(EMB)
    # d = 1 - cos: R-A 1 - 0.6, R-B 1 - 0, R-C 1 + 1, A-B 1 - 0.8, A-C 1 + 0.6, B-C 1 - 0
    expected = [
        [0.0, 0.4, 1.0, 2.0],
        [0.4, 0.0, 0.2, 1.6],
        [1.0, 0.2, 0.0, 1.0],
        [2.0, 1.6, 1.0, 0.0],
    ]
    np.testing.assert_allclose(table, expected, atol=1e-6)
    assert table.dtype == np.float32


@pytest.mark.parametrize("use_table", [False, True])
def test_margins_are_d_ref_b_minus_d_ref_a(use_table):
    ref, a, b = np.array([0, 0, 0, 1, 2]), np.array([1, 2, 1, 0, 2]), np.array([2, 1, 3, 2, 3])
    table = cosine_distance_table(EMB) if use_table else None
    got = margins(EMB, ref, a, b, table)
    # row 0: d(R,B) - d(R,A) = 1.0 - 0.4; row 1: candidates swapped; row 2: d(R,C) - d(R,A) = 2 - 0.4
    # row 3: reference A, d(A,B) - d(A,R) = 0.2 - 0.4; row 4: reference B, a is B itself: d(B,C) - 0 = 1
    np.testing.assert_allclose(got, [0.6, -0.6, 1.6, -0.2, 1.0], atol=1e-6)
    assert got[0] > 0  # positive: A closer


def test_table_and_direct_margins_agree_on_random_embeddings():
    rng = np.random.default_rng(0)
    emb = l2_normalize(rng.normal(size=(50, 16)))
    ref, a, b = (rng.integers(0, 50, 200) for _ in range(3))
    np.testing.assert_allclose(margins(emb, ref, a, b), margins(emb, ref, a, b, cosine_distance_table(emb)), atol=1e-6)


def test_margin_is_invariant_to_vector_length_after_normalising():
    raw = np.array([[2.0, 0.0], [3.0, 4.0], [0.0, 0.5]])
    got = margins(l2_normalize(raw), np.array([0]), np.array([1]), np.array([2]))
    assert got[0] == pytest.approx((1 - 0.0) - (1 - 0.6), abs=1e-6)
    assert math.isclose(float(got[0]), 0.6, abs_tol=1e-6)
