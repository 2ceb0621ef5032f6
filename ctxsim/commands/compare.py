"""``ctxsim compare``: score triplet CSVs with a model (trust options, Ray, a report)."""
from __future__ import annotations

import sys
from pathlib import Path

from ctxsim.commands import check_outputs, log
from ctxsim.compare.model_uri import load_comparator
from ctxsim.compare.ray_backend import compare_ray
from ctxsim.compare.scoring import compare_files
from ctxsim.compare.trained import RunComparator
from ctxsim.console import print_table
from ctxsim.ensemble.selective import check_target
from ctxsim.errors import EXIT_INVALID_INPUT, InputError, Problem
from ctxsim.reports.report import build_report
from ctxsim.reports.scored import read_scored


def _trust_problems(args) -> list[Problem]:
    """Bad ``--target-accuracy`` / ``--delta`` / ``--calibrate-on`` combinations, one problem each."""
    problems = [Problem("--target-accuracy" if "target" in m else "--delta", m)
                for m in check_target(args.target_accuracy if args.target_accuracy is not None else 1.0, args.delta)]
    if args.calibrate_on and args.target_accuracy is None:
        problems.append(Problem("--calibrate-on", "chooses the threshold of --target-accuracy: pass --target-accuracy too"))
    trust = args.target_accuracy is not None or args.explain is not None
    if trust and args.ray is not None:
        problems.append(Problem("--ray", "--target-accuracy and --explain are for single-machine runs (leave out --ray)"))
    return problems


def _configure_trust(comparator, args) -> dict:
    """Set the run's trust options; returns notes for the report."""
    if args.target_accuracy is None and args.explain is None:
        return {}
    if not isinstance(comparator, RunComparator):
        raise InputError([Problem(args.model, "--target-accuracy and --explain need a trained run (not a zero-shot backbone)")])
    comparator.set_explain(args.explain)
    notes = {}
    if args.target_accuracy is not None:
        calibration = comparator.calibrate_on(args.calibrate_on, args.images) if args.calibrate_on else None
        selection = comparator.set_target(args.target_accuracy, args.delta, calibration)
        where = ", ".join(args.calibrate_on) if args.calibrate_on else "the run's out-of-fold predictions"
        notes["selective"] = {**selection.as_dict(), "calibrated_on": where}
        for regime, s in (selection.by_regime or {"": selection}).items():
            rows = f"{regime} rows" if regime else "rows"
            if s.feasible:
                log.info("answering %s where confidence >= %.4f: %.1f%% of %d calibration %s (%s), accuracy >= %.4g with "
                         "probability %.4g", rows, s.threshold, 100 * s.coverage, s.n_calibration, rows, where,
                         selection.target, 1 - selection.delta)
            elif selection.feasible:  # the other regime answers: say which rows abstain
                log.warning("no confidence threshold reaches accuracy %.4g for %s (%d calibration rows): abstaining on them",
                            selection.target, rows, s.n_calibration)
    return notes


def compare(args) -> int:
    problems = _trust_problems(args)
    if problems:
        raise InputError(problems)
    check_outputs((args.out, False), (args.report, True))
    notes = {}
    if args.ray is not None:
        if args.resume or args.skip_bad_images:
            print("error: --resume and --skip-bad-images are for single-machine runs (leave out --ray)", file=sys.stderr)
            return EXIT_INVALID_INPUT

        tally = compare_ray(args.model, args.triplets, args.out, args.images, address=args.ray, shard_rows=args.chunk_rows,
                            margins=args.margins, device=args.device, baselines=args.baselines)
    else:
        options = {"baselines": True} if args.baselines else {}
        comparator = load_comparator(args.model, device=args.device, **options)
        notes = _configure_trust(comparator, args)
        tally = compare_files(comparator, args.triplets, args.out, args.images, chunk_rows=args.chunk_rows,
                              margins=args.margins, resume=args.resume, skip_bad_images=args.skip_bad_images)
    print_table(tally.summary(), title=f"{args.model} on {', '.join(map(str, args.triplets))}")
    if args.report:
        images = args.images or Path(args.triplets[0]).parent  # where compare resolved the relative paths
        build_report(read_scored(args.out, images), args.report, title=f"ctxsim compare: {args.model}",
                     notes={"model": args.model, "triplets": [str(t) for t in args.triplets], **notes})
        log.info("report written to %s", args.report)
    return 0
