"""Turn stored votes into a labelled triplet CSV, and rate the annotators.

Aggregation: only first showings count (the swapped control repeat measures consistency, it is
not a second vote), skips count for nothing. Per triplet ``votes_a``/``votes_b`` are the A/B
answers of the annotators kept; ``label`` is the majority. Triplets with fewer than
``min_votes`` votes are left out. Ties are dropped (``ties="drop"``, the default) or kept
(``ties="keep"``) with a label drawn by a coin seeded per triplet; ``votes_a == votes_b`` shows
they are ties, so per-vote agreement stays honest.

Annotator quality: *agreement* is the share of an annotator's votes that side with the majority
of the *other* annotators on that triplet (triplets where the others tie or nobody else voted do
not count); *consistency* is the share of their control repeats answered like the first showing.
An annotator is low quality when, over at least ``min_checks`` comparisons, agreement is below
``min_agreement`` or consistency below ``min_consistency``. Low-quality annotators are dropped
(their votes do not count) or only flagged in the report (``action="flag"``). Quality is measured
once, against everyone's votes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ctxsim.atomic import atomic_path
from ctxsim.data.triplets import write_triplets
from ctxsim.labeling.vote_queue import unit_hash
from ctxsim.labeling.store import VoteStore

log = logging.getLogger(__name__)

DEFAULT_MIN_VOTES = 1
DEFAULT_MIN_AGREEMENT = 0.6
DEFAULT_MIN_CONSISTENCY = 0.7
#: Comparisons needed before an annotator's agreement or consistency is judged at all.
DEFAULT_MIN_CHECKS = 5
DEFAULT_SEED = 0
TIE_RULES = ("drop", "keep")
LOW_QUALITY_ACTIONS = ("drop", "flag")
EXPORT_COLUMNS = ("ref", "a", "b", "label", "votes_a", "votes_b", "context", "id")
QUALITY_COLUMNS = ("annotator", "votes", "skips", "agreement", "agreement_checks", "consistency", "controls",
                   "median_seconds", "status", "reason")


@dataclass(frozen=True)
class QualityRule:
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_consistency: float = DEFAULT_MIN_CONSISTENCY
    min_checks: int = DEFAULT_MIN_CHECKS
    action: str = "drop"

    def __post_init__(self):
        if self.action not in LOW_QUALITY_ACTIONS:
            raise ValueError(f"action must be one of {LOW_QUALITY_ACTIONS}, got {self.action!r}")


@dataclass
class ExportResult:
    triplets: pl.DataFrame
    annotators: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.counts.items())


def read_votes(store: VoteStore) -> pl.DataFrame:
    schema = {"vote_id": pl.String, "annotator": pl.String, "triplet_id": pl.String, "presentation": pl.Int64,
              "answer": pl.String, "swapped": pl.Int64, "elapsed_ms": pl.Int64, "created_at": pl.String}
    return pl.DataFrame(store.votes(), schema=schema, orient="row")


def _first_votes(votes: pl.DataFrame) -> pl.DataFrame:
    return votes.filter((pl.col("presentation") == 0) & pl.col("answer").is_in(["A", "B"]))


def annotator_quality(votes: pl.DataFrame, annotators: list[str], rule: QualityRule = QualityRule()) -> pl.DataFrame:
    """One row per annotator (``QUALITY_COLUMNS``); ``status`` is ok, dropped or flagged."""
    first = _first_votes(votes)
    counts = first.group_by("triplet_id").agg(
        (pl.col("answer") == "A").sum().alias("n_a"), (pl.col("answer") == "B").sum().alias("n_b")
    )
    others_a = pl.col("n_a") - (pl.col("answer") == "A").cast(pl.Int64)
    others_b = pl.col("n_b") - (pl.col("answer") == "B").cast(pl.Int64)
    majority = pl.when(others_a > others_b).then(pl.lit("A")).when(others_b > others_a).then(pl.lit("B"))
    agreement = (
        first.join(counts, on="triplet_id")
        .with_columns(majority.alias("majority"))
        .filter(pl.col("majority").is_not_null())
        .group_by("annotator")
        .agg((pl.col("answer") == pl.col("majority")).mean().alias("agreement"), pl.len().alias("agreement_checks"))
    )
    answered = votes.filter(pl.col("answer").is_in(["A", "B"]))
    pairs = answered.filter(pl.col("presentation") == 0).select("annotator", "triplet_id", first="answer").join(
        answered.filter(pl.col("presentation") == 1).select("annotator", "triplet_id", repeat="answer"), on=["annotator", "triplet_id"]
    )
    consistency = pairs.group_by("annotator").agg(
        (pl.col("first") == pl.col("repeat")).mean().alias("consistency"), pl.len().alias("controls")
    )
    activity = votes.group_by("annotator").agg(
        ((pl.col("presentation") == 0) & (pl.col("answer") != "skip")).sum().alias("votes"),
        (pl.col("answer") == "skip").sum().alias("skips"),
        (pl.col("elapsed_ms").median() / 1000).alias("median_seconds"),
    )
    names = list(dict.fromkeys([*annotators, *votes["annotator"].unique(maintain_order=True).to_list()]))
    table = (
        pl.DataFrame({"annotator": names}, schema={"annotator": pl.String})
        .join(activity, on="annotator", how="left")
        .join(agreement, on="annotator", how="left")
        .join(consistency, on="annotator", how="left")
        .with_columns(pl.col("votes", "skips", "agreement_checks", "controls").fill_null(0).cast(pl.Int64))
    )
    reasons = [_low_quality_reason(r, rule) for r in table.iter_rows(named=True)]
    status = ["ok" if not r else "dropped" if rule.action == "drop" else "flagged" for r in reasons]
    return table.with_columns(pl.Series("status", status, pl.String), pl.Series("reason", reasons, pl.String)).select(QUALITY_COLUMNS)


def _low_quality_reason(row: dict, rule: QualityRule) -> str:
    why = []
    if row["agreement_checks"] >= rule.min_checks and row["agreement"] < rule.min_agreement:
        why.append(f"agreement {row['agreement']:.2f} < {rule.min_agreement} over {row['agreement_checks']} triplets")
    if row["controls"] >= rule.min_checks and row["consistency"] < rule.min_consistency:
        why.append(f"consistency {row['consistency']:.2f} < {rule.min_consistency} over {row['controls']} controls")
    return "; ".join(why)


def aggregate(votes: pl.DataFrame, triplets: pl.DataFrame, *, min_votes: int = DEFAULT_MIN_VOTES,
              ties: str = "drop", seed: int = DEFAULT_SEED) -> tuple[pl.DataFrame, dict[str, int]]:
    """Labelled triplets (``EXPORT_COLUMNS``, image paths as stored) and counts of what was left out."""
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    if min_votes < 1:
        raise ValueError(f"min_votes must be >= 1, got {min_votes}")
    tally = _first_votes(votes).group_by("triplet_id").agg(
        (pl.col("answer") == "A").sum().cast(pl.Int64).alias("votes_a"),
        (pl.col("answer") == "B").sum().cast(pl.Int64).alias("votes_b"),
    )
    df = triplets.join(tally, left_on="id", right_on="triplet_id", how="inner").sort("position")
    enough = df.filter(pl.col("votes_a") + pl.col("votes_b") >= min_votes)
    tied = enough.filter(pl.col("votes_a") == pl.col("votes_b"))
    coin = pl.Series([("A" if unit_hash("tie", str(seed), tid) < 0.5 else "B") for tid in enough["id"].to_list()], dtype=pl.String)
    labelled = enough.with_columns(
        pl.when(pl.col("votes_a") > pl.col("votes_b")).then(pl.lit("A"))
        .when(pl.col("votes_b") > pl.col("votes_a")).then(pl.lit("B"))
        .otherwise(coin).alias("label")
    )
    if ties == "drop":
        labelled = labelled.filter(pl.col("votes_a") != pl.col("votes_b"))
    counts = {
        "planned": triplets.height,
        "with_votes": df.height,
        "below_min_votes": df.height - enough.height,
        f"ties_{'dropped' if ties == 'drop' else 'kept'}": tied.height,
        "exported": labelled.height,
    }
    return labelled.select(EXPORT_COLUMNS), counts


def export_votes(
    db: str | os.PathLike,
    out: str | os.PathLike,
    *,
    min_votes: int = DEFAULT_MIN_VOTES,
    ties: str = "drop",
    rule: QualityRule = QualityRule(),
    seed: int = DEFAULT_SEED,
    absolute: bool = False,
    report: str | os.PathLike | None = None,
) -> ExportResult:
    """Write the labelled triplet CSV ``out`` (and the annotator table to ``report``), atomically.

    Image paths are written relative to the session's image root (train with ``--images`` that
    root), or absolute with ``absolute=True``.
    """
    store = VoteStore(db, create=False)
    try:
        votes = read_votes(store)
        stored = store.triplets()
        annotators = list(store.annotators())
        root = store.images_root
    finally:
        store.close()
    quality = annotator_quality(votes, annotators, rule)
    dropped = quality.filter(pl.col("status") == "dropped")["annotator"].to_list()
    triplets = pl.DataFrame(
        [(t.id, t.ref, t.a, t.b, t.context, t.position) for t in stored],
        schema={"id": pl.String, "ref": pl.String, "a": pl.String, "b": pl.String, "context": pl.String, "position": pl.Int64},
        orient="row",
    )
    labelled, counts = aggregate(votes.filter(~pl.col("annotator").is_in(dropped)), triplets, min_votes=min_votes, ties=ties, seed=seed)
    if absolute and root is not None:
        prefix = root.as_posix().rstrip("/") + "/"
        labelled = labelled.with_columns((pl.lit(prefix) + pl.col(c)).alias(c) for c in ("ref", "a", "b"))
    write_triplets(labelled, out)
    if report is not None:
        with atomic_path(report) as tmp:
            quality.write_csv(tmp)
    result = ExportResult(labelled, quality, {"annotators_dropped": len(dropped), **counts})
    log.info("%s -> %s: %s", db, out, result.summary())
    if not absolute and root is not None:
        log.info("image paths are relative to %s: pass --images %s when training on %s", root, root, Path(out).name)
    if labelled.is_empty():
        log.warning("no triplet has enough votes: %s holds only the header", out)
    return result
