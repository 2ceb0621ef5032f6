"""The report's tables as plain text cells, laid out once and rendered by both the HTML and Markdown writers."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ctxsim.schema import OVERALL


@dataclass(frozen=True)
class Table:
    key: str  # stable id: the HTML element id and the Markdown anchor
    title: str
    headers: list[str]
    rows: list[list[str]]
    numeric: tuple[bool, ...] = ()  # per column: right-align

    def is_numeric(self, column: int) -> bool:
        return column < len(self.numeric) and self.numeric[column]


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def interval(row: dict) -> str:
    if row.get("ci_low") is None:
        return ""
    return f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def _context_order(rows: list[dict]) -> dict[str, int]:
    names = list(dict.fromkeys(r["context"] for r in rows))
    return {c: (-1 if c == OVERALL else i) for i, c in enumerate(names)}


def counts_table(report: dict) -> Table:
    cols = ["triplets", "labelled", "references", "images"]
    rows = sorted(report["counts"], key=lambda r: _context_order(report["counts"])[r["context"]])
    return Table(
        "counts", "Triplets and images per context", ["context", *cols],
        [[r["context"], *(fmt(r[c]) for c in cols)] for r in rows], (False, True, True, True, True),
    )


_ACCURACY_COLUMNS = [
    ("labelled", "n"), ("accuracy", "accuracy"), (None, "95% CI"), ("majority_accuracy", "majority acc."),
    ("vote_agreement", "vote agreement"), ("vote_ceiling", "vote ceiling"), ("brier", "Brier"),
]


def _accuracy_rows(rows: list[dict], columns) -> list[list[str]]:
    return [[r["context"], r["model"], r["kind"], *(interval(r) if key is None else fmt(r.get(key)) for key, _ in columns)]
            for r in rows]


def _present(rows: list[dict]):
    """Only the columns some row has a value for (no vote columns without votes)."""
    return [(k, h) for k, h in _ACCURACY_COLUMNS if k is None or any(r.get(k) is not None for r in rows)]


def overall_table(report: dict) -> Table:
    rows = [r for r in report["accuracy"] if r["context"] == OVERALL and r.get("accuracy") is not None]
    columns = _present(rows)
    cells = [cell[1:] for cell in _accuracy_rows(rows, columns)]
    return Table("overall", "Overall: ensemble, baselines and members", ["model", "kind", *(h for _, h in columns)],
                 cells, (False, False, *([True] * len(columns))))


def per_context_table(report: dict) -> Table:
    order = _context_order(report["accuracy"])
    rows = sorted((r for r in report["accuracy"] if r.get("accuracy") is not None or r.get("vote_agreement") is not None),
                  key=lambda r: order[r["context"]])  # stable: models keep their kind order within a context
    columns = _present(rows)
    return Table("per-context", "Accuracy per context (95% Wilson intervals)", ["context", "model", "kind", *(h for _, h in columns)],
                 _accuracy_rows(rows, columns), (False, False, False, *([True] * len(columns))))


def calibration_table(report: dict) -> Table:
    rows = [[name, fmt(c["n"]), fmt(c["brier"]), fmt(c["ece"])] for name, c in report["calibration"].items()]
    return Table("calibration", "Calibration of P(A closer)", ["model", "n", "Brier", "ECE"], rows, (False, True, True, True))


def hardest_table(report: dict) -> Table:
    headers = ["id", "context", "label", "pred", "p_a", "confidence", "ref", "a", "b"]
    rows = [[fmt(h.get(k)) for k in headers] for h in report["hardest"]]
    return Table("hardest", "Hardest misjudged triplets", headers, rows)


def notes_table(report: dict) -> Table:
    def show(v) -> str:
        return v if isinstance(v, str) else json.dumps(v, default=str)

    return Table("notes", "Notes", ["note", "value"], [[str(k), show(v)] for k, v in report["notes"].items()])


def selective_table(report: dict) -> Table:
    """Selective answers and out-of-context references per context (empty without those columns)."""
    rows = report["trust"]["selective"]
    cols = [(k, h) for k, h in (("rows", "triplets"), ("answered", "answered"), ("coverage", "coverage"),
                                ("answered_accuracy", "accuracy on answered"), ("threshold", "lowest confidence answered"),
                                ("out_of_context", "out-of-context triplets"), ("out_of_context_refs", "out-of-context references"))
            if any(r.get(k) is not None for r in rows)]
    ordered = sorted(rows, key=lambda r: _context_order(rows)[r["context"]])
    target = report["trust"].get("target")
    title = "Selective answers and out-of-context references per context"
    if target:
        threshold = "no threshold meets it: every row abstains" if target.get("threshold") is None else \
            f"threshold {fmt(target['threshold'], 4)}, expected coverage {fmt(target['coverage'])}"
        title += f" (target accuracy {target['target']:g} at delta {target['delta']:g}: {threshold})"
    return Table("selective", title, ["context", *(h for _, h in cols)], [[r["context"], *(fmt(r.get(k)) for k, _ in cols)] for r in ordered],
                 (False, *([True] * len(cols))))


def contributions_table(report: dict) -> Table:
    c = report["trust"]["contributions"]
    if not c:
        return Table("contributions", "", [], [])
    rows = [[g, *(fmt(c["mean_abs"][ctx].get(g)) for ctx in c["contexts"])] for g in c["groups"]]
    return Table("contributions", "Mean |contribution| to the ensemble's answer, per member and context (compare --explain=full)",
                 ["member", *c["contexts"]], rows, (False, *([True] * len(c["contexts"]))))
