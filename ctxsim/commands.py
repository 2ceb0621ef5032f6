"""What the ``ctxsim`` commands do; :mod:`ctxsim.cli` parses the arguments and loads this module only
when a command runs, so that ``ctxsim --help`` never imports the model stack."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ctxsim.atomic import write_problem, write_text_atomic
from ctxsim.compare.model_uri import load_comparator
from ctxsim.compare.ray_backend import compare_ray
from ctxsim.compare.scoring import compare_files
from ctxsim.compare.trained import RunComparator
from ctxsim.config import load_config
from ctxsim.console import print_problems, print_table
from ctxsim.data.importers import import_dataset
from ctxsim.data.splits import split_files
from ctxsim.data.triplets import validate
from ctxsim.demo import run_demo
from ctxsim.ensemble.selective import check_target
from ctxsim.errors import EXIT_INVALID_INPUT, InputError, Problem
from ctxsim.mlops.tracking import log_training
from ctxsim.reports.gallery import Thumbnailer
from ctxsim.reports.report import REPORT_FILES, build_report
from ctxsim.reports.scored import read_scored
from ctxsim.retrieval.index import build_index
from ctxsim.retrieval.page import write_search_page
from ctxsim.schema import OVERALL
from ctxsim.train.pipeline import train_run

log = logging.getLogger("ctxsim")


def check_outputs(*targets: tuple[str | None, bool]) -> None:
    """Refuse, before any work, outputs that cannot be written: (path, is a folder) pairs, None skipped."""
    problems = [Problem(str(path), reason) for path, folder in targets
                if path is not None and (reason := write_problem(path, folder=folder)) is not None]
    if problems:
        raise InputError(problems)


def data_import(args) -> int:
    for path in import_dataset(args.kind, args.src, args.out, context=args.context, seed=args.seed):
        print(path)
    return 0


def data_validate(args) -> int:
    report = validate(args.triplets, args.images, require_label=args.require_label)
    print_problems(report.problems)
    print(f"{report.n_rows} rows, {len(report.errors)} errors, {len(report.warnings)} warnings")
    return 0 if report.ok else EXIT_INVALID_INPUT


def data_split(args) -> int:
    n_fit, n_held = split_files(args.triplets, args.images, args.fit, args.heldout, args.holdout, args.seed)
    print(f"{n_fit} rows -> {args.fit}\n{n_held} rows -> {args.heldout}")
    return 0


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
        if selection.feasible:
            log.info("answering where confidence >= %.4f: %.1f%% of %d calibration rows (%s), accuracy >= %.4g "
                     "with probability %.4g", selection.threshold, 100 * selection.coverage, selection.n_calibration, where,
                     selection.target, 1 - selection.delta)
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


def index_build(args) -> int:
    if args.batch_images < 1:
        print("error: --batch-images must be at least 1", file=sys.stderr)
        return EXIT_INVALID_INPUT
    check_outputs((args.out, True))
    comparator = load_comparator(args.model, device=args.device, progress=False)
    result = build_index(comparator, args.images, args.out, model=args.model, uri=args.milvus, batch_images=args.batch_images,
                         skip_bad_images=args.skip_bad_images)
    print(f"{result.images} images: {result.added} added, {result.already} already indexed, {len(result.bad)} skipped -> {result.index}")
    for problem in result.bad:
        print(problem, file=sys.stderr)
    return 0


def search(args) -> int:
    if args.k < 1 or args.rerank < 0:
        print("error: --k must be at least 1 and --rerank at least 0", file=sys.stderr)
        return EXIT_INVALID_INPUT
    check_outputs((args.out, False), (args.html, False))
    comparator = load_comparator(args.model, device=args.device, progress=False)
    results = comparator.search(args.query, k=args.k, index=args.index, rerank=args.rerank, ranking=args.ranking)
    if args.out and str(args.out).endswith(".json"):
        write_text_atomic(args.out, json.dumps(results.to_dicts(), indent=1))
    elif args.out:
        write_text_atomic(args.out, results.write_csv())
    if args.html:
        write_search_page(results, str(Path(args.query).resolve()), args.html, Thumbnailer())
    if not args.out:
        print_table(results.to_dicts(), title=f"{args.query}: context {results['context'][0] if results.height else '-'}")
    return 0


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
