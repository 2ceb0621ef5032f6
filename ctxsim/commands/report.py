"""``ctxsim report``: HTML, JSON and Markdown report of a scored CSV."""
from __future__ import annotations

from pathlib import Path

from ctxsim.console import print_table
from ctxsim.reports.report import REPORT_FILES, build_report
from ctxsim.reports.scored import read_scored
from ctxsim.schema import OVERALL


def report(args) -> int:
    scored = read_scored(args.scored, args.images)
    title = args.title or f"ctxsim report: {Path(args.scored).name}"
    size = {} if args.gallery is None else {"gallery_size": args.gallery}  # None: build_report's default
    report = build_report(scored, args.out, title=title, source=str(args.scored), **size)
    for message in report["messages"]:
        print(f"note: {message}")
    overall = [r for r in report["accuracy"] if r["context"] == OVERALL]
    if report["labelled"]:
        print_table(overall, ["model", "kind", "labelled", "accuracy", "ci_low", "ci_high", "vote_agreement", "brier"], title=title)
    else:
        print_table(report["counts"], title=title)
    for name in REPORT_FILES.values():
        print(Path(args.out) / name)
    return 0
