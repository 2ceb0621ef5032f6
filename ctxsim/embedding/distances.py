"""Distances and margins on L2-normalised embeddings: ``d = 1 - cos``, margin ``d(R,B) - d(R,A)``.

A margin > 0 means A is closer to R. Triplets name far fewer unique images than rows, so margins
are looked up in a per-member pairwise distance table when the image pool is small enough. Past that,
:class:`PackedEmbeddings` keeps every member's embeddings side by side in one contiguous float32
matrix (one row per image) and computes ``r . (a - b)`` for all members at once: rows sorted by
reference and processed in blocks, so the reference rows are hot in cache, each candidate row is one
contiguous gather for every member, and the arithmetic is vectorised (no Python per row), in threads.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Largest image pool for which the full (N x N) distance table is built (64 MiB of float32).
MAX_TABLE_IMAGES = 4096
#: Triplet rows per block of gathered embeddings: three (block x all members' dims) float32 buffers that
#: stay in a core's cache.
BLOCK_ROWS = 64
#: Rows below which margins are computed in the calling thread (threads cost more than they save).
THREADED_MIN_ROWS = 20_000


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine_distance_table(emb: np.ndarray) -> np.ndarray:
    """``1 - cos`` between every pair of rows of normalised ``emb``."""
    return (1.0 - emb @ emb.T).astype(np.float32)


def margins(emb: np.ndarray, ref: np.ndarray, a: np.ndarray, b: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """``d(R,B) - d(R,A)`` for index arrays into normalised ``emb`` (optionally via a precomputed table)."""
    if table is not None:
        return table[ref, b] - table[ref, a]
    return PackedEmbeddings([emb]).margins(ref, a, b)[:, 0]


def default_threads() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


class PackedEmbeddings:
    """Members' normalised embeddings side by side: ``matrix`` is (images, sum of the members' dims),
    C-contiguous float32; member ``i`` is the column slice ``offsets[i]:offsets[i] + dims[i]``."""

    def __init__(self, embeddings: Sequence[np.ndarray]):
        self.dims = [int(e.shape[1]) for e in embeddings]
        self.offsets = np.cumsum([0, *self.dims[:-1]]).astype(np.intp)
        self.matrix = np.ascontiguousarray(np.concatenate([np.asarray(e, np.float32) for e in embeddings], axis=1))
        self._same_dim = len(set(self.dims)) == 1

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def views(self) -> list[np.ndarray]:
        """Each member's embeddings as a view into ``matrix`` (no copy)."""
        return [self.matrix[:, o : o + d] for o, d in zip(self.offsets, self.dims)]

    def margins(self, ref: np.ndarray, a: np.ndarray, b: np.ndarray, *, block_rows: int = BLOCK_ROWS,
                threads: int | None = None) -> np.ndarray:
        """(rows, members) margins ``r . a - r . b`` = ``d(R,B) - d(R,A)``."""
        ref, a, b = (np.asarray(x, dtype=np.intp) for x in (ref, a, b))
        n, k = len(ref), len(self.dims)
        out = np.empty((n, k), np.float32)
        if n == 0:
            return out
        for x in (ref, a, b):
            if x.min() < -len(self) or x.max() >= len(self):
                raise IndexError(f"image index out of range for {len(self)} images")
        ref, a, b = (np.where(x < 0, x + len(self), x) if x.min() < 0 else x for x in (ref, a, b))  # numpy's negative indices
        order = np.argsort(ref, kind="stable")  # same reference, neighbouring rows: its row stays in cache
        starts = list(range(0, n, block_rows))
        threads = threads or default_threads()
        if threads == 1 or n < THREADED_MIN_ROWS:
            self._blocks(starts, order, ref, a, b, out, block_rows)
            return out
        parts = [starts[i::threads] for i in range(threads)]
        with ThreadPoolExecutor(threads) as pool:  # numpy's take and arithmetic release the GIL
            list(pool.map(lambda part: self._blocks(part, order, ref, a, b, out, block_rows), parts))
        return out

    def _blocks(self, starts, order, ref, a, b, out, block_rows) -> None:
        width = self.matrix.shape[1]
        r_buf, a_buf, b_buf = (np.empty((block_rows, width), np.float32) for _ in range(3))
        for start in starts:
            rows = order[start : start + block_rows]
            m = len(rows)
            r, x, y = r_buf[:m], a_buf[:m], b_buf[:m]
            # mode="clip": take into ``out`` unbuffered (4x faster than "raise"); indices are checked in margins()
            np.take(self.matrix, ref[rows], axis=0, out=r, mode="clip")
            np.take(self.matrix, a[rows], axis=0, out=x, mode="clip")
            np.take(self.matrix, b[rows], axis=0, out=y, mode="clip")
            np.subtract(x, y, out=x)
            if self._same_dim:
                out[rows] = np.einsum("nkd,nkd->nk", r.reshape(m, len(self.dims), -1), x.reshape(m, len(self.dims), -1))
            else:
                np.multiply(x, r, out=x)
                out[rows] = np.add.reduceat(x, self.offsets, axis=1)
