"""The triplet CSV, ctxsim's interchange format: read, validate, stream in chunks and write.

Columns (DESIGN.md): ``ref, a, b`` required image paths (relative to the images root, or absolute);
optional ``label`` (A/B), ``context``, ``votes_a``, ``votes_b`` and ``id``. Image paths resolve
against ``--images`` when given, else against the CSV file's own folder. Validation is vectorised
with polars and collects every problem with its file, row and column.
"""
from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ctxsim.atomic import atomic_path
from ctxsim.data.images import image_problem
from ctxsim.errors import InputError, Problem
from ctxsim.schema import IMAGE_COLUMNS, LABELS, PATH, ROW, SOURCE, VOTE_COLUMNS

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 100_000
#: How many warnings of one kind are listed before they are only counted.
MAX_LISTED_WARNINGS = 20
_IMAGE_CHECK_THREADS = 8


@dataclass(frozen=True)
class TripletFile:
    """A triplet CSV and the folder its relative image paths resolve against."""

    path: Path
    images_root: Path

    @classmethod
    def of(cls, csv: str | os.PathLike, images: str | os.PathLike | None = None) -> TripletFile:
        csv = Path(csv)
        root = Path(images) if images is not None else csv.parent
        return cls(csv, root.resolve())

    def header(self) -> list[str]:
        """The file's own column names."""
        return pl.scan_csv(self.path, infer_schema=False).collect_schema().names()

    def scan(self) -> pl.LazyFrame:
        """Every column as text, plus the data row number and the resolved image paths."""
        lf = pl.scan_csv(self.path, infer_schema=False, row_index_name=ROW, row_index_offset=1)
        names = lf.collect_schema().names()
        lf = lf.with_columns(*resolved_paths(self.images_root, names), pl.lit(str(self.path)).alias(SOURCE))
        if "id" not in names:
            lf = lf.with_columns(pl.col(ROW).cast(pl.String).alias("id"))
        return lf


def resolved_paths(root: str | os.PathLike | None, names=IMAGE_COLUMNS) -> list[pl.Expr]:
    """The ``_<col>_path`` columns: absolute image paths stay, relative ones join ``root`` (default: the
    working directory). The one path rule of every reader: triplet CSVs, scored CSVs, ``Comparator.score``."""
    prefix = Path(root if root is not None else Path.cwd()).resolve().as_posix().rstrip("/") + "/"
    col = pl.col
    return [
        pl.when(col(c).str.starts_with("/")).then(col(c)).otherwise(pl.lit(prefix) + col(c)).alias(PATH[c])
        for c in IMAGE_COLUMNS
        if c in names
    ]


def as_files(csvs: Sequence[str | os.PathLike] | str | os.PathLike, images=None) -> list[TripletFile]:
    if isinstance(csvs, (str, os.PathLike)):
        csvs = [csvs]
    return [TripletFile.of(c, images) for c in csvs]


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    n_rows: int = 0
    #: Every image the rows name (resolved paths, sorted), when images were checked.
    images: list[str] = field(default_factory=list)
    #: The images that cannot be loaded (resolved path -> its problem, which is also in ``problems``).
    bad_images: dict[str, Problem] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_invalid(self) -> None:
        for w in self.warnings:
            log.warning("%s", w)
        if not self.ok:
            raise InputError(self.problems)


def validate(
    csvs, images=None, *, require_label: bool = False, check_images: bool = True
) -> ValidationReport:
    """Check one or more triplet CSVs; every problem is returned, none raised."""
    report = ValidationReport()
    image_rows: dict[str, tuple[str, int, str, int]] = {}  # path -> (file, first row, column, n rows)
    for tf in as_files(csvs, images):
        if not tf.path.is_file():
            report.problems.append(Problem(str(tf.path), "triplet file not found"))
            continue
        try:
            lf = tf.scan()
            names = lf.collect_schema().names()
            header = tf.header()
        except (pl.exceptions.PolarsError, OSError) as err:
            report.problems.append(Problem(str(tf.path), f"not a readable CSV file ({err})"))
            continue
        file_problems = _check_columns(tf, header, require_label)
        report.problems += file_problems
        if any(p.row is None for p in file_problems):
            continue  # a missing column makes row checks meaningless
        try:
            # every column is parsed, so a row with more fields than the header fails here, not later
            file_rows = lf.select(pl.len(), *(pl.col(c).null_count() for c in header)).collect(engine="streaming").item(0, 0)
            report.n_rows += file_rows
            if require_label and file_rows == 0:
                report.problems.append(Problem(str(tf.path), "no rows: labelled triplets are required, and the file has only a header"))
            report.problems += _check_rows(tf, lf, names)
            if check_images:
                _collect_image_rows(tf, lf, image_rows)
        except pl.exceptions.PolarsError as err:
            report.problems += _long_rows(tf, len(header)) or [Problem(str(tf.path), f"not a readable CSV file ({err})")]
    if check_images:
        report.bad_images = _check_images(image_rows)
        report.problems += sorted(report.bad_images.values(), key=lambda p: (p.file, p.row or 0))
        report.images = sorted(image_rows)
    return report


