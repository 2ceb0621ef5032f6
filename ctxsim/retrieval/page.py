"""A search result as one self-contained HTML page: the query and its top-k as thumbnails.

Thumbnails come from a callable (path -> ``data:`` URI), so the page stays one file; ``ctxsim search``
passes the report gallery's thumbnailer.
"""
from __future__ import annotations

import html
import os
from collections.abc import Callable

import polars as pl

from ctxsim.atomic import write_text_atomic

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{width:140px;font-size:12px}.card small,.card span{overflow-wrap:anywhere}
.card img{width:128px;height:128px;object-fit:contain;background:#f3f3f3;display:block}
.query img{width:192px;height:192px;object-fit:contain;background:#f3f3f3}"""


def search_page(results: pl.DataFrame, query: str, thumb: Callable[[str], str], title: str | None = None) -> str:
    e = html.escape
    context = results["context"][0] if results.height else ""
    cards = []
    for row in results.iter_rows(named=True):
        score = "" if row["score"] is None else f"score {row['score']:.3f} · "
        cards.append(f'<div class="card"><img src="{thumb(row["path"])}" alt="">'
                     f'<b>#{row["rank"]}</b> {score}cos {row["similarity"]:.3f}<br><span>{e(os.path.basename(row["path"]))}</span>'
                     f'<br><small title="{e(row["path"])}">{e(row["members"])}</small></div>')
    title = title or f"ctxsim search: {os.path.basename(query)}"
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{e(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{e(title)}</h1><div class=query><img src=\"{thumb(query)}\" alt=\"query\"><p>{e(query)}<br>"
            f"context <b>{e(str(context))}</b>, {results.height} results</p></div><div class=grid>{''.join(cards)}</div></body></html>")


def write_search_page(results: pl.DataFrame, query: str, out: str | os.PathLike, thumb: Callable[[str], str]) -> None:
    write_text_atomic(out, search_page(results, query, thumb))
