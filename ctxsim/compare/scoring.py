"""Batch comparison of triplet CSVs, streamed: validate, score chunk by chunk, write atomically, resume.

Scored chunks are appended to a hidden partial file beside the output (``.NAME.partial``); after each
chunk a small progress file (``.NAME.progress.json``) records how many rows and bytes are complete, the
accuracy counts so far, and a digest of the inputs, the model and the options. The partial file is
renamed to the output only when every row is scored, so nothing is written half-way. An interrupted
run leaves both files; ``resume=True`` (``ctxsim compare --resume``) checks the digest, cuts the partial
file back to its last complete chunk and goes on from the next row, so the output is byte for byte
that of an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ctxsim.atomic import exclusive_lock, write_text_atomic
from ctxsim.compare.comparator import Comparator
from ctxsim.console import bar_disabled
from ctxsim.data.triplets import (
    DEFAULT_CHUNK_ROWS,
    as_files,
    iter_triplet_chunks,
    validate,
)
from ctxsim.embedding.bad_images import write_bad_images
from ctxsim.metrics import AccuracyTally
from ctxsim.schema import IMAGE_COLUMNS, OUTPUT_COLUMNS, PATH, margin_column

log = logging.getLogger(__name__)

#: Version of the progress file's layout; a different one is never resumed.
PROGRESS_VERSION = 1
#: How much of each input CSV's head goes into the digest (besides its size and modification time).
_DIGEST_HEAD_BYTES = 1 << 20


def output_columns(csvs, images, comparator: Comparator, margins: bool) -> list[str]:
    """Input columns (union over files, in order) followed by what ``compare`` adds."""
    seen: dict[str, None] = {}
    for tf in as_files(csvs, images):
        seen.update(dict.fromkeys(c for c in tf.scan().collect_schema().names() if not c.startswith("_")))
    has_label = "label" in seen
    added = [c for c in OUTPUT_COLUMNS if c != "correct" or has_label]
    cols = [c for c in seen if c not in added] + added
    return cols + ([margin_column(m) for m in comparator.member_names] if margins else []) + comparator.extra_columns


def conform(scored: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``scored`` with exactly ``columns``, in order (columns a file lacks are empty text)."""
    missing = [pl.lit(None, pl.String).alias(c) for c in columns if c not in scored.columns]
    return scored.with_columns(missing).select(columns)


@dataclass(frozen=True)
class PartialOutput:
    """Where an unfinished ``compare`` keeps its rows and its progress."""

    out: Path

    @property
    def data(self) -> Path:
        return self.out.parent / f".{self.out.name}.partial"

    @property
    def progress(self) -> Path:
        return self.out.parent / f".{self.out.name}.progress.json"

    def read_progress(self) -> dict | None:
        try:
            return json.loads(self.progress.read_text())
        except (OSError, ValueError):
            return None

    def write_progress(self, digest: str, rows: int, nbytes: int, tally: AccuracyTally) -> None:
        state = {"version": PROGRESS_VERSION, "digest": digest, "rows": rows, "bytes": nbytes, "tally": tally.counts}
        write_text_atomic(self.progress, json.dumps(state))

    def clear(self) -> None:
        self.data.unlink(missing_ok=True)
        self.progress.unlink(missing_ok=True)


def run_digest(comparator: Comparator, csvs, images, columns: list[str], margins: bool, skip_bad_images: bool = False) -> str:
    """What must not change between an interrupted run and its resumption: every input file (path,
    size, modification time, first MiB), where images resolve, the model and the output's columns."""
    h = hashlib.sha256()

    def add(*parts) -> None:
        for part in parts:
            h.update(str(part).encode())
            h.update(b"\0")

    add(PROGRESS_VERSION, comparator.fingerprint(), margins, *columns)
    if skip_bad_images:
        add("skip-bad-images")
    for tf in as_files(csvs, images):
        st = tf.path.stat()
        add(tf.path.resolve(), tf.images_root, st.st_size, st.st_mtime_ns)
        with open(tf.path, "rb") as f:
            h.update(f.read(_DIGEST_HEAD_BYTES))
    return h.hexdigest()