def _check_columns(tf: TripletFile, names: list[str], require_label: bool) -> list[Problem]:
    required = [*IMAGE_COLUMNS, "label"] if require_label else list(IMAGE_COLUMNS)
    problems = [
        Problem(str(tf.path), f"missing required column (the header has: {', '.join(names) or 'nothing'})", column=c)
        for c in required
        if c not in names
    ]
    if (names or [""])[0].startswith("\ufeff"):
        problems.append(Problem(str(tf.path), "the header starts with a byte-order mark", column=names[0]))
    return problems


def _long_rows(tf: TripletFile, n_columns: int) -> list[Problem]:
    """Rows with more fields than the header has (polars refuses them without naming the row)."""
    try:
        with open(tf.path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            next(rows, None)
            return [
                Problem(str(tf.path), f"{len(fields)} fields, but the header has {n_columns} columns", row)
                for row, fields in enumerate(rows, start=1)
                if len(fields) > n_columns
            ]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _check_rows(tf: TripletFile, lf: pl.LazyFrame, names: list[str]) -> list[Problem]:
    """Every per-row check in one pass over the file (each check is a flag; only flagged rows are kept)."""
    file = str(tf.path)
    checks: list[tuple[pl.Expr, str | None, object]] = []  # (condition, value column, row -> Problem)
    for c in IMAGE_COLUMNS:
        blank = pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")
        checks.append((blank, None, lambda row, v, c=c: Problem(file, "empty cell: an image path is required", row, c)))
    if "label" in names:
        bad = ~pl.col("label").is_in(LABELS) | pl.col("label").is_null()
        checks.append((bad, "label", lambda row, v: Problem(
            file, "empty cell: expected 'A' or 'B'" if v is None else f"expected 'A' or 'B', got {v!r}", row, "label")))
    for c in VOTE_COLUMNS:
        if c in names:
            as_int = pl.col(c).str.strip_chars().cast(pl.Int64, strict=False)
            bad = pl.col(c).is_not_null() & (as_int.is_null() | (as_int < 0))
            checks.append((bad, c, lambda row, v, c=c: Problem(file, f"expected a whole number of votes >= 0, got {v!r}", row, c)))
    present = pl.all_horizontal(pl.col(PATH[c]).is_not_null() for c in IMAGE_COLUMNS)
    for x, y in (("ref", "a"), ("ref", "b"), ("a", "b")):
        same = present & (pl.col(PATH[x]) == pl.col(PATH[y]))
        checks.append((same, None, lambda row, v, x=x, y=y: Problem(file, f"'{x}' and '{y}' name the same image", row, y)))
    flags = [cond.fill_null(False).alias(f"_check{i}") for i, (cond, _, _) in enumerate(checks)]
    values = sorted({v for _, v, _ in checks if v is not None})
    flagged = (lf.select(ROW, *values, *flags).filter(pl.any_horizontal(f"_check{i}" for i in range(len(checks))))
               .collect(engine="streaming"))
    out: list[Problem] = []
    for i, (_, value, problem) in enumerate(checks):
        hits = flagged.filter(pl.col(f"_check{i}"))
        out += [problem(row, v) for row, v in zip(hits[ROW], hits[value] if value else [None] * hits.height)]
    out += _duplicate_warnings(file, lf.filter(present))
    return out


def _duplicate_warnings(file: str, lf: pl.LazyFrame) -> list[Problem]:
    """Rows judging the same reference and the same pair of candidates (in either order)."""
    key = [pl.col(PATH["ref"]), pl.min_horizontal(PATH["a"], PATH["b"]), pl.max_horizontal(PATH["a"], PATH["b"])]
    # Rows are grouped by a 64-bit hash of the key, not the three paths: memory stays at 16 bytes a row
    # (a false duplicate needs a hash collision: about n^2 / 2^65, 1e-6 for 5M rows).
    digest = pl.struct(*[k.alias(f"k{i}") for i, k in enumerate(key)]).hash(seed=0).alias("key")
    dups = (
        lf.select(ROW, digest)
        .with_columns(pl.col(ROW).min().over("key").alias("first"))
        .filter(pl.col(ROW) != pl.col("first"))
        .select(ROW, "first")
        .collect(engine="streaming")
    )
    warnings = [
        Problem(file, f"duplicate of row {first} (same ref and candidates)", row, severity="warning")
        for row, first in dups.head(MAX_LISTED_WARNINGS).rows()
    ]
    if dups.height > MAX_LISTED_WARNINGS:
        warnings.append(Problem(file, f"{dups.height - MAX_LISTED_WARNINGS} more duplicate rows", severity="warning"))
    return warnings


def _collect_image_rows(tf: TripletFile, lf: pl.LazyFrame, seen: dict) -> None:
    for c in IMAGE_COLUMNS:
        firsts = (
            lf.filter(pl.col(PATH[c]).is_not_null() & (pl.col(c).str.strip_chars() != ""))
            .group_by(PATH[c])
            .agg(pl.col(ROW).min().alias("row"), pl.len().alias("n"))
            .collect(engine="streaming")
        )
        for path, row, n in firsts.rows():
            if path not in seen:
                seen[path] = (str(tf.path), row, c, n)
                continue
            f, r, col, m = seen[path]
            if f == str(tf.path) and row < r:  # named earlier in this file by a later column
                f, r, col = f, row, c
            seen[path] = (f, r, col, m + n)


def _check_images(seen: dict[str, tuple[str, int, str, int]]) -> dict[str, Problem]:
    paths = sorted(seen)
    with ThreadPoolExecutor(_IMAGE_CHECK_THREADS) as pool:
        reasons = list(pool.map(image_problem, paths))
    problems = {}
    for path, reason in zip(paths, reasons):
        if reason is not None:
            file, row, col, n = seen[path]
            also = f" (named by {n} rows; first shown)" if n > 1 else ""
            problems[path] = Problem(file, f"{reason}: {path}{also}", row, col)
    return problems


def read_triplets(csvs, images=None, *, require_label: bool = False, check_images: bool = True) -> pl.DataFrame:
    """Validate, then read every row of one or more CSVs into one frame (raises :class:`InputError`)."""
    validate(csvs, images, require_label=require_label, check_images=check_images).raise_if_invalid()
    frames = [_typed(tf.scan()).collect() for tf in as_files(csvs, images)]
    return pl.concat(frames, how="diagonal_relaxed")


def iter_triplet_chunks(csvs, images=None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """Stream already-validated CSVs in chunks of at most ``chunk_rows`` rows (memory stays flat)."""
    for tf in as_files(csvs, images):
        yield from _typed(tf.scan()).collect_batches(chunk_size=chunk_rows)


def read_triplet_rows(csv, images=None, offset: int = 0, length: int | None = None) -> pl.DataFrame:
    """Rows ``[offset, offset + length)`` of one validated CSV, exactly as :func:`iter_triplet_chunks`
    gives them (row numbers and ids count from the file's first row): one shard of a sharded compare."""
    return _typed(TripletFile.of(csv, images).scan()).slice(offset, length).collect()


def _typed(lf: pl.LazyFrame) -> pl.LazyFrame:
    names = lf.collect_schema().names()
    casts = [pl.col(c).str.strip_chars().cast(pl.Int64) for c in VOTE_COLUMNS if c in names]
    return lf.with_columns(casts) if casts else lf


def public_columns(df: pl.DataFrame) -> list[str]:
    return [c for c in df.columns if not c.startswith("_")]


def write_triplets(df: pl.DataFrame, out: str | os.PathLike) -> None:
    """Write the public columns of ``df`` as a triplet CSV, atomically."""
    with atomic_path(out) as tmp:
        df.select(public_columns(df)).write_csv(tmp)


def relative_to(paths: pl.Expr, root: str | os.PathLike) -> pl.Expr:
    """Image paths written relative to ``root`` when they lie under it."""
    prefix = Path(root).resolve().as_posix().rstrip("/") + "/"
    return pl.when(paths.str.starts_with(prefix)).then(paths.str.strip_prefix(prefix)).otherwise(paths)
