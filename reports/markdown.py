"""report.md: the same tables as the HTML page, as GitHub-flavoured Markdown (figures live in report.html)."""
from __future__ import annotations

from ctxsim.reports import tables
from ctxsim.reports.tables import Table, plural


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> str:
    if not t.rows:
        return ""
    align = ["---:" if t.is_numeric(i) else "---" for i in range(len(t.headers))]
    lines = [f"## {t.title}", "", "| " + " | ".join(map(_cell, t.headers)) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def render_markdown(report: dict) -> str:
    parts = [
        f"# {report['title']}",
        f"{report['source']} · {report['rows']} triplets · {plural(len(report['contexts']), 'context')} · created {report['created']}\n"
        "Plots (accuracy intervals, heatmap, reliability diagram) and thumbnails: report.html.",
    ]
    parts.append("\n".join(f"- {m}" for m in report["messages"]))
    builders = [tables.overall_table, tables.per_context_table, tables.counts_table, tables.calibration_table, tables.hardest_table]
    if report["notes"]:
        builders.insert(0, tables.notes_table)
    parts += [_table(b(report)) for b in builders]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"
