"""Terminal output: logs to stderr, tables (data) to stdout."""
from __future__ import annotations

import logging
import math
import sys


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def print_table(rows: list[dict], columns: list[str] | None = None, title: str | None = None) -> None:
    """Print dict rows as a table on stdout (plain text when stdout is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, justify="left" if c in ("context", "model", "member", "data") else "right")
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in columns))
    Console(file=sys.stdout, width=max(120, 18 * len(columns))).print(table)


#: How many problems are printed before the rest are only counted.
MAX_PRINTED_PROBLEMS = 200


def print_problems(problems) -> None:
    """One line per problem on stderr (file, row, column), the rest only counted past the limit."""
    for p in problems[:MAX_PRINTED_PROBLEMS]:
        print(p, file=sys.stderr)
    if len(problems) > MAX_PRINTED_PROBLEMS:
        print(f"... and {len(problems) - MAX_PRINTED_PROBLEMS} more problems", file=sys.stderr)


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable``: True when no progress is wanted, else None, so that tqdm draws bars only on a
    terminal; logs and CI get no redrawn bars, only the log lines each stage writes."""
    return True if not progress else None
