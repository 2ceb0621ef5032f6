"""Comparators: score triplets with one or more members and combine their margins into ``p_a``.

A comparator keeps an index of the images it has seen; each member embeds every unique image
once, and per-row margins are looked up by integer index, so cost grows with unique images x
members, not with rows x members.
"""
from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.compare.image_index import ImageIndex
from ctxsim.data.triplets import resolved_paths
from ctxsim.embedding import distances
from ctxsim.embedding.cache import EmbeddingCache, default_cache_dir
from ctxsim.embedding.packed import PackedEmbeddings
from ctxsim.retrieval import search as retrieval
from ctxsim.schema import (
    ABSTAIN,
    ANSWERED,
    DECISION_THRESHOLD,
    IMAGE_COLUMNS,
    LABEL_A,
    LABEL_B,
    PATH,
    PRED_RAW,
    margin_column,
)

#: Zero-shot p_a = sigmoid(scale * margin): margins of cosine distances are small numbers.
ZERO_SHOT_SCALE = 10.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Comparator(ABC):
    """Base class: image index, per-member embeddings, margins, and the public API."""

    #: Columns ``predict`` adds besides ``OUTPUT_COLUMNS`` and the margins.
    extra_columns: list[str] = []

    def __init__(self, *, device: str = "cpu", cache=None, progress: bool = True, baselines: bool = False):
        # ``baselines`` is accepted by every comparator so callers need not know the model's kind; only a
        # trained run has baseline ensembles to add (RunComparator).

        self.device, self.progress = device, progress
        self.cache = cache if cache is not None else EmbeddingCache(default_cache_dir())
        self._index = ImageIndex()
        self._data: dict[str, np.ndarray] = {}  # per-image arrays (member embeddings, memberships), in index order
        self._tables: dict[str, np.ndarray] = {}
        self._packed: PackedEmbeddings | None = None  # past MAX_TABLE_IMAGES: all members in one matrix

    @property
    @abstractmethod
    def member_names(self) -> list[str]: ...

    @abstractmethod
    def _image_data(self, paths: list[str]) -> dict[str, np.ndarray]:
        """Arrays with one row per path: each member's normalised embedding (keyed by member name), and
        whatever else the comparator needs per image."""

    @abstractmethod
    def _combine(self, margins: dict[str, np.ndarray], codes: np.ndarray, chunk: pl.DataFrame) -> tuple[np.ndarray, pl.Series, dict]:
        """``p_a`` and the routed context for each row, from member margins and the rows' image codes
        ((rows, 3): reference, A, B), and any extra output columns (name -> values)."""

    def fingerprint(self) -> str:
        """Identifies the model behind the answers (a resumed ``compare`` checks that it did not change)."""
        parts = [type(self).__qualname__, *self.member_names]
        backbone = getattr(self, "backbone", None)
        if backbone is not None:
            parts.append(backbone.cache_key)
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    # -- image index ----------------------------------------------------------------------------------
    def _codes(self, paths: pl.Series) -> np.ndarray:
        """Each path's row in the per-image arrays; images not seen before are embedded first."""
        return self._index.codes(paths, self._add_images)

    def _add_images(self, paths: list[str]) -> None:
        fresh = self._image_data(paths)
        for key, arr in fresh.items():
            self._data[key] = np.concatenate([self._data[key], arr]) if key in self._data else arr
        self._tables.clear()
        self._packed = None

    def triplet_codes(self, chunk: pl.DataFrame) -> np.ndarray:
        """(rows, 3) codes of a resolved chunk's reference, A and B images (one lookup for all three)."""
        paths = pl.concat([chunk[PATH[c]] for c in IMAGE_COLUMNS])
        return self._codes(paths).reshape(len(IMAGE_COLUMNS), chunk.height).T

    def prepare(self, paths: Sequence[str]) -> None:
        """Embed ``paths`` (resolved image paths) now, in this order, as one batch.

        ``compare`` passes every image of its input, sorted, before the first chunk: each image's
        member embeddings and the distance tables are then computed once, from the same batch, so the
        scores do not depend on how rows are chunked, resumed or sharded (batched matrix products
        round differently for different batches)."""
        self._codes(pl.Series(list(paths), dtype=pl.String))

    def _table(self, member: str) -> np.ndarray | None:
        if len(self._index) > distances.MAX_TABLE_IMAGES:
            return None
        if member not in self._tables:
            self._tables[member] = distances.cosine_distance_table(self._data[member])
        return self._tables[member]

    def member_margins(self, chunk: pl.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every member's margin per row of a resolved chunk, and the rows' image codes (:meth:`triplet_codes`)."""
        codes = self.triplet_codes(chunk)
        ref, a, b = codes.T
        if len(self._index) > distances.MAX_TABLE_IMAGES:
            both = self._packed_embeddings().margins(ref, a, b)
            return {m: np.ascontiguousarray(both[:, i]) for i, m in enumerate(self.member_names)}, codes
        out = {m: distances.margins(self._data[m], ref, a, b, self._table(m)) for m in self.member_names}
        return out, codes

    def _packed_embeddings(self) -> PackedEmbeddings:
        if self._packed is None:
            self._packed = PackedEmbeddings([self._data[m] for m in self.member_names], dtype=distances.PACKED_DTYPE)
            self._data.update(zip(self.member_names, self._packed.views()))  # one copy of the embeddings in memory
        return self._packed

    # -- scoring --------------------------------------------------------------------------------------
    def predict(self, chunk: pl.DataFrame, *, margins: bool = False) -> pl.DataFrame:
        """The chunk with ``context``, ``p_a``, ``pred``, ``correct`` (when labelled) and ``margin_*``."""
        member_margins, codes = self.member_margins(chunk)
        p_a, context, extra = self._combine(member_margins, codes, chunk)
        pred = np.where(p_a >= DECISION_THRESHOLD, LABEL_A, LABEL_B)
        if ANSWERED in extra:  # selective answers: ``pred`` abstains where not answered, ``pred_raw`` keeps the choice
            extra = {PRED_RAW: pred, **extra}
        out = chunk.drop("context", strict=False).with_columns(
            context.alias("context"),
            pl.Series("p_a", p_a, dtype=pl.Float64),
            pl.Series("pred", pred if ANSWERED not in extra else np.where(extra[ANSWERED], pred, ABSTAIN)),
        )
        if "label" in chunk.columns:  # ``correct`` judges the raw choice, answered or not
            raw = pl.Series(pred, dtype=pl.String)
            out = out.with_columns(pl.when(pl.col("label").is_null()).then(None).otherwise(pl.lit(raw) == pl.col("label")).alias("correct"))
        if margins:
            out = out.with_columns(pl.Series(margin_column(m), v, dtype=pl.Float64) for m, v in member_margins.items())
        return out.with_columns(pl.Series(name, v) for name, v in extra.items())

    def score(self, df, images: str | os.PathLike | None = None, *, margins: bool = False) -> pl.DataFrame:
        """Score a DataFrame (polars or pandas) with ``ref, a, b`` columns; returns a polars frame."""
        frame = df if isinstance(df, pl.DataFrame) else pl.from_pandas(df)
        scored = self.predict(frame.with_columns(resolved_paths(images or None)), margins=margins)
        return scored.select([c for c in scored.columns if not c.startswith("_")])

    def compare(self, ref: str, a: str, b: str) -> float:
        """P(A is closer to ``ref`` than B)."""
        row = pl.DataFrame({"ref": [os.fspath(ref)], "a": [os.fspath(a)], "b": [os.fspath(b)]})
        return float(self.score(row)["p_a"][0])

    def embed(self, images: Sequence[str | os.PathLike], member: str | None = None) -> np.ndarray:
        """Normalised embeddings of ``images`` by ``member`` (the first member by default)."""
        member = member or self.member_names[0]
        if member not in self.member_names:
            raise KeyError(f"unknown member {member!r}; members: {', '.join(self.member_names)}")
        paths = pl.Series([Path(p).resolve().as_posix() for p in images], dtype=pl.String)
        if not len(paths):
            return np.zeros((0, 0), np.float32)
        codes = self._codes(paths)  # first: embedding new images replaces the arrays in self._data
        return self._data[member][codes].astype(np.float32, copy=False)  # packed embeddings of a large pool are float16

    def member_embeddings(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        """Every member's normalised embedding of ``paths`` (resolved image paths), one row per path, not
        kept in the comparator's image index: a catalogue is embedded batch by batch in flat memory."""
        data = self._image_data([os.fspath(p) for p in paths])
        return {m: data[m] for m in self.member_names}

    def search(self, query: str | os.PathLike, k: int = retrieval.DEFAULT_K, index=None, **kw):
        """The ``k`` images of a catalogue ``index`` (``ctxsim index build``) closest to ``query`` in its
        context, re-ranked by this model (see :func:`ctxsim.retrieval.search.search`)."""
        return retrieval.search(self, query, k, index, **kw)
