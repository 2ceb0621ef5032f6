"""A trained run folder as a comparator: contexts route references, members score, the ensemble combines.

Trust (README, Trust): with a target accuracy the run abstains where its confidence is below the threshold
chosen on held-out rows (``answered``, ``pred_raw``); with ``explain`` it says which members and contexts
moved ``p_a`` (``why``, and ``contrib_<feature>`` when full); every reference gets its similarity to its
routed context and whether it is out of context."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.compare.comparator import Comparator
from ctxsim.data.images import file_digest
from ctxsim.data.triplets import read_triplets, resolved_paths
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.selective import (
    Selection,
    SelectiveCalibration,
    check_target,
    regime_of,
)
from ctxsim.errors import InputError, Problem
from ctxsim.run_folder import RunFolder
from ctxsim.schema import (
    ANSWERED,
    CONTEXT_SIMILARITY,
    DEFAULT_DELTA,
    OUT_OF_CONTEXT,
    PRED_RAW,
    WHY,
    WHY_TOP,
    ZEROSHOT,
    baseline_column,
    contrib_column,
)

log = logging.getLogger(__name__)

_MEMBERSHIP = "_membership"  # per-image soft context membership, kept beside member embeddings
_MEMBERSHIP_SOURCE = ZEROSHOT  # contexts are centroids in the zero-shot embedding space
_CENTROID_SIMILARITY = "_centroid_similarity"  # per-image cosine similarity to every context centroid
#: ``explain`` levels: ``why`` only, or ``why`` and a ``contrib_<feature>`` column per stacking feature.
EXPLAIN_LEVELS = ("top", "full")
_SEEN = "_seen"  # per image: 1.0 when the run trained on it (ensemble/regime.py)


class RunComparator(Comparator):
    def __init__(self, folder: str | Path, *, baselines: bool = False, target_accuracy: float | None = None,
                 delta: float = DEFAULT_DELTA, explain: str | None = None, **kw):
        super().__init__(**kw)
        self.folder = Path(folder)
        self.run_folder = RunFolder(self.folder)
        self.run = self.run_folder.manifest()  # refuses an unknown format or a changed model file
        self.contexts = self.run_folder.load_contexts()
        self.members = self.run_folder.load_members(self.run.backbone)
        self.ensemble = self.run_folder.load_ensemble()
        self.calibration = self.run_folder.load_calibration()
        self.known = self.run_folder.load_known() if self.ensemble.regime else None
        self.baselines = baselines
        self.selection: Selection | None = None
        self.explain_level: str | None = None
        self.set_explain(explain)
        if target_accuracy is not None:
            self.set_target(target_accuracy, delta)

    # -- options ----------------------------------------------------------------------------------------
    def set_target(self, target_accuracy: float | None, delta: float = DEFAULT_DELTA,
                   calibration: SelectiveCalibration | None = None) -> Selection | None:
        """Answer only where confident enough for ``target_accuracy`` (None: always answer); the threshold is
        chosen on ``calibration`` (default: the run's out-of-fold predictions). Warns when no threshold meets
        the target (the run then abstains on every row)."""
        if target_accuracy is None:
            self.selection = None
            return None
        problems = check_target(target_accuracy, delta)
        if problems:
            raise InputError([Problem("--target-accuracy" if "target" in m else "--delta", m) for m in problems])
        calibration = calibration if calibration is not None else self.calibration
        if calibration is None:
            raise InputError([Problem(str(self.folder), "this run has no selective-answer calibration (trained before it "
                                      "existed): train it again or pass --calibrate-on LABELLED.csv")])
        self.selection = calibration.select(target_accuracy, delta)
        if not self.selection.feasible:
            log.warning("no confidence threshold reaches accuracy %.4g with probability %.4g on %d calibration rows: "
                        "abstaining on every row", target_accuracy, 1 - delta, len(calibration))
        return self.selection

    def set_explain(self, level: str | None) -> None:
        if level not in (None, *EXPLAIN_LEVELS):
            raise InputError([Problem("--explain", f"expected one of {', '.join(EXPLAIN_LEVELS)}, got {level!r}")])
        self.explain_level = level

    def with_options(self, *, target_accuracy: float | None = None, delta: float = DEFAULT_DELTA,
                     explain: str | None = None) -> RunComparator:
        """A copy with other trust options; it shares the loaded model and the embedded images."""
        other = copy.copy(self)
        other.set_explain(explain)
        other.set_target(target_accuracy, delta)
        return other

    def calibrate_on(self, csvs, images=None) -> SelectiveCalibration:
        """Score labelled triplets (raw answers) and keep their confidences, correctness and references."""
        df = read_triplets(csvs, images, require_label=True)
        plain = self.with_options()
        scored = plain.predict(df)
        weight = np.ones(scored.height)
        if {"votes_a", "votes_b"} <= set(scored.columns):  # tied votes have no right answer
            weight[(scored["votes_a"] == scored["votes_b"]).fill_null(False).to_numpy()] = 0.0
        seen = plain._seen(plain.triplet_codes(df))
        return SelectiveCalibration.from_predictions(scored["p_a"].to_numpy(), (scored["label"] == "A").to_numpy(), weight,
                                                     groups=scored["ref"].to_numpy(), regimes=None if seen is None else regime_of(seen))

    @property
    def extra_columns(self) -> list[str]:
        cols = [baseline_column(n) for n in self.ensemble.combiners] if self.baselines else []
        if self.selection is not None:
            cols += [PRED_RAW, ANSWERED]
        cols += [CONTEXT_SIMILARITY, OUT_OF_CONTEXT]
        if self.explain_level is not None:
            cols.append(WHY)
        if self.explain_level == "full":
            cols += [contrib_column(f) for f in self._explained_features()]
        return cols

    def _explained_features(self) -> list[str]:
        return self.ensemble.explained_features()

    @property
    def member_names(self) -> list[str]:
        return self.members.names

    def fingerprint(self) -> str:
        """A digest of the run's model files (contexts, members, ensemble), not of its report."""
        return self.run_folder.fingerprint()

    def assign(self, images) -> list[str]:
        """The context each image would be routed to as a reference (works on unseen images)."""
        return [str(c) for c in self.contexts.assign(self.embed(images, member=_MEMBERSHIP_SOURCE))]

    def explain(self, ref: str, a: str, b: str) -> dict:
        """Why the run answers as it does on one triplet: ``p_a``, the contributions of each member and
        context (``groups``) and of each feature, their ``unit``, ``bias`` and ``total``, and ``why``."""
        row = pl.DataFrame({"ref": [str(ref)], "a": [str(a)], "b": [str(b)]}).with_columns(resolved_paths(None))
        margins, codes = self.member_margins(row)
        x = self._inputs(margins, codes, row, self.ensemble.needs_embeddings)
        context = self.contexts.names[int(x.membership[0].argmax())]
        return {"p_a": float(self.ensemble.predict(x)[0]), "context": context, **self.ensemble.explain(x).row(0, WHY_TOP)}

    # -- scoring ------------------------------------------------------------------------------------------
    def _image_data(self, paths):
        data = self.members.embed(paths, self.cache, device=self.device, progress=self.progress)
        data[_MEMBERSHIP] = self.contexts.membership(data[ZEROSHOT])
        data[_CENTROID_SIMILARITY] = self.contexts.centroid_similarity(data[ZEROSHOT])
        if self.known is not None:
            data[_SEEN] = self.known.flags([file_digest(p) for p in paths])
        return data

    def _inputs(self, margins: dict, codes: np.ndarray, chunk: pl.DataFrame, with_embeddings: bool) -> EnsembleInputs:
        ref = codes[:, 0]
        membership = self._data[_MEMBERSHIP][ref]
        if "context" in chunk.columns:  # a declared, known context overrides the soft routing
            known = {n: i for i, n in enumerate(self.contexts.names)}
            declared = chunk["context"].replace_strict(known, default=-1, return_dtype=pl.Int64).to_numpy()
            rows = np.flatnonzero(declared >= 0)
            membership = membership.copy()
            membership[rows] = np.eye(len(known), dtype=membership.dtype)[declared[rows]]
        emb = self._data[ZEROSHOT][ref].astype(np.float32, copy=False) if with_embeddings else None  # float16 in a large pool
        return EnsembleInputs(np.column_stack([margins[n] for n in self.member_names]), membership, self.member_names, emb, ref,
                              self._seen(codes))

    def _seen(self, codes: np.ndarray) -> np.ndarray | None:
        """(n, 3) seen_ref, seen_a, seen_b of rows' image codes, from the run's training digests (None: a run
        without them)."""
        return None if self.known is None else self._data[_SEEN][codes]

    def _combine(self, margins, codes, chunk):
        ref = codes[:, 0]
        x = self._inputs(margins, codes, chunk, self.ensemble.needs_embeddings or self.baselines)
        routed = x.membership.argmax(axis=1)
        similarity = self._data[_CENTROID_SIMILARITY][ref, routed]  # per image, computed once
        context = pl.Series(np.asarray(self.contexts.names, dtype=object)[routed], dtype=pl.String)
        extra = {baseline_column(n): p for n, p in self.ensemble.predict_all(x).items()} if self.baselines else {}
        if self.explain_level is None:
            p_a, explanation = self.ensemble.predict(x), None
        else:  # one pass: the stacker's features of each block serve both
            p_a, explanation = self.ensemble.predict_explained(x, grouped=self.explain_level != "full")
        if self.selection is not None:
            extra[ANSWERED] = self.selection.answered(p_a, None if x.seen is None else regime_of(x.seen))
        extra[CONTEXT_SIMILARITY] = similarity
        flagged = self.contexts.out_of_context(routed, similarity)
        extra[OUT_OF_CONTEXT] = pl.Series(OUT_OF_CONTEXT, flagged, dtype=pl.Boolean) if flagged is not None else \
            pl.Series(OUT_OF_CONTEXT, [None] * len(ref), dtype=pl.Boolean)
        if explanation is not None:
            extra[WHY] = explanation.why(WHY_TOP)
            if self.explain_level == "full":
                extra |= {contrib_column(f): explanation.values[:, j] for j, f in enumerate(explanation.features)}
        return p_a, context, extra
