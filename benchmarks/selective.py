"""Selective answers on held-out rows: does ``--target-accuracy`` keep its promise on images the run never saw?

Part of ``benchmarks/accuracy.py``'s draws (the same trained runs and test rows): for each common target
(0.90, 0.95, 0.99 at delta 0.05) the threshold is chosen on the run's stored calibration (its out-of-fold,
image-grouped predictions) and applied to the draw's test rows; reported per data set and regime are the
share answered and the accuracy on the answered rows (materials: rows with tied votes left out, as in
calibration). Answers are ``compare``'s own (its ``answered`` column). Two ways of choosing are compared on
the same draws: ``run``, what a run does (rows of one reference counted as correlated, one threshold per
regime: rows whose images are all new to the run, rows with some it trained on; ensemble/selective.py),
and ``rows``, every calibration row independent and one threshold for all (how runs chose before).
"""
from __future__ import annotations

import numpy as np

from ctxsim.ensemble.selective import SelectiveCalibration
from ctxsim.schema import COMMON_TARGETS, DEFAULT_DELTA

METHODS = ("run", "rows")


def calibrations(run_calibration: SelectiveCalibration) -> dict[str, SelectiveCalibration]:
    """Method -> calibration: the run's own (grouped by reference, one threshold per regime) and the same
    rows as independent ones of one regime (how runs chose before)."""
    return {"run": run_calibration, "rows": SelectiveCalibration(run_calibration.confidences, run_calibration.correct)}


def evaluate(comparator, tests: dict) -> dict:
    """method -> target -> {threshold(s), expected coverage, cells: cell -> answered share and accuracy}, with
    ``compare``'s own answers (the ``answered`` column) on every data set's test rows (``tests``: kind -> rows)."""
    out = {}
    for method, cal in calibrations(comparator.calibration).items():
        out[method] = {}
        for target in COMMON_TARGETS:
            selector = comparator.with_options()
            selector.baselines = False  # the ensemble's answer only
            s = selector.set_target(target, DEFAULT_DELTA, calibration=cal)
            scored = {kind: selector.score(rows) for kind, rows in tests.items()}
            out[method][str(target)] = {"selection": s.as_dict(), "cells": test_cells(scored)}
    return out


def _answered(part) -> dict:
    answered = part["answered"].to_numpy()
    right = (part["pred_raw"] == part["label"]).to_numpy()
    n = int(answered.sum())
    return {"rows": part.height, "answered": n, "coverage": n / part.height if part.height else float("nan"),
            "accuracy": float(right[answered].mean()) if n else float("nan")}


def test_cells(scored_by_kind: dict) -> dict[str, dict]:
    """Cell name (``kind/regime``) -> answered share and accuracy of the draw's test rows, tied votes left out."""
    import polars as pl

    regimes = {"new": pl.col("regime") == "new", "new_all3": (pl.col("regime") == "new") & pl.col("all_held"),
               "known": pl.col("regime") == "known"}
    cells, news = {}, []
    for kind, scored in scored_by_kind.items():
        if {"votes_a", "votes_b"} <= set(scored.columns):
            scored = scored.filter(pl.col("votes_a").is_null() | (pl.col("votes_a") != pl.col("votes_b")))
        for regime, where in regimes.items():
            cells[f"{kind}/{regime}"] = _answered(scored.filter(where))
        news.append(scored.filter(regimes["new"]).select("answered", "pred_raw", "label"))
    cells["all/new"] = _answered(pl.concat(news))
    return cells


def summarise(draws: list[dict]) -> list[dict]:
    """One row per method, target and cell: answered share and accuracy over draws, and the draws that met the target."""
    rows = []
    for method in METHODS:
        for target in map(str, COMMON_TARGETS):
            for cell in draws[0]["selective"][method][target]["cells"]:
                per = [d["selective"][method][target]["cells"][cell] for d in draws]
                acc = [r["accuracy"] for r in per if r["answered"]]
                rows.append({"method": method, "target": float(target), "cell": cell,
                             "coverage_mean": float(np.mean([r["coverage"] for r in per])),
                             "accuracy_mean": float(np.mean(acc)) if acc else None,
                             "accuracy_min": float(np.min(acc)) if acc else None,
                             "draws_met": sum(a >= float(target) for a in acc), "draws_answering": len(acc),
                             "draws": len(per)})
    return rows


def print_table(rows: list[dict], table) -> None:
    shown = [{**r, "coverage_mean": f"{r['coverage_mean']:.3f}",
              "accuracy_mean": "—" if r["accuracy_mean"] is None else f"{r['accuracy_mean']:.4f}",
              "accuracy_min": "—" if r["accuracy_min"] is None else f"{r['accuracy_min']:.4f}",
              "met": f"{r['draws_met']}/{r['draws_answering']}"} for r in rows]
    table(shown, ["method", "target", "cell", "coverage_mean", "accuracy_mean", "accuracy_min", "met"],
          "Selective answers on held-out rows (threshold from the run's calibration; met: draws whose answered "
          "accuracy reached the target / draws answering any row)")
