"""``ctxsim label plan|serve|export``. Only argparse at import: the commands import what they need,
so ``ctxsim --help`` stays fast and never loads fastapi or torch."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("ctxsim.labeling")

# Defaults repeated here (not imported) so that building the parser imports nothing heavy;
# tests check they match the library's.
DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_POOL_FACTOR = 10
DEFAULT_CONTROL_RATE = 0.1
DEFAULT_CONTROL_GAP = 3
DEFAULT_MIN_AGREEMENT = 0.6
DEFAULT_MIN_CONSISTENCY = 0.7
DEFAULT_MIN_CHECKS = 5
STRATEGIES = ("random", "uncertain", "disagreement", "balanced", "out-of-context", "abstained")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def add_label_commands(subparsers) -> None:
    """Register ``label plan|serve|export`` on the ``ctxsim`` subcommand parsers."""
    label = subparsers.add_parser("label", help="collect 2AFC judgements: plan, serve, export").add_subparsers(
        dest="label_command", required=True)

    p = label.add_parser("plan", help="choose the triplets to judge next; writes a triplet CSV")
    p.add_argument("--images", required=True, help="image root: every image under it (grouped by top-level folder)")
    p.add_argument("--n", type=_positive_int, required=True, help="number of triplets")
    p.add_argument("--out", required=True, help="plan CSV to write (paths relative to --images)")
    p.add_argument("--strategy", choices=STRATEGIES, default="random",
                   help="random; uncertain (p_a near 0.5) and disagreement (members split) need --model; "
                        "out-of-context (references that fit no context) and abstained (what the model would abstain on) "
                        "need --model RUN; balanced evens out contexts (the model's routing, else top-level folders)")
    p.add_argument("--model", help="backbone:NAME, a run folder or models:/NAME@ALIAS")
    p.add_argument("--pool-factor", type=_positive_int, default=DEFAULT_POOL_FACTOR,
                   help="the model ranks a random pool this many times the plan size")
    p.add_argument("--exclude", action="append", default=[], metavar="CSV",
                   help="labelled triplet CSV (paths relative to --images): not planned again, and counted by balanced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device for --model")
    p.set_defaults(handler="ctxsim.labeling.commands:plan")

    p = label.add_parser("serve", help="serve the 2AFC page for a plan; votes go to SQLite")
    p.add_argument("plan", help="plan CSV (from `label plan`, or any triplet CSV)")
    p.add_argument("--db", required=True, help="SQLite vote database (created if missing; reused to carry on)")
    p.add_argument("--images", help="image root of the plan (default: the plan's folder; use plan's --images)")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--annotators", type=int, help="make sure this many annotators exist (new ones get random tokens); "
                                                  "default 1 unless --tokens is given")
    p.add_argument("--tokens", help="CSV with columns name,token: annotators with tokens of your choosing")
    p.add_argument("--control-rate", type=float, default=DEFAULT_CONTROL_RATE,
                   help="share of triplets shown again, swapped, to measure consistency")
    p.add_argument("--control-gap", type=int, default=DEFAULT_CONTROL_GAP, help="answers between a control and its repeat")
    p.add_argument("--max-votes", type=_positive_int, help="stop serving a triplet once it has this many votes")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(handler="ctxsim.labeling.commands:serve")

    p = label.add_parser("export", help="aggregate votes into a labelled triplet CSV and rate annotators")
    p.add_argument("--db", required=True, help="SQLite vote database of `label serve`")
    p.add_argument("--out", required=True, help="triplet CSV to write: ref,a,b,label,votes_a,votes_b,context,id")
    p.add_argument("--min-votes", type=int, default=1, help="leave out triplets with fewer votes")
    p.add_argument("--ties", choices=("drop", "keep"), default="drop",
                   help="equal votes: drop the triplet, or keep it with a seeded coin-flip label")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help="lowest share of votes siding with the other annotators' majority")
    p.add_argument("--min-consistency", type=float, default=DEFAULT_MIN_CONSISTENCY,
                   help="lowest share of control repeats answered like the first showing")
    p.add_argument("--min-checks", type=int, default=DEFAULT_MIN_CHECKS,
                   help="comparisons needed before an annotator is judged")
    p.add_argument("--low-quality", choices=("drop", "flag"), default="drop",
                   help="drop low-quality annotators' votes, or only flag them in the report")
    p.add_argument("--report", help="also write the annotator table to this CSV")
    p.add_argument("--absolute", action="store_true", help="write absolute image paths (default: relative to the image root)")
    p.add_argument("--seed", type=int, default=0, help="seed of the tie coin (--ties keep)")
    p.set_defaults(handler="ctxsim.labeling.commands:export")
