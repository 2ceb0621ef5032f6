"""Build a report from a scored frame: ``report.html`` (self-contained), ``report.json`` and ``report.md``.

This is what ``ctxsim report`` runs and what ``train`` and ``compare`` call. Everything is computed
first; the three files are then written to temporary files and renamed together, so invalid input
or a failure half-way leaves no report (and no half of one) behind.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.atomic import atomic_path
from ctxsim.reports import plots
from ctxsim.reports.accuracy import context_counts, model_accuracy
from ctxsim.reports.calibration import DEFAULT_BINS, calibration
from ctxsim.reports.gallery import DEFAULT_GALLERY_SIZE, Thumbnailer, gallery
from ctxsim.reports.html_page import render_html
from ctxsim.reports.markdown import render_markdown
from ctxsim.reports.scored import BASELINE, MEMBER, prepare, source_of
from ctxsim.reports.trust import trust_section

log = logging.getLogger(__name__)

DEFAULT_TITLE = "ctxsim report"
REPORT_FILES = {"html": "report.html", "json": "report.json", "md": "report.md"}


def build_report(
    scored: pl.DataFrame,
    out_dir: str | os.PathLike,
    images_root: str | os.PathLike | None = None,
    title: str = DEFAULT_TITLE,
    notes: dict | None = None,
    *,
    source: str | None = None,
    gallery_size: int = DEFAULT_GALLERY_SIZE,
    n_bins: int = DEFAULT_BINS,
) -> dict:
    """Write report.html, report.json and report.md into ``out_dir``; returns the report.json content.

    ``scored`` has the columns ``ctxsim compare`` writes (text as read from a CSV, or typed).
    Relative image paths resolve against ``images_root`` (default: the working directory) unless
    the frame already carries resolved paths (:func:`ctxsim.reports.scored.read_scored`).
    ``notes`` (JSON-able) are shown at the top, e.g. how the ensemble's combiner was chosen.
    Raises :class:`ctxsim.errors.InputError` naming file, row and column for bad input.
    """
    source = source or source_of(scored)
    frame, models = prepare(scored, images_root, source)
    report = summarise(frame, models, title=title, notes=notes, source=source, n_bins=n_bins)
    thumbnails = Thumbnailer()
    items = gallery(frame, gallery_size, thumbnails)
    report["hardest"] = [{k: v for k, v in i.items() if k not in ("thumbs", "missing")} for i in items]
    if thumbnails.missing:
        report["messages"].append(f"{len(thumbnails.missing)} gallery images could not be loaded and show a placeholder.")
        report["missing_images"] = [{"path": p, "reason": r} for p, r in sorted(thumbnails.missing.items())]
    report = _jsonable(report)


    figures = {
        "accuracy": plots.accuracy_plot(report["accuracy"], report["models"]),
        "heatmap": plots.accuracy_heatmap(report["accuracy"], report["models"]),
        "reliability": plots.reliability_diagram(report["calibration"]),
        "risk_coverage": plots.risk_coverage_plot(report["trust"]),
        "contributions": plots.contribution_heatmap(report["trust"]["contributions"]),
    }
    texts = {
        "html": render_html(report, figures, items),
        "json": json.dumps(report, indent=2, allow_nan=False) + "\n",
        "md": render_markdown(report),
    }
    _write_together(Path(out_dir), texts)
    log.info("wrote %s to %s", ", ".join(REPORT_FILES.values()), out_dir)
    return report


def summarise(frame: pl.DataFrame, models, *, title: str = DEFAULT_TITLE, notes: dict | None = None,
              source: str = "<scored frame>", n_bins: int = DEFAULT_BINS) -> dict:
    """Everything in report.json except the gallery, from a frame :func:`prepare` returned."""
    labelled = "label" in frame.columns
    report = {
        "title": title,
        "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": frame.height,
        "labelled": labelled,
        "contexts": sorted(frame["context"].unique().to_list()),
        "models": [{"name": m.name, "kind": m.kind, "column": m.column} for m in models],
        "notes": dict(notes or {}),
        "messages": _messages(frame, models),
        "counts": context_counts(frame),
        "accuracy": model_accuracy(frame, models),
        "calibration": {},
        "hardest": [],
        "trust": trust_section(frame, models, notes),
    }
    if labelled:
        y_a = (frame["label"] == "A").to_numpy()
        for m in models:
            if m.has_probability:
                cal = calibration(y_a, frame[m.column].to_numpy(), n_bins)
                if cal is not None:
                    report["calibration"][m.name] = cal.as_dict()
    return report


def _messages(frame: pl.DataFrame, models) -> list[str]:
    out = [] if frame.height else ["The scored file has no triplets."]
    if "label" not in frame.columns:
        out.append("No label column: accuracy, calibration and the gallery need labelled triplets; "
                   "this report has counts per context only.")
    if not any(m.kind == MEMBER for m in models):
        out.append("No margin_<member> columns: run compare with --margins to see every member.")
    if not any(m.kind == BASELINE for m in models):
        out.append("No p_a_<baseline> columns: run compare with --baselines to compare with the paper's ensembles.")
    if {"votes_a", "votes_b"} <= set(frame.columns):
        voted = (pl.col("votes_a").fill_null(0) + pl.col("votes_b").fill_null(0)) > 0
        tied = frame.filter(voted & (pl.col("votes_a") == pl.col("votes_b"))).height
        if tied:
            out.append(f"{tied} triplets have tied votes: they count in accuracy with their label; "
                       "majority accuracy uses only clear-majority triplets.")
    return out


def _jsonable(value):
    """Plain JSON types: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _write_together(out_dir: Path, texts: dict[str, str]) -> None:
    """Write every file to a temporary name first; rename them all only when all were written."""
    with contextlib.ExitStack() as stack:
        for key, text in texts.items():
            tmp = stack.enter_context(atomic_path(out_dir / REPORT_FILES[key]))
            tmp.write_text(text, encoding="utf-8")
