"""Distances and margins on L2-normalised embeddings: ``d = 1 - cos``, margin ``d(R,B) - d(R,A)``.

A margin > 0 means A is closer to R. Triplets name far fewer unique images than rows, so margins
are looked up in a per-member pairwise distance table when the image pool is small enough. Past that,
:class:`ctxsim.embedding.packed.PackedEmbeddings` computes every member's margin of a row in one native
pass over the members' embeddings packed side by side.
"""
from __future__ import annotations

import numpy as np

from ctxsim.embedding.packed import PackedEmbeddings

#: Largest image pool for which the full (N x N) distance table is built (64 MiB of float32).
MAX_TABLE_IMAGES = 4096
#: Past MAX_TABLE_IMAGES the members' embeddings are kept packed as float16: half the memory and half the
#: memory traffic of the margins, which then bound the speed; a margin moves by ~1e-5 (README, "Many unique
#: images"), where the tables' margins are exact float32.
PACKED_DTYPE = np.float16


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
