"""A member's stored per-image offsets (its known-image memory), looked up by content digest.

Torch-free, so that a compare over cached images loads a run without torch; the offsets are trained
in :mod:`ctxsim.members.memory`.
"""
from __future__ import annotations

import numpy as np

#: Keys of a member's weights that hold its memory (the rest are its head's).
MEMORY_PREFIX = "memory."
OFFSETS, DIGESTS = MEMORY_PREFIX + "offsets", MEMORY_PREFIX + "digests"
#: SHA-256 digests are stored as 32 raw bytes per image.
DIGEST_BYTES = 32


def split_memory(state: dict) -> tuple[dict, dict]:
    """(the head's weights, the memory's) of a member's weights (torch tensors or numpy arrays)."""
    head = {k: v for k, v in state.items() if not k.startswith(MEMORY_PREFIX)}
    return head, {k: v for k, v in state.items() if k.startswith(MEMORY_PREFIX)}


def digest_rows(digests: list[str]) -> np.ndarray:
    """Hex SHA-256 digests as rows of 32 bytes (how a weights file stores them)."""
    raw = np.frombuffer(b"".join(bytes.fromhex(d) for d in digests), dtype=np.uint8)
    return raw.reshape(len(digests), DIGEST_BYTES).copy()


class Memory:
    """A member's stored offsets, looked up by image digest."""

    def __init__(self, state: dict):
        self.offsets = np.asarray(state[OFFSETS], dtype=np.float32)
        digests = np.asarray(state[DIGESTS]).reshape(-1, DIGEST_BYTES)
        self.index = {row.tobytes().hex(): i for i, row in enumerate(digests)}

    def __len__(self) -> int:
        return len(self.index)

    def apply(self, emb: np.ndarray, digests: list[str]) -> np.ndarray:
        """``normalize(emb + offset)`` for the known images among ``digests``; the others unchanged."""
        rows = [(i, self.index[d]) for i, d in enumerate(digests) if d in self.index]
        if not rows:
            return emb
        out = np.array(emb, dtype=np.float32, copy=True)
        at, known = (np.asarray(v) for v in zip(*rows))
        moved = out[at] + self.offsets[known]
        out[at] = moved / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)
        return out
