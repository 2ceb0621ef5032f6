"""Batch comparison of triplet CSVs, streamed: validate, score chunk by chunk, write atomically."""
from __future__ import annotations

import logging
import os

import polars as pl

from ctxsim.atomic import atomic_path
from ctxsim.comparator import OUTPUT_COLUMNS, Comparator
from ctxsim.reports.metrics import AccuracyTally
from ctxsim.triplets import DEFAULT_CHUNK_ROWS, as_files, iter_triplet_chunks, validate

log = logging.getLogger(__name__)


def output_columns(csvs, images, comparator: Comparator, margins: bool) -> list[str]:
    """Input columns (union over files, in order) followed by what ``compare`` adds."""
    seen: dict[str, None] = {}
    for tf in as_files(csvs, images):
        seen.update(dict.fromkeys(c for c in tf.scan().collect_schema().names() if not c.startswith("_")))
    has_label = "label" in seen
    added = [c for c in OUTPUT_COLUMNS if c != "correct" or has_label]
    cols = [c for c in seen if c not in added] + added
    return cols + ([f"margin_{m}" for m in comparator.member_names] if margins else []) + comparator.extra_columns


def compare_files(
    comparator: Comparator,
    csvs,
    out: str | os.PathLike,
    images=None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    margins: bool = False,
    progress: bool = True,
) -> AccuracyTally:
    """Score every row of ``csvs`` into ``out``; returns accuracy counts per context.

    Raises :class:`ctxsim.errors.InputError` before writing anything when the input is invalid.
    """
    from tqdm import tqdm

    report = validate(csvs, images)
    report.raise_if_invalid()
    columns = output_columns(csvs, images, comparator, margins)
    tally = AccuracyTally()
    with atomic_path(out) as tmp, open(tmp, "wb") as sink, tqdm(
        total=report.n_rows, desc="compare", unit="row", disable=not progress, unit_scale=True
    ) as bar:
        header = True
        for chunk in iter_triplet_chunks(csvs, images, chunk_rows):
            if chunk.height == 0:
                continue
            scored = comparator.predict(chunk, margins=margins)
            tally.update(scored)
            missing = [pl.lit(None, pl.String).alias(c) for c in columns if c not in scored.columns]
            scored.with_columns(missing).select(columns).write_csv(sink, include_header=header)
            header = False
            bar.update(chunk.height)
        if header:  # no rows at all: still a CSV with its header
            pl.DataFrame(schema=dict.fromkeys(columns, pl.String)).write_csv(sink)
    log.info("wrote %d scored rows to %s", report.n_rows, out)
    return tally
