"""Accuracy bookkeeping that streams: counts per group, with Wilson intervals and vote agreement.

``accuracy`` counts every labelled row; ``majority_accuracy`` only rows whose votes have a clear
majority; ``vote_agreement`` is the share of individual votes that side with the prediction
(its ceiling, always siding with the majority, is ``vote_ceiling``). :func:`model_accuracy` runs one
tally per model of a scored frame; :func:`context_counts` counts triplets and images per context.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from ctxsim.reports.scored import ScoredModel

#: Confidence level of the reported intervals.
CONFIDENCE = 0.95
ALL = "(all)"


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's implementation)."""
    if n == 0:
        return (float("nan"), float("nan"))
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


_COUNTS = ("rows", "labelled", "correct", "clear", "clear_correct", "votes", "votes_agree", "votes_best")


@dataclass
class AccuracyTally:
    """Running counts per group (context), updated chunk by chunk."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def update(self, chunk: pl.DataFrame, group: str = "context", correct: str = "correct", pred: str = "pred") -> None:
        has_label = correct in chunk.columns
        has_votes = {"votes_a", "votes_b"} <= set(chunk.columns)
        exprs = [pl.len().alias("rows")]
        if has_label:
            exprs += [pl.col(correct).is_not_null().sum().alias("labelled"), pl.col(correct).cast(pl.Int64).sum().alias("correct")]
        if has_votes:
            va, vb = pl.col("votes_a").fill_null(0), pl.col("votes_b").fill_null(0)
            clear = va != vb
            majority_pred = pl.when(va > vb).then(pl.lit("A")).otherwise(pl.lit("B"))
            exprs += [
                clear.sum().alias("clear"),
                (clear & (pl.col(pred) == majority_pred)).sum().alias("clear_correct"),
                (va + vb).sum().alias("votes"),
                pl.when(pl.col(pred) == "A").then(va).otherwise(vb).sum().alias("votes_agree"),
                pl.max_horizontal(va, vb).sum().alias("votes_best"),
            ]
        for row in chunk.group_by(group).agg(exprs).iter_rows(named=True):
            for key in (str(row[group]), ALL):
                into = self.counts.setdefault(key, dict.fromkeys(_COUNTS, 0))
                for k in _COUNTS:
                    into[k] += int(row.get(k) or 0)

    def summary(self) -> list[dict]:
        """One dict per group (``(all)`` last) with rates and 95% Wilson intervals."""
        out = []
        for group in sorted(k for k in self.counts if k != ALL) + ([ALL] if self.counts else []):
            c = self.counts[group]
            row = {"context": group, "rows": c["rows"]}
            if c["labelled"]:
                row.update(labelled=c["labelled"], accuracy=c["correct"] / c["labelled"])
                row["ci_low"], row["ci_high"] = wilson_interval(c["correct"], c["labelled"])
            if c["votes"]:
                row.update(
                    majority_accuracy=c["clear_correct"] / c["clear"] if c["clear"] else np.nan,
                    vote_agreement=c["votes_agree"] / c["votes"],
                    vote_ceiling=c["votes_best"] / c["votes"],
                )
            out.append(row)
        return out


def model_accuracy(frame: pl.DataFrame, models: list[ScoredModel]) -> list[dict]:
    """Per-context accuracy rows (:meth:`AccuracyTally.summary`) for every model, with ``model`` and ``kind``.

    ``frame`` is a prepared scored frame; a model's ``correct`` is its prediction == ``label``, and
    probabilistic models also get their Brier score per context.
    """
    from ctxsim.reports.calibration import brier_by_group

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
            brier = brier_by_group(frame, m.column) | brier_by_group(frame.with_columns(pl.lit(ALL).alias("context")), m.column)
        for row in tally.summary():
            extra = {"brier": brier[row["context"]]} if row["context"] in brier else {}
            rows.append({"model": m.name, "kind": m.kind, **row, **extra})
    return rows


def context_counts(frame: pl.DataFrame) -> list[dict]:
    """Triplets, labelled triplets, distinct references and distinct images (ref, A or B) per context.

    Images are told apart by their resolved paths (relative paths joined to the images root).
    """
    from ctxsim.triplets import IMAGE_COLUMNS, PATH

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
    total = counts(frame.with_columns(pl.lit(ALL).alias("context")))
    return pl.concat([per, total]).to_dicts() if frame.height else []
