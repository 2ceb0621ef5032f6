"""Accuracy of every model of a scored frame per context (:func:`model_accuracy`, over
:class:`ctxsim.metrics.AccuracyTally`), and triplet and image counts per context (:func:`context_counts`)."""
from __future__ import annotations

import polars as pl

from ctxsim.metrics import AccuracyTally
from ctxsim.reports.calibration import brier_by_group
from ctxsim.reports.scored import ScoredModel
from ctxsim.schema import IMAGE_COLUMNS, OVERALL, PATH


def model_accuracy(frame: pl.DataFrame, models: list[ScoredModel]) -> list[dict]:
    """Per-context accuracy rows (:meth:`AccuracyTally.summary`) for every model, with ``model`` and ``kind``.

    ``frame`` is a prepared scored frame; a model's ``correct`` is its prediction == ``label``, and
    probabilistic models also get their Brier score per context.
    """

    labelled = "label" in frame.columns
    votes = [c for c in ("votes_a", "votes_b") if c in frame.columns]
    rows = []
    for m in models:
        pred = m.prediction().alias("pred")
        cols = [pl.col("context"), pred, *votes] + ([(pred == pl.col("label")).alias("correct")] if labelled else [])
        tally = AccuracyTally()
        tally.update(frame.select(cols))
        brier = {}
        if labelled and m.has_probability:
            brier = brier_by_group(frame, m.column) | brier_by_group(frame.with_columns(pl.lit(OVERALL).alias("context")), m.column)
        for row in tally.summary():
            extra = {"brier": brier[row["context"]]} if row["context"] in brier else {}
            rows.append({"model": m.name, "kind": m.kind, **row, **extra})
    return rows


def context_counts(frame: pl.DataFrame) -> list[dict]:
    """Triplets, labelled triplets, distinct references and distinct images (ref, A or B) per context.

    Images are told apart by their resolved paths (relative paths joined to the images root).
    """

    ref, a, b = (PATH[c] for c in IMAGE_COLUMNS)
    labelled = pl.col("label").is_not_null().sum() if "label" in frame.columns else pl.lit(0)

    def counts(df: pl.DataFrame) -> pl.DataFrame:
        return df.group_by("context").agg(
            pl.len().alias("triplets"),
            labelled.alias("labelled"),
            pl.col(ref).n_unique().alias("references"),
            pl.concat_list(ref, a, b).explode().n_unique().alias("images"),
        )

    per = counts(frame).sort("context")
    total = counts(frame.with_columns(pl.lit(OVERALL).alias("context")))
    return pl.concat([per, total]).to_dicts() if frame.height else []
