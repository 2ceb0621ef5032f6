"""The report's trust section: risk-coverage curves of every probabilistic model, the selective answers of
the scored rows (answered share and accuracy per context), out-of-context references per context, and the
mean absolute contribution of each member in each context (from ``contrib_<feature>`` columns)."""
from __future__ import annotations

import numpy as np
import polars as pl

from ctxsim.ensemble.features import group_of_feature
from ctxsim.ensemble.selective import SelectiveCalibration, confidence
from ctxsim.schema import ANSWERED, CONTRIB_PREFIX, OUT_OF_CONTEXT, OVERALL

#: Points kept per risk-coverage curve (evenly spread over coverage).
CURVE_POINTS = 200


def risk_coverage(frame: pl.DataFrame, models) -> dict[str, list[dict]]:
    """Per probabilistic model: accuracy of the answered rows against the share answered, most confident first."""
    if "label" not in frame.columns or not frame.height:
        return {}
    y_a = (frame["label"] == "A").to_numpy()
    curves = {}
    for m in models:
        if not m.has_probability:
            continue
        cal = SelectiveCalibration.from_predictions(frame[m.column].to_numpy(), y_a)
        coverage, accuracy = cal.risk_coverage()
        keep = np.unique(np.linspace(0, len(coverage) - 1, min(CURVE_POINTS, len(coverage))).round().astype(int))
        curves[m.name] = [{"coverage": float(coverage[i]), "accuracy": float(accuracy[i])} for i in keep]
    return curves


def selective_rows(frame: pl.DataFrame) -> list[dict]:
    """Per context and overall: rows, answered share, accuracy on answered rows, the lowest confidence answered
    (the threshold in effect), and out-of-context references, where the scored file has these columns."""
    has_answered, has_ooc = ANSWERED in frame.columns, OUT_OF_CONTEXT in frame.columns
    if not (has_answered or has_ooc) or not frame.height:
        return []
    labelled = "label" in frame.columns
    conf = pl.Series("_confidence", confidence(frame["p_a"].to_numpy()))
    df = frame.with_columns(conf)
    if labelled:
        df = df.with_columns((pl.col("pred").cast(pl.String) == pl.col("label")).alias("_right"))  # pred: the raw choice
    exprs = [pl.len().alias("rows")]
    if has_answered:
        ans = pl.col(ANSWERED)
        exprs += [ans.sum().alias("answered"), pl.col("_confidence").filter(ans).min().alias("threshold")]
        if labelled:
            exprs.append(pl.col("_right").filter(ans).mean().alias("answered_accuracy"))
    if has_ooc:
        exprs += [pl.col(OUT_OF_CONTEXT).fill_null(False).sum().alias("out_of_context"),
                  pl.col(OUT_OF_CONTEXT).fill_null(False).filter(pl.col("ref").is_first_distinct()).sum().alias("out_of_context_refs")]
    per = df.group_by("context").agg(exprs).sort("context")
    overall = df.select(exprs).with_columns(pl.lit(OVERALL).alias("context"))
    rows = pl.concat([per, overall.select(per.columns)], how="vertical_relaxed").to_dicts()
    for r in rows:
        if has_answered:
            r["coverage"] = r["answered"] / r["rows"] if r["rows"] else None
    return rows


def contribution_table(frame: pl.DataFrame) -> dict | None:
    """Mean |contribution| of each member (and context membership) per routed context, from ``contrib_*``."""
    columns = [c for c in frame.columns if c.startswith(CONTRIB_PREFIX)]
    if not columns or not frame.height:
        return None
    features = [c.removeprefix(CONTRIB_PREFIX) for c in columns]
    context_names = [f.removeprefix("member_") for f in features if f.startswith("member_")]
    groups = [group_of_feature(f, context_names) for f in features]
    names = list(dict.fromkeys(groups))
    values = frame.select(pl.col(c).cast(pl.Float64, strict=False).fill_null(0.0) for c in columns).to_numpy()
    onehot = np.zeros((len(columns), len(names)))
    onehot[np.arange(len(columns)), [names.index(g) for g in groups]] = 1.0
    grouped = np.abs(values @ onehot)
    contexts = frame["context"].cast(pl.String).to_numpy()
    order = [OVERALL] + sorted(set(contexts.tolist()))
    table = {}
    for c in order:
        rows = np.ones(len(contexts), bool) if c == OVERALL else contexts == c
        table[c] = dict(zip(names, grouped[rows].mean(axis=0).tolist()))
    return {"groups": names, "contexts": order, "mean_abs": table}


def trust_section(frame: pl.DataFrame, models, notes: dict) -> dict:
    return {"risk_coverage": risk_coverage(frame, models), "selective": selective_rows(frame),
            "target": (notes or {}).get("selective"), "contributions": contribution_table(frame)}
