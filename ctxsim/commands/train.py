"""``ctxsim train`` and ``ctxsim demo``."""
from __future__ import annotations

import sys

from ctxsim.commands import check_outputs, log
from ctxsim.config import load_config
from ctxsim.console import print_table
from ctxsim.demo import run_demo
from ctxsim.errors import EXIT_INVALID_INPUT
from ctxsim.mlops.tracking import log_training
from ctxsim.schema import OVERALL
from ctxsim.train.pipeline import train_run


def train(args) -> int:
    overrides = list(args.set or [])
    for flag, key in TRAIN_FLAGS.items():
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    try:
        cfg = load_config(args.config, overrides)
    except (ValueError, OSError) as err:
        print(f"error: config: {err}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    if args.register and args.no_track:
        print("error: --register needs tracking (leave out --no-track)", file=sys.stderr)
        return EXIT_INVALID_INPUT
    check_outputs((args.out, True))
    metrics = train_run(args.triplets, args.out, args.images, cfg, device=args.device, ray=args.ray)
    rows = [{"model": name, **row} for name, summary in metrics["accuracy"].items() for row in summary if row["context"] == OVERALL]
    print_table(rows, ["model", "labelled", "accuracy", "ci_low", "ci_high", "majority_accuracy", "vote_agreement"],
                title=f"Out-of-fold accuracy (image-grouped) — {metrics['ensemble']['note']}")
    coverage = [{"target": s["target"], "delta": s["delta"], "threshold": s["threshold"], "coverage": s["coverage"],
                 "accuracy": s["accuracy"], "lower_bound": s["lower_bound"]} for s in metrics["selective"]["targets"]]
    print_table(coverage, title="Selective answers: expected coverage at each target accuracy (out-of-fold calibration; "
                                "compare --target-accuracy)")
    if not args.no_track:
        run_id, version = log_training(args.out, metrics, cfg, args.triplets, args.register)
        log.info("MLflow run %s%s", run_id, f"; registered {args.register} version {version}" if version else "")
    print(args.out)
    return 0


#: Shortcut flags of ``ctxsim train`` and the config keys they set.
TRAIN_FLAGS = {"backbone": "backbone", "folds": "folds", "seed": "seed", "member_kind": "member.kind",
                "epochs": "member.epochs", "contexts_mode": "contexts.mode", "k": "contexts.k", "stacker": "ensemble.stacker"}


def demo(args) -> int:
    run_demo(data=args.data, out=args.out, device=args.device)
    return 0
