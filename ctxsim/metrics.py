"""Accuracy bookkeeping that streams: counts per group, with Wilson intervals and vote agreement.

``accuracy`` counts every labelled row; ``majority_accuracy`` only rows whose votes have a clear
majority; ``vote_agreement`` is the share of individual votes that side with the prediction
(``vote_ceiling`` sides with each row's own majority: an in-sample ceiling that uses the votes themselves, so no
model can reach it; benchmarks/vote_ceiling.py estimates what a model that knew each triplet's preference would get).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import polars as pl

from ctxsim.schema import ANSWERED, OVERALL, PRED_RAW

#: Confidence level of the reported intervals.
CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (what ``scipy.stats.binomtest(...).proportion_ci(
    method="wilson")`` gives, tested against it): written out because importing scipy.stats costs half a
    second, more than a warm compare of a thousand rows takes."""
    if n == 0:
        return (float("nan"), float("nan"))
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p, z2 = successes / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # the interval holds p exactly (at k = 0 or n rounding could put an end an ulp on the wrong side of it)
    return (min(p, max(0.0, center - half)), max(p, min(1.0, center + half)))


_COUNTS = ("rows", "labelled", "correct", "clear", "clear_correct", "votes", "votes_agree", "votes_best", "answered",
           "answered_labelled", "answered_correct")


@dataclass
class AccuracyTally:
    """Running counts per group (context), updated chunk by chunk."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: whether rows carried ``answered`` (selective answers): the summary then reports coverage
    selective: bool = False

    def update(self, chunk: pl.DataFrame, group: str = "context", correct: str = "correct", pred: str = "pred") -> None:
        has_label = correct in chunk.columns
        has_votes = {"votes_a", "votes_b"} <= set(chunk.columns)
        selective = ANSWERED in chunk.columns
        if selective and PRED_RAW in chunk.columns:  # ``pred`` may abstain; votes judge the raw choice
            pred = PRED_RAW
        exprs = [pl.len().alias("rows")]
        if has_label:
            exprs += [pl.col(correct).is_not_null().sum().alias("labelled"), pl.col(correct).cast(pl.Int64).sum().alias("correct")]
        if selective:
            answered = pl.col(ANSWERED).fill_null(False)
            exprs.append(answered.sum().alias("answered"))
            if has_label:
                exprs += [(answered & pl.col(correct).is_not_null()).sum().alias("answered_labelled"),
                          (answered & pl.col(correct).fill_null(False)).sum().alias("answered_correct")]
        self.selective = self.selective or selective
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
            for key in (str(row[group]), OVERALL):
                into = self.counts.setdefault(key, dict.fromkeys(_COUNTS, 0))
                for k in _COUNTS:
                    into[k] = into.get(k, 0) + int(row.get(k) or 0)

    def summary(self) -> list[dict]:
        """One dict per group (``(all)`` last) with rates and 95% Wilson intervals."""
        out = []
        for group in sorted(k for k in self.counts if k != OVERALL) + ([OVERALL] if self.counts else []):
            c = self.counts[group]
            row = {"context": group, "rows": c["rows"]}
            if c["labelled"]:
                row.update(labelled=c["labelled"], accuracy=c["correct"] / c["labelled"])
                row["ci_low"], row["ci_high"] = wilson_interval(c["correct"], c["labelled"])
            if self.selective or c.get("answered"):
                row["answered"] = c.get("answered", 0) / c["rows"] if c["rows"] else np.nan
                if c.get("answered_labelled"):
                    row["answered_accuracy"] = c["answered_correct"] / c["answered_labelled"]
                elif c["labelled"]:
                    row["answered_accuracy"] = np.nan
            if c["votes"]:
                row.update(
                    majority_accuracy=c["clear_correct"] / c["clear"] if c["clear"] else np.nan,
                    vote_agreement=c["votes_agree"] / c["votes"],
                    vote_ceiling=c["votes_best"] / c["votes"],
                )
            out.append(row)
        return out
