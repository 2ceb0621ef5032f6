"""What ``ctxsim label plan|serve|export`` do; :mod:`ctxsim.labeling.cli` holds their parsers and
this module is imported only when one of them runs (it loads fastapi, uvicorn and the model stack)."""
from __future__ import annotations

import logging
import sys

from ctxsim.compare.model_uri import load_comparator
from ctxsim.console import print_table
from ctxsim.errors import EXIT_INVALID_INPUT
from ctxsim.labeling.app import create_app
from ctxsim.labeling.export import QualityRule, export_votes
from ctxsim.labeling.plan import make_plan, write_plan
from ctxsim.labeling.vote_queue import QueueSettings
from ctxsim.labeling.session import DEFAULT_ANNOTATORS, read_tokens

log = logging.getLogger("ctxsim.labeling")


def plan(args) -> int:
    comparator = None
    if args.model:
        comparator = load_comparator(args.model, device=args.device)
    df = make_plan(args.images, args.n, strategy=args.strategy, comparator=comparator,
                   pool_factor=args.pool_factor, seed=args.seed, exclude=args.exclude)
    write_plan(df, args.out)
    print(args.out)
    log.info("next: ctxsim label serve %s --images %s --db votes.sqlite", args.out, args.images)
    return 0


def serve(args) -> int:
    import uvicorn

    tokens = read_tokens(args.tokens) if args.tokens else None
    wanted = args.annotators if args.annotators is not None else (0 if tokens else DEFAULT_ANNOTATORS)
    try:
        settings = QueueSettings(control_rate=args.control_rate, control_gap=args.control_gap, max_votes=args.max_votes)
    except ValueError as err:
        return _usage_error(str(err))
    app = create_app(args.plan, args.db, images=args.images, tokens=tokens, annotators=wanted, settings=settings)
    base = f"http://{args.host}:{args.port}"
    for name, token in app.state.session.tokens().items():
        if token is None:
            log.info("%s: %s/label/TOKEN with the token given for them earlier (the database keeps only its digest)", name, base)
        else:
            print(f"{name}\t{base}/label/{token}", flush=True)
    log.info("serving %d triplets on %s (Ctrl+C stops; every acknowledged vote is already on disk)", len(app.state.session.triplets), base)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=args.access_log)
    return 0


def export(args) -> int:
    if args.min_votes < 1:
        return _usage_error(f"--min-votes must be at least 1, got {args.min_votes}")
    rule = QualityRule(min_agreement=args.min_agreement, min_consistency=args.min_consistency,
                       min_checks=args.min_checks, action=args.low_quality)
    result = export_votes(args.db, args.out, min_votes=args.min_votes, ties=args.ties, rule=rule, seed=args.seed,
                          absolute=args.absolute, report=args.report)
    print_table(result.annotators.to_dicts(), title=f"Annotators in {args.db}")
    print(result.summary())
    return 0


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID_INPUT
