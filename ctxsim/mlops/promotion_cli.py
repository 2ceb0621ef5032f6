"""The parser of ``ctxsim promote`` (light: its handler, :func:`ctxsim.mlops.promotion.promote_command`,
is imported only when the command runs)."""
from __future__ import annotations

import argparse

from ctxsim.errors import EXIT_INVALID_INPUT
from ctxsim.mlops.gate import (
    DEFAULT_ALPHA,
    DEFAULT_EPSILON,
    DEFAULT_TOLERANCE,
    EXIT_REFUSED,
    PROMOTE_DESCRIPTION,
)


def add_promote_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``promote`` on the ``ctxsim`` command's subparsers."""
    p = subparsers.add_parser("promote", help="move the champion alias to a registered version only if it passes the gate",
                              description=PROMOTE_DESCRIPTION, epilog=f"exit codes: 0 promoted (or would be, with --dry-run), "
                              f"{EXIT_REFUSED} refused, {EXIT_INVALID_INPUT} bad input")
    p.add_argument("name", help="registered model name")
    p.add_argument("--candidate", required=True, metavar="VERSION", help="the version to promote (a number, or latest)")
    p.add_argument("--eval", required=True, nargs="+", metavar="CSV", help="held-out labelled triplet CSVs")
    p.add_argument("--images", help="root of relative image paths (default: each CSV's folder)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"one-sided McNemar level (default {DEFAULT_ALPHA})")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help=f"largest per-context accuracy loss (default {DEFAULT_TOLERANCE})")
    p.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help=f"largest overall accuracy loss (default {DEFAULT_EPSILON})")
    p.add_argument("--dry-run", action="store_true", help="decide and print; record nothing, move nothing")
    p.add_argument("--no-report", action="store_true", help="skip the candidate's HTML report")
    p.add_argument("--out", help="keep the comparison files (promotion.json/.md, scored CSVs, report) in this folder")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler="ctxsim.mlops.promotion:promote_command")
