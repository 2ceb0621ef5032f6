"""report.html: one self-contained page (inline CSS, figures and thumbnails as data URIs, no scripts).

A Content-Security-Policy allowing only inline styles and ``data:`` images keeps it that way: a
stray external link would not load in the browser test either.
"""
from __future__ import annotations

from html import escape

from ctxsim.reports import tables
from ctxsim.reports.tables import Table, fmt, plural

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.messages li { color: #7a4b00; } figure { margin: 0.5rem 0 1.5rem; } figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.85rem; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 0.8rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem; font-size: 0.8rem; }
.card .imgs { display: flex; gap: 4px; } .card .imgs div { text-align: center; flex: 1; }
.card img { width: 100%; max-width: 112px; border: 3px solid transparent; }
.card img.truth { border-color: #2a9d3a; } .card img.chosen { border-color: #c0392b; }
.missing { color: #c0392b; }
"""


def _table(t: Table) -> str:
    if not t.rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(c)}</td>' if t.is_numeric(i) else f"<td>{escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in t.rows
    )
    return f'<h2 id="{t.key}-title">{escape(t.title)}</h2>\n<table id="{t.key}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'


def _figure(uri: str | None, alt: str, caption: str) -> str:
    if uri is None:
        return ""
    return f'<figure><img src="{uri}" alt="{escape(alt)}"><figcaption>{escape(caption)}</figcaption></figure>\n'


def _card(item: dict) -> str:
    label, pred = item["label"], item["pred"]
    cells = []
    for col, name in (("ref", "R"), ("a", "A"), ("b", "B")):
        cls = "truth" if name == label else "chosen" if name == pred else ""
        missing = ' <span class="missing">(missing)</span>' if col in item["missing"] else ""
        cells.append(
            f'<div><img class="{cls}" src="{item["thumbs"][col]}" alt="{escape(name)}: {escape(item[col])}" '
            f'title="{escape(item[col])}"><br>{name}{missing}</div>'
        )
    votes = f", votes A:B {item['votes_a']}:{item['votes_b']}" if item.get("votes_a") is not None else ""
    return (
        f'<div class="card"><div class="imgs">{"".join(cells)}</div>'
        f"<div>id {escape(str(item['id']))} · {escape(str(item['context']))} · judged {escape(label)}, "
        f"predicted {escape(pred)} (p_a {fmt(item['p_a'])}){escape(votes)}</div></div>"
    )


def render_html(report: dict, figures: dict[str, str | None], gallery: list[dict]) -> str:
    """The page; ``figures`` maps accuracy / heatmap / reliability to data URIs (or None)."""
    parts = [
        f"<h1>{escape(report['title'])}</h1>",
        f'<p class="meta">{escape(report["source"])} · {report["rows"]} triplets · {plural(len(report["contexts"]), "context")} · '
        f"created {escape(report['created'])}</p>",
    ]
    if report["messages"]:
        parts.append('<ul class="messages">' + "".join(f"<li>{escape(m)}</li>" for m in report["messages"]) + "</ul>")
    if report["notes"]:
        parts.append(_table(tables.notes_table(report)))
    parts.append(_table(tables.overall_table(report)))
    parts.append(_figure(figures.get("accuracy"), "accuracy per context", "Accuracy per context with 95% Wilson intervals; dotted line: chance."))
    parts.append(_table(tables.per_context_table(report)))
    parts.append(_figure(figures.get("heatmap"), "model x context accuracy heatmap",
                         "Model x context accuracy (0.5, yellow, is chance): where each member can be trusted."))
    parts.append(_table(tables.counts_table(report)))
    if report["calibration"]:
        parts.append(_table(tables.calibration_table(report)))
        parts.append(_figure(figures.get("reliability"), "reliability diagram",
                             "Reliability: share of triplets judged A against the mean predicted P(A) per bin."))
    parts.append(_figure(figures.get("risk_coverage"), "risk-coverage curves",
                         "Risk-coverage: accuracy of the answered rows against the share answered, most confident first; "
                         "star: the selective answers of these rows; dashed: the target accuracy."))
    parts.append(_table(tables.selective_table(report)))
    parts.append(_table(tables.contributions_table(report)))
    parts.append(_figure(figures.get("contributions"), "member x context contribution heatmap",
                         "Mean |contribution| of each member (and context membership) to the ensemble's answer, per context."))
    if gallery:
        parts.append('<h2 id="gallery-title">Hardest misjudged triplets</h2>')
        parts.append("<p>The ensemble's most confident wrong answers. Green frame: the candidate people chose; red: the model's choice.</p>")
        parts.append('<div class="gallery" id="gallery">' + "".join(_card(i) for i in gallery) + "</div>")
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{escape(report['title'])}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
