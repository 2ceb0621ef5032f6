"""``ctxsim report SCORED_CSV --out DIR [--images ROOT]``. Imports nothing heavy until the command runs."""
from __future__ import annotations

import argparse


def _cmd_report(args) -> int:
    from pathlib import Path

    from ctxsim.console import print_table
    from ctxsim.reports.metrics import ALL
    from ctxsim.reports.report import REPORT_FILES, build_report
    from ctxsim.reports.scored import read_scored

    scored = read_scored(args.scored, args.images)
    title = args.title or f"ctxsim report: {Path(args.scored).name}"
    size = {} if args.gallery is None else {"gallery_size": args.gallery}  # None: build_report's default
    report = build_report(scored, args.out, title=title, source=str(args.scored), **size)
    for message in report["messages"]:
        print(f"note: {message}")
    overall = [r for r in report["accuracy"] if r["context"] == ALL]
    if report["labelled"]:
        print_table(overall, ["model", "kind", "labelled", "accuracy", "ci_low", "ci_high", "vote_agreement", "brier"], title=title)
    else:
        print_table(report["counts"], title=title)
    for name in REPORT_FILES.values():
        print(Path(args.out) / name)
    return 0


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report`` on the ``ctxsim`` command's subparsers."""
    p = subparsers.add_parser("report", help="HTML, JSON and Markdown report of a scored CSV")
    p.add_argument("scored", help="a scored CSV written by ctxsim compare")
    p.add_argument("--out", required=True, help="folder for report.html, report.json and report.md")
    p.add_argument("--images", help="root of relative image paths (default: the scored CSV's folder)")
    p.add_argument("--title", help="page title (default: from the CSV's name)")
    p.add_argument("--gallery", type=int, metavar="N", help="how many hardest misjudged triplets to show as thumbnails")
    p.set_defaults(func=_cmd_report)
