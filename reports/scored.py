"""The scored CSV that ``ctxsim compare`` writes, read back for reports: models, validation, types.

Conventions (DESIGN.md): ``p_a`` is the ensemble's P(A closer) and ``pred`` its answer (A when
``p_a >= 0.5``); ``margin_<member>`` is a member's margin (the member says A when it is > 0);
``p_a_<baseline>`` is a baseline's P(A closer) (A when >= 0.5). ``correct`` is ``pred == label``.
Every problem found is collected with its file, row and column before anything is raised.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import polars as pl

from ctxsim.data.triplets import TripletFile, resolved_paths, validate
from ctxsim.errors import InputError, Problem
from ctxsim.schema import (
    ABSTAIN,
    ANSWERED,
    BASELINE_PREFIX,
    CONTEXT_SIMILARITY,
    CORRECT,
    DECISION_THRESHOLD,
    DEFAULT_CONTEXT,
    IMAGE_COLUMNS,
    LABELS,
    MARGIN_PREFIX,
    OUT_OF_CONTEXT,
    PATH,
    PRED_RAW,
    PREDICTION,
    PROBABILITY,
    ROW,
    SOURCE,
    VOTE_COLUMNS,
)

ENSEMBLE = "ensemble"
BASELINE = "baseline"
MEMBER = "member"
#: Order in which kinds of model are listed everywhere in a report.
KINDS = (ENSEMBLE, BASELINE, MEMBER)
REQUIRED_COLUMNS = (*IMAGE_COLUMNS, PROBABILITY)
#: Text values ``correct`` may take in a CSV (polars writes booleans as true/false).
_BOOLEAN_TEXT = {"true": True, "false": False}


@dataclass(frozen=True)
class ScoredModel:
    """One source of predictions in a scored frame: the ensemble, a baseline or a member."""

    name: str
    kind: str
    column: str

    @property
    def has_probability(self) -> bool:
        return self.kind != MEMBER

    def says_a(self) -> pl.Expr:
        """True where this model predicts A."""
        if self.kind == MEMBER:
            return pl.col(self.column) > 0
        return pl.col(self.column) >= DECISION_THRESHOLD

    def prediction(self) -> pl.Expr:
        return pl.when(self.says_a()).then(pl.lit("A")).otherwise(pl.lit("B"))


def models_of(columns: list[str]) -> list[ScoredModel]:
    """The ensemble, then baselines, then members, in column order within each kind."""

    def named(prefix: str, kind: str) -> list[ScoredModel]:
        return [ScoredModel(c.removeprefix(prefix), kind, c) for c in columns if c.startswith(prefix) and c != prefix]

    ensemble = [ScoredModel(ENSEMBLE, ENSEMBLE, PROBABILITY)] if PROBABILITY in columns else []
    return ensemble + named(BASELINE_PREFIX, BASELINE) + named(MARGIN_PREFIX, MEMBER)


def read_scored(csv: str | os.PathLike, images: str | os.PathLike | None = None) -> pl.DataFrame:
    """Read a scored CSV as text with its image paths resolved (``--images``, else the CSV's folder).

    The triplet columns are checked by :func:`ctxsim.data.triplets.validate`; the scored ones by
    :func:`prepare`. Raises :class:`InputError`.
    """
    report = validate(csv, images, check_images=False)
    if any(p.row is None for p in report.errors):  # no file, or a column missing: rows cannot be read
        report.raise_if_invalid()
    tf = TripletFile.of(csv, images)
    try:
        frame = tf.scan().collect()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError([Problem(str(tf.path), f"not a readable CSV file ({err})")]) from None
    if report.errors:
        # Name every bad cell at once: the scored columns' problems too, each (row, column) once.
        try:
            prepare(frame, images)
            extra = []
        except InputError as err:
            extra = err.problems
        seen = {(p.row, p.column) for p in report.errors}
        raise InputError(report.errors + [p for p in extra if (p.row, p.column) not in seen])
    report.raise_if_invalid()  # logs the warnings
    return frame


def source_of(scored: pl.DataFrame) -> str:
    """The file a frame was read from (``read_scored`` records it), for naming problems."""
    return scored[SOURCE][0] if SOURCE in scored.columns and scored.height else "<scored frame>"


def prepare(
    scored: pl.DataFrame, images_root: str | os.PathLike | None = None, source: str | None = None
) -> tuple[pl.DataFrame, list[ScoredModel]]:
    """Validate a scored frame (text from a CSV, or typed from ``compare``) and return it typed.

    The result has ``_row``, ``id``, ``context``, resolved image paths, float model columns,
    ``label``/``votes_*`` when present, and ``pred`` (derived from ``p_a`` when absent).
    """
    source = source or source_of(scored)
    missing = [c for c in REQUIRED_COLUMNS if c not in scored.columns]
    if missing:
        have = ", ".join(c for c in scored.columns if not c.startswith("_")) or "nothing"
        raise InputError([Problem(source, f"missing required column (the frame has: {have})", column=c) for c in missing])
    if CORRECT in scored.columns and "label" not in scored.columns:
        raise InputError([Problem(source, "'correct' needs the 'label' column it was computed from", column=CORRECT)])

    df = _with_row_and_paths(scored, images_root)
    models = models_of(df.columns)
    problems: list[Problem] = []
    typed: list[pl.Expr] = []
    for m in models:
        expr, found = _float_column(df, m.column, source, probability=m.has_probability)
        typed.append(expr)
        problems += found
    for c in VOTE_COLUMNS:
        if c in df.columns:
            expr, found = _vote_column(df, c, source)
            typed.append(expr)
            problems += found
    if "label" in df.columns:
        problems += _bad_values(df, pl.col("label").cast(pl.String), LABELS, "label", source)
    for c in (ANSWERED, OUT_OF_CONTEXT):
        if c in df.columns:
            expr, found = _bool_column(df, c, source, nullable=c == OUT_OF_CONTEXT)
            typed.append(expr)
            problems += found
    if CONTEXT_SIMILARITY in df.columns:
        expr, found = _float_column(df, CONTEXT_SIMILARITY, source, probability=False)
        typed.append(expr)
        problems += found
    df = df.with_columns(typed)
    if problems:
        raise InputError(problems)

    problems += _check_prediction(df, source)
    if CORRECT in df.columns:
        problems += _check_correct(df, source)
    if problems:
        raise InputError(problems)
    return _finish(df), models


def _with_row_and_paths(df: pl.DataFrame, images_root) -> pl.DataFrame:
    if ROW not in df.columns:
        df = df.with_row_index(ROW, offset=1)
    df = df.with_columns(pl.col(ROW).cast(pl.Int64))
    if "id" not in df.columns:
        df = df.with_columns(pl.col(ROW).cast(pl.String).alias("id"))
    if not all(PATH[c] in df.columns for c in IMAGE_COLUMNS):
        df = df.with_columns(resolved_paths(images_root))
    return df


def _float_column(df: pl.DataFrame, column: str, source: str, *, probability: bool) -> tuple[pl.Expr, list[Problem]]:
    raw = pl.col(column)
    if df.schema[column] == pl.String:
        value = raw.str.strip_chars().cast(pl.Float64, strict=False)
    else:
        value = raw.cast(pl.Float64, strict=False)
    bad = value.is_null() | ~value.is_finite()
    wanted = "a probability in [0, 1]" if probability else "a finite number"
    if probability:
        bad = bad | (value < 0) | (value > 1)
    rows = df.filter(bad).select(ROW, raw.cast(pl.String)).rows()
    problems = [Problem(source, f"expected {wanted}, got {v!r}" if v is not None else f"empty cell: expected {wanted}", row, column)
                for row, v in rows]
    return value.alias(column), problems


def _bool_column(df: pl.DataFrame, column: str, source: str, *, nullable: bool) -> tuple[pl.Expr, list[Problem]]:
    raw = pl.col(column)
    if df.schema[column] == pl.Boolean:
        value = raw
    else:
        value = raw.cast(pl.String).str.strip_chars().str.to_lowercase().replace_strict(_BOOLEAN_TEXT, default=None, return_dtype=pl.Boolean)
    bad = value.is_null() & (raw.is_not_null() & (raw.cast(pl.String).str.strip_chars() != "") if nullable else pl.lit(True))
    rows = df.filter(bad).select(ROW, raw.cast(pl.String)).rows()
    return value.alias(column), [Problem(source, "expected true or false" + (f", got {v!r}" if v is not None else ""), row, column)
                                 for row, v in rows]


def _vote_column(df: pl.DataFrame, column: str, source: str) -> tuple[pl.Expr, list[Problem]]:
    raw = pl.col(column)
    text = raw.cast(pl.String).str.strip_chars()
    value = text.cast(pl.Int64, strict=False)
    bad = text.is_not_null() & (text != "") & (value.is_null() | (value < 0))
    rows = df.filter(bad).select(ROW, raw.cast(pl.String)).rows()
    problems = [Problem(source, f"expected a whole number of votes >= 0, got {v!r}", row, column) for row, v in rows]
    return value.alias(column), problems


def _bad_values(df: pl.DataFrame, value: pl.Expr, allowed, column: str, source: str) -> list[Problem]:
    choices = " or ".join(repr(a) for a in allowed)
    rows = df.filter(value.is_null() | ~value.is_in(list(allowed))).select(ROW, value).rows()
    return [Problem(source, f"empty cell: expected {choices}" if v is None else f"expected {choices}, got {v!r}", row, column)
            for row, v in rows]


def _check_prediction(df: pl.DataFrame, source: str) -> list[Problem]:
    """``pred`` must be A/B and agree with ``p_a``: the report ranks mistakes by ``p_a``."""
    if PREDICTION not in df.columns:
        return []
    pred = pl.col(PREDICTION).cast(pl.String)
    selective = ANSWERED in df.columns  # selective answers: pred abstains where not answered, pred_raw is the choice
    problems = _bad_values(df, pred, (*LABELS, ABSTAIN) if selective else LABELS, PREDICTION, source)
    if selective and PRED_RAW in df.columns:
        problems += _bad_values(df, pl.col(PRED_RAW).cast(pl.String), LABELS, PRED_RAW, source)
    if problems:
        return problems
    expected = ScoredModel(ENSEMBLE, ENSEMBLE, PROBABILITY).prediction()
    checks = [(PREDICTION, pred, pl.lit(True))]
    if selective:
        checks = [(PREDICTION, pred, pred != ABSTAIN)] + ([(PRED_RAW, pl.col(PRED_RAW).cast(pl.String), pl.lit(True))]
                                                         if PRED_RAW in df.columns else [])
    found = []
    for column, value, applies in checks:
        rows = df.filter(applies & (value != expected)).select(ROW, value, PROBABILITY).rows()
        found += [Problem(source, f"{column} {v!r} disagrees with p_a = {p:.4g} (A when p_a >= {DECISION_THRESHOLD})", row, column)
                  for row, v, p in rows]
    if selective:
        rows = df.filter((pred == ABSTAIN) == pl.col(ANSWERED)).select(ROW, pred, pl.col(ANSWERED)).rows()
        found += [Problem(source, f"pred {v!r} disagrees with answered = {str(a).lower()} (abstain exactly where not answered)",
                          row, PREDICTION) for row, v, a in rows]
    return found


def _check_correct(df: pl.DataFrame, source: str) -> list[Problem]:
    raw = pl.col(CORRECT)
    if df.schema[CORRECT] == pl.Boolean:
        value = raw
    else:
        value = raw.cast(pl.String).str.strip_chars().str.to_lowercase().replace_strict(_BOOLEAN_TEXT, default=None, return_dtype=pl.Boolean)
    rows = df.filter(value.is_null()).select(ROW, raw.cast(pl.String)).rows()
    problems = [Problem(source, "expected true or false" + (f", got {v!r}" if v is not None else ""), row, CORRECT) for row, v in rows]
    if problems:
        return problems
    # correct judges the raw choice (with selective answers, pred may abstain)
    pred = ScoredModel(ENSEMBLE, ENSEMBLE, PROBABILITY).prediction() if ANSWERED in df.columns or PREDICTION not in df.columns \
        else pl.col(PREDICTION)
    rows = df.filter(value != (pred == pl.col("label"))).select(ROW, raw.cast(pl.String)).rows()
    return [Problem(source, f"correct {v!r} disagrees with the prediction == label", row, CORRECT) for row, v in rows]


def _finish(df: pl.DataFrame) -> pl.DataFrame:
    context = pl.col("context").cast(pl.String).fill_null(DEFAULT_CONTEXT) if "context" in df.columns else pl.lit(DEFAULT_CONTEXT)
    pred = ScoredModel(ENSEMBLE, ENSEMBLE, PROBABILITY).prediction()
    return df.with_columns(
        context.alias("context"),
        pred.alias(PREDICTION),
        pl.col("id").cast(pl.String),
        *(pl.col(c).cast(pl.String) for c in (*IMAGE_COLUMNS, "label") if c in df.columns),
    ).drop(CORRECT, PRED_RAW, strict=False)
