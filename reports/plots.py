"""The report's figures, drawn with matplotlib's object API (no pyplot state) and returned as PNG data URIs.

Each function takes the report's plain data (the rows of ``report.json``) and returns None when
there is nothing to draw, so the HTML can say why a figure is absent.
"""
from __future__ import annotations

import base64
import io
import math

import numpy as np

from ctxsim.schema import OVERALL

#: Resolution of embedded PNGs: sharp on a laptop screen, still small files.
DPI = 110
#: Accuracy of guessing: the reference line on accuracy plots and the heatmap's neutral colour.
CHANCE = 0.5
HEATMAP_CMAP = "RdYlGn"
#: Inches per row / column, so figures grow with the number of models and contexts.
ROW_INCHES, COL_INCHES = 0.28, 1.1
KIND_MARKERS = {"ensemble": "D", "baseline": "s", "member": "o"}
KIND_COLOURS = {"ensemble": "black", "baseline": "tab:orange", "member": "tab:blue"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _ordered_contexts(rows: list[dict]) -> list[str]:
    """``(all)`` first, then the contexts in the order they appear."""
    seen = list(dict.fromkeys(r["context"] for r in rows))
    return ([OVERALL] if OVERALL in seen else []) + [c for c in seen if c != OVERALL]


def accuracy_plot(accuracy: list[dict], models: list[dict]) -> str | None:
    """Accuracy with its 95% Wilson interval, one line per model within each context."""
    rows = [r for r in accuracy if r.get("accuracy") is not None]
    if not rows:
        return None
    contexts = _ordered_contexts(rows)
    by_key = {(r["context"], r["model"], r["kind"]): r for r in rows}
    n_models = len(models)
    fig = _figure(7.5, 1.0 + ROW_INCHES * len(contexts) * (n_models + 1))
    ax = fig.add_subplot()
    ticks = []
    for ci, context in enumerate(contexts):
        base = ci * (n_models + 1)  # one blank line between contexts
        ticks.append(base + (n_models - 1) / 2)
        for mi, m in enumerate(models):
            r = by_key.get((context, m["name"], m["kind"]))
            if r is None:
                continue
            y = base + mi
            ax.errorbar(
                r["accuracy"], y,
                xerr=[[r["accuracy"] - r["ci_low"]], [r["ci_high"] - r["accuracy"]]],
                fmt=KIND_MARKERS[m["kind"]], color=KIND_COLOURS[m["kind"]], capsize=2, markersize=4,
                label=f"{m['name']} ({m['kind']})" if ci == 0 else None,
            )
            ax.annotate(m["name"], (r["ci_high"], y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
    ax.axvline(CHANCE, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(ticks, [f"{c}\n(n={_labelled(rows, c)})" for c in contexts])
    ax.set_ylim(len(contexts) * (n_models + 1) - 1, -1)  # top to bottom, a line of air at both ends
    ax.set_xlabel("accuracy (95% Wilson interval)")
    ax.set_xlim(0, 1.12)  # room for the model names right of the intervals
    ax.grid(axis="x", alpha=0.3)
    return _data_uri(fig)


def _labelled(rows: list[dict], context: str) -> int:
    return max((r["labelled"] for r in rows if r["context"] == context), default=0)


def accuracy_heatmap(accuracy: list[dict], models: list[dict]) -> str | None:
    """Model x context accuracy: where each member is worth trusting (colour 0.5 = chance)."""
    rows = [r for r in accuracy if r.get("accuracy") is not None]
    if not rows:
        return None
    contexts = _ordered_contexts(rows)
    acc = {(r["model"], r["kind"], r["context"]): r["accuracy"] for r in rows}
    grid = np.array([[acc.get((m["name"], m["kind"], c), math.nan) for c in contexts] for m in models])
    fig = _figure(2.8 + COL_INCHES * len(contexts), 1.4 + 2 * ROW_INCHES * len(models))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, "–" if math.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(contexts)), [f"{c}\n(n={_labelled(rows, c)})" for c in contexts], fontsize=8)
    ax.set_yticks(range(len(models)), [f"{m['name']} ({m['kind']})" for m in models], fontsize=8)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, label="accuracy", shrink=0.8)
    return _data_uri(fig)


def reliability_diagram(calibration: dict[str, dict]) -> str | None:
    """Observed share of A against mean P(A) per bin, for every probabilistic model; counts below."""
    if not calibration:
        return None
    fig = _figure(6.0, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for name, cal in calibration.items():
        mean_p = [b["mean_p"] for b in cal["bins"]]
        frac_a = [b["frac_a"] for b in cal["bins"]]
        style = {"color": "black", "linewidth": 2} if name == "ensemble" else {"linewidth": 1}
        top.plot(mean_p, frac_a, marker="o", markersize=3, label=f"{name}: Brier {cal['brier']:.3f}, ECE {cal['ece']:.3f}", **style)
    top.set_ylabel("share judged A")
    top.set_ylim(0, 1)
    top.legend(fontsize=7, loc="upper left")
    top.grid(alpha=0.3)
    first = next(iter(calibration))
    bins = calibration[first]["bins"]
    bottom.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["n"] for b in bins],
               width=[b["hi"] - b["lo"] for b in bins], color="lightgrey", edgecolor="grey")
    bottom.set_ylabel(f"rows ({first})", fontsize=8)
    bottom.set_xlabel("predicted P(A closer)")
    bottom.set_xlim(0, 1)
    return _data_uri(fig)


def risk_coverage_plot(trust: dict) -> str | None:
    """Accuracy of the answered rows against the share answered, per model (most confident answered first);
    the selective answers of the scored rows, and the target, when there are some."""
    curves = trust.get("risk_coverage") or {}
    if not curves:
        return None
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    for name, points in curves.items():
        style = {"color": "black", "linewidth": 2, "zorder": 3} if name == "ensemble" else {"linewidth": 1}
        ax.plot([p["coverage"] for p in points], [p["accuracy"] for p in points], label=name, **style)
    overall = next((r for r in trust.get("selective") or [] if r["context"] == OVERALL and r.get("coverage") is not None), None)
    if overall is not None and overall.get("answered_accuracy") is not None:
        ax.plot([overall["coverage"]], [overall["answered_accuracy"]], marker="*", markersize=12, color="tab:red", linestyle="none",
                label=f"answered here: {overall['coverage']:.1%}, accuracy {overall['answered_accuracy']:.3f}", zorder=4)
    target = trust.get("target")
    if target:
        ax.axhline(target["target"], color="tab:red", linestyle="--", linewidth=1, label=f"target {target['target']:g}")
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("share answered (coverage)")
    ax.set_ylabel("accuracy on answered rows")
    ax.set_xlim(0, 1)
    ax.set_ylim(0.4, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _data_uri(fig)


def contribution_heatmap(contributions: dict | None) -> str | None:
    """Member (and context membership) x context: mean |contribution| to the ensemble's answer."""
    if not contributions:
        return None
    groups, contexts = contributions["groups"], contributions["contexts"]
    grid = np.array([[contributions["mean_abs"][c].get(g, math.nan) for c in contexts] for g in groups])
    fig = _figure(2.8 + COL_INCHES * len(contexts), 1.4 + 2 * ROW_INCHES * len(groups))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="Blues", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, "–" if math.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(contexts)), contexts, fontsize=8)
    ax.set_yticks(range(len(groups)), groups, fontsize=8)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, label="mean |contribution|", shrink=0.8)
    return _data_uri(fig)