def compare_files(
    comparator: Comparator,
    csvs,
    out: str | os.PathLike,
    images=None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    margins: bool = False,
    progress: bool = True,
    resume: bool = False,
    skip_bad_images: bool = False,
) -> AccuracyTally:
    """Score every row of ``csvs`` into ``out``; returns accuracy counts per context.

    Raises :class:`ctxsim.errors.InputError` before writing anything when the input is invalid. With
    ``resume``, a run interrupted on the same inputs, model and options goes on where it stopped.
    """
    from tqdm import tqdm

    report = validate(csvs, images)
    bad = skipped_images(report) if skip_bad_images else {}
    report.raise_if_invalid()
    if bad:
        for problem in bad.values():
            log.warning("skipping rows naming an unreadable image: %s", str(problem).removeprefix("error: "))
        listed = write_bad_images(out, [(path, str(problem)) for path, problem in bad.items()])
        log.warning("%d unreadable images skipped, listed in %s", len(bad), listed)
    columns = output_columns(csvs, images, comparator, margins)
    digest = run_digest(comparator, csvs, images, columns, margins, skip_bad_images)
    comparator.prepare([p for p in report.images if p not in bad])  # every image once, whatever the chunks: same scores when resumed
    partial = PartialOutput(Path(out))
    partial.out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(partial):
        tally, done, nbytes = _start(partial, digest, resume)
        with open(partial.data, "r+b") as sink, tqdm(
            total=report.n_rows, initial=done, desc="compare", unit="row", disable=bar_disabled(progress), unit_scale=True
        ) as bar:
            sink.truncate(nbytes)
            sink.seek(nbytes)
            try:
                for chunk in skip_rows(iter_triplet_chunks(csvs, images, chunk_rows), done):
                    rows = chunk.height
                    if bad:  # rows that name a skipped image are left out
                        chunk = chunk.filter(~pl.any_horizontal(pl.col(PATH[c]).is_in(list(bad)) for c in IMAGE_COLUMNS))
                    scored = comparator.predict(chunk, margins=margins)
                    tally.update(scored)
                    conform(scored, columns).write_csv(sink, include_header=sink.tell() == 0)
                    sink.flush()
                    os.fsync(sink.fileno())
                    done += rows
                    partial.write_progress(digest, done, sink.tell(), tally)
                    bar.update(rows)
            except BaseException:
                log.warning("compare stopped after %d of %d rows; `--resume` goes on from there", done, report.n_rows)
                raise
            if sink.tell() == 0:  # no rows at all: still a CSV with its header
                pl.DataFrame(schema=dict.fromkeys(columns, pl.String)).write_csv(sink)
        os.replace(partial.data, partial.out)
        partial.progress.unlink(missing_ok=True)
    log.info("wrote %d scored rows to %s", report.n_rows, out)
    return tally


def skipped_images(report) -> dict:
    """With ``--skip-bad-images``: the unreadable images (path -> problem), taken out of the report's
    errors; ``compare_files`` lists them in ``<out>.bad-images.txt``, warns once per image (naming the
    file, row and column) and leaves their rows out of the output."""
    skipped = set(report.bad_images.values())
    report.problems = [p for p in report.problems if p not in skipped]
    return dict(report.bad_images)


def _start(partial: PartialOutput, digest: str, resume: bool) -> tuple[AccuracyTally, int, int]:
    """(tally so far, rows done, bytes of the partial file to keep); a fresh start when not resuming."""
    state = partial.read_progress() if resume else None
    usable = (
        state is not None
        and state.get("version") == PROGRESS_VERSION
        and state.get("digest") == digest
        and partial.data.is_file()
        and partial.data.stat().st_size >= state.get("bytes", 0)
    )
    if resume and state is None:
        log.info("nothing to resume for %s: starting from the first row", partial.out)
    elif resume and not usable:
        log.warning("the unfinished output of %s is for other inputs, model or options: starting over", partial.out)
    if usable:
        log.info("resuming %s after %d rows", partial.out, state["rows"])
        return AccuracyTally(counts=state["tally"]), int(state["rows"]), int(state["bytes"])
    partial.clear()
    partial.data.touch()
    return AccuracyTally(), 0, 0


def skip_rows(chunks: Iterator[pl.DataFrame], n: int) -> Iterator[pl.DataFrame]:
    """The rows of ``chunks`` after the first ``n``, chunk by chunk, empty chunks left out."""
    for chunk in chunks:
        if n >= chunk.height:
            n -= chunk.height
            continue
        if n:
            chunk, n = chunk.slice(n), 0
        if chunk.height:
            yield chunk


def _exclusive(partial: PartialOutput):
    """One ``compare`` at a time per output file: a second one fails at once instead of mixing rows."""
    return exclusive_lock(partial.out, "`ctxsim compare`")
