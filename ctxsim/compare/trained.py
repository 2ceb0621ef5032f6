"""A trained run folder as a comparator: contexts route references, members score, the ensemble combines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.compare.comparator import Comparator
from ctxsim.data.images import file_digest
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.run_folder import RunFolder
from ctxsim.schema import IMAGE_COLUMNS, PATH, ZEROSHOT, baseline_column

_MEMBERSHIP = "_membership"  # per-image soft context membership, kept beside member embeddings
_MEMBERSHIP_SOURCE = ZEROSHOT  # contexts are centroids in the zero-shot embedding space
_SEEN = "_seen"  # per image: 1.0 when the run trained on it (ensemble/regime.py)


class RunComparator(Comparator):
    def __init__(self, folder: str | Path, *, baselines: bool = False, **kw):
        super().__init__(**kw)
        self.folder = Path(folder)
        self.run_folder = RunFolder(self.folder)
        self.run = self.run_folder.manifest()  # refuses an unknown format or a changed model file
        self.contexts = self.run_folder.load_contexts()
        self.members = self.run_folder.load_members(self.run.backbone)
        self.ensemble = self.run_folder.load_ensemble()
        self.known = self.run_folder.load_known() if self.ensemble.regime else None
        self.baselines = baselines
        self.extra_columns = [baseline_column(n) for n in self.ensemble.combiners] if baselines else []

    @property
    def member_names(self) -> list[str]:
        return self.members.names

    def fingerprint(self) -> str:
        """A digest of the run's model files (contexts, members, ensemble), not of its report."""
        return self.run_folder.fingerprint()

    def assign(self, images) -> list[str]:
        """The context each image would be routed to as a reference (works on unseen images)."""
        return [str(c) for c in self.contexts.assign(self.embed(images, member=_MEMBERSHIP_SOURCE))]

    def _image_data(self, paths):
        data = self.members.embed(paths, self.cache, device=self.device, progress=self.progress)
        data[_MEMBERSHIP] = self.contexts.membership(data[ZEROSHOT])
        if self.known is not None:
            data[_SEEN] = self.known.flags([file_digest(p) for p in paths])
        return data

    def _inputs(self, margins: dict, ref: np.ndarray, chunk: pl.DataFrame, with_embeddings: bool) -> EnsembleInputs:
        membership = self._data[_MEMBERSHIP][ref]
        if "context" in chunk.columns:  # a declared, known context overrides the soft routing
            known = {n: i for i, n in enumerate(self.contexts.names)}
            declared = chunk["context"].replace_strict(known, default=-1, return_dtype=pl.Int64).to_numpy()
            rows = np.flatnonzero(declared >= 0)
            membership = membership.copy()
            membership[rows] = np.eye(len(known), dtype=membership.dtype)[declared[rows]]
        emb = self._data[ZEROSHOT][ref] if with_embeddings else None
        seen = None
        if self.known is not None:  # seen_ref, seen_a, seen_b from the run's training digests
            seen = np.column_stack([self._data[_SEEN][self._codes(chunk[PATH[c]])] for c in IMAGE_COLUMNS])
        return EnsembleInputs(np.column_stack([margins[n] for n in self.member_names]), membership, self.member_names, emb, ref, seen)

    def _combine(self, margins, ref, chunk):
        x = self._inputs(margins, ref, chunk, self.ensemble.needs_embeddings or self.baselines)
        context = pl.Series(np.asarray(self.contexts.names, dtype=object)[x.membership.argmax(axis=1)], dtype=pl.String)
        extra = {baseline_column(n): p for n, p in self.ensemble.predict_all(x).items()} if self.baselines else {}
        return self.ensemble.predict(x), context, extra
