"""What every combiner sees per triplet: member margins, context membership, reference embedding."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctxsim.ensemble.regime import swapped_seen


@dataclass
class EnsembleInputs:
    margins: np.ndarray  # (n, M) member margins d(R,B) - d(R,A), columns in ``member_names`` order
    membership: np.ndarray  # (n, K) soft context membership of the reference
    member_names: list[str]
    ref_emb: np.ndarray | None = None  # (n, d) zero-shot reference embeddings, for the map baselines
    ref_id: np.ndarray | None = None  # (n,) which reference image: rows sharing one share ref_emb
    seen: np.ndarray | None = None  # (n, 3) was ref, A, B a training image (ensemble/regime.py); None: not known

    def __post_init__(self):
        # float64 throughout: in float32 the combiners' ``1 - p`` under an A/B swap is only approximate
        self.margins = np.asarray(self.margins, dtype=np.float64)
        self.membership = np.asarray(self.membership, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.margins)

    def swapped(self) -> EnsembleInputs:
        """The same triplets with A and B exchanged: every margin changes sign, ``seen_a`` and ``seen_b`` swap."""
        seen = None if self.seen is None else swapped_seen(self.seen)
        return EnsembleInputs(-self.margins, self.membership, self.member_names, self.ref_emb, self.ref_id, seen)

    def subset(self, rows: np.ndarray) -> EnsembleInputs:
        emb = None if self.ref_emb is None else self.ref_emb[rows]
        ref_id = None if self.ref_id is None else self.ref_id[rows]
        seen = None if self.seen is None else self.seen[rows]
        return EnsembleInputs(self.margins[rows], self.membership[rows], self.member_names, emb, ref_id, seen)
