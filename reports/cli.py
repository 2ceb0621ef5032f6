"""The parser of ``ctxsim report SCORED_CSV --out DIR [--images ROOT]`` (its handler is
:func:`ctxsim.commands.report.report`, imported only when the command runs)."""
from __future__ import annotations

import argparse


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report`` on the ``ctxsim`` command's subparsers."""
    p = subparsers.add_parser("report", help="HTML, JSON and Markdown report of a scored CSV")
    p.add_argument("scored", help="a scored CSV written by ctxsim compare")
    p.add_argument("--out", required=True, help="folder for report.html, report.json and report.md")
    p.add_argument("--images", help="root of relative image paths (default: the scored CSV's folder)")
    p.add_argument("--title", help="page title (default: from the CSV's name)")
    p.add_argument("--gallery", type=int, metavar="N", help="how many hardest misjudged triplets to show as thumbnails")
    p.set_defaults(handler="ctxsim.commands.report:report")
