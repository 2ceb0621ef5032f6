"""The regime of a triplet: which of its images the run was trained on (``seen_ref``, ``seen_a``, ``seen_b``).

Members do better on images they trained on (a member with memory, members/memory.py, most of all),
so the stacker is told, per triplet, whether each image was seen in training. At training time this
comes from the out-of-fold structure (in an image-fold copy the fold's images are unseen, in a
triplet-fold copy images stay known); at compare time from the run's :class:`KnownImages`, the content
digests (:func:`ctxsim.data.images.file_digest`) of every image the run trained on.

``seen_a`` and ``seen_b`` swap when A and B do (:func:`swapped_seen`), so the symmetric stacker stays
exactly symmetric.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: Columns of ``seen``: was the reference, candidate A, candidate B an image of training.
SEEN_NAMES = ("seen_ref", "seen_a", "seen_b")
#: The file :class:`KnownImages` keeps in the folder a run gives it.
DIGESTS_FILE = "digests.json"


def swapped_seen(seen: np.ndarray) -> np.ndarray:
    """``seen`` of the same triplets with A and B exchanged."""
    return seen[:, [0, 2, 1]]


def seen_by(train_images: np.ndarray, ref: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 3) float flags: is each image of each row among ``train_images`` (image-table indices)."""
    return np.column_stack([np.isin(c, train_images) for c in (ref, a, b)]).astype(np.float64)


class KnownImages:
    """The content digests of a run's training images."""

    def __init__(self, digests):
        self.digests = sorted(set(digests))
        self._set = set(self.digests)

    def __len__(self) -> int:
        return len(self.digests)

    def flags(self, digests: list[str]) -> np.ndarray:
        """1.0 for each digest of a training image, else 0.0."""
        return np.array([d in self._set for d in digests], dtype=np.float64)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / DIGESTS_FILE).write_text(json.dumps(self.digests))

    @classmethod
    def load(cls, folder: Path) -> KnownImages | None:
        """The run's known images, or None for a run saved without them."""
        path = folder / DIGESTS_FILE
        return cls(json.loads(path.read_text())) if path.is_file() else None
