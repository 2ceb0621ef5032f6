"""report.md: the same tables as the HTML page, as GitHub-flavoured Markdown (figures live in report.html)."""
from __future__ import annotations

import re

from ctxsim.reports import tables
from ctxsim.reports.tables import Table, plural

#: Characters that Markdown (GFM) would read as emphasis, code, links, strikethrough, headings or a table border.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
#: Cells that are only numbers, intervals or percentages need no escaping (and stay readable as plain text).
_PLAIN_NUMBER = re.compile(r"[\d\s.,:+\-%\[\]()e]*")


def escape_md(text) -> str:
    """``text`` (from the data: context, model and file names, titles, notes) as inert Markdown on one line:
    HTML's ``& < >`` become entities (no raw tag reaches a renderer), Markdown's special characters are
    backslash-escaped, line breaks become spaces."""
    text = " ".join(str(text).splitlines()) if text is not None else ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _cell(text: str) -> str:
    text = "" if text is None else str(text)
    if _PLAIN_NUMBER.fullmatch(text) and "|" not in text:
        return text
    return escape_md(text)


def _table(t: Table) -> str:
    if not t.rows:
        return ""
    align = ["---:" if t.is_numeric(i) else "---" for i in range(len(t.headers))]
    lines = [f"## {escape_md(t.title)}", "", "| " + " | ".join(map(_cell, t.headers)) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def render_markdown(report: dict) -> str:
    parts = [
        f"# {escape_md(report['title'])}",
        f"{escape_md(report['source'])} · {report['rows']} triplets · {plural(len(report['contexts']), 'context')} · created {report['created']}\n"
        "Plots (accuracy intervals, heatmap, reliability diagram) and thumbnails: report.html.",
    ]
    parts.append("\n".join(f"- {escape_md(m)}" for m in report["messages"]))
    builders = [tables.overall_table, tables.per_context_table, tables.counts_table, tables.calibration_table, tables.selective_table,
                tables.contributions_table, tables.hardest_table]
    if report["notes"]:
        builders.insert(0, tables.notes_table)
    parts += [_table(b(report)) for b in builders]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"
