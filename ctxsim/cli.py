"""The ``ctxsim`` command. Heavy libraries (torch, mlflow, ray) are imported inside the commands,
so ``ctxsim --help`` answers at once."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ctxsim import __version__
from ctxsim.errors import EXIT_INVALID_INPUT, ImageError, InputError
from ctxsim.labeling.cli import add_label_commands
from ctxsim.promotion import add_promote_command
from ctxsim.reports.cli import add_report_command

log = logging.getLogger("ctxsim")

#: How many problems are printed before the rest are only counted.
MAX_PRINTED_PROBLEMS = 200


def _cmd_data_import(args) -> int:
    from ctxsim.importers import import_dataset

    for path in import_dataset(args.kind, args.src, args.out, context=args.context, seed=args.seed):
        print(path)
    return 0


def _cmd_data_validate(args) -> int:
    from ctxsim.triplets import validate

    report = validate(args.triplets, args.images, require_label=args.require_label)
    _print_problems(report.problems)
    print(f"{report.n_rows} rows, {len(report.errors)} errors, {len(report.warnings)} warnings")
    return 0 if report.ok else EXIT_INVALID_INPUT


def _cmd_data_split(args) -> int:
    from ctxsim.splits import split_files

    n_fit, n_held = split_files(args.triplets, args.images, args.fit, args.heldout, args.holdout, args.seed)
    print(f"{n_fit} rows -> {args.fit}\n{n_held} rows -> {args.heldout}")
    return 0


def _cmd_compare(args) -> int:
    from ctxsim.comparator import load_comparator
    from ctxsim.console import print_table
    from ctxsim.scoring import compare_files

    if args.ray is not None:
        if args.resume:
            print("error: --resume is for single-machine runs (leave out --ray)", file=sys.stderr)
            return EXIT_INVALID_INPUT
        from ctxsim.distributed import compare_ray

        tally = compare_ray(args.model, args.triplets, args.out, args.images, address=args.ray, shard_rows=args.chunk_rows,
                            margins=args.margins, device=args.device, baselines=args.baselines)
    else:
        options = {"baselines": True} if args.baselines else {}
        comparator = load_comparator(args.model, device=args.device, **options)
        tally = compare_files(comparator, args.triplets, args.out, args.images, chunk_rows=args.chunk_rows,
                              margins=args.margins, resume=args.resume)
    print_table(tally.summary(), title=f"{args.model} on {', '.join(map(str, args.triplets))}")
    if args.report:
        from ctxsim.reports.report import build_report
        from ctxsim.reports.scored import read_scored

        images = args.images or Path(args.triplets[0]).parent  # where compare resolved the relative paths
        build_report(read_scored(args.out, images), args.report, title=f"ctxsim compare: {args.model}",
                     notes={"model": args.model, "triplets": [str(t) for t in args.triplets]})
        log.info("report written to %s", args.report)
    return 0


def _cmd_train(args) -> int:
    from ctxsim.config import load_config
    from ctxsim.console import print_table
    from ctxsim.train import train_run

    overrides = list(args.set or [])
    for flag, key in _TRAIN_FLAGS.items():
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
    metrics = train_run(args.triplets, args.out, args.images, cfg, device=args.device, ray=args.ray)
    rows = [{"model": name, **row} for name, summary in metrics["accuracy"].items() for row in summary if row["context"] == "(all)"]
    print_table(rows, ["model", "labelled", "accuracy", "ci_low", "ci_high", "majority_accuracy", "vote_agreement"],
                title=f"Out-of-fold accuracy (image-grouped) — {metrics['ensemble']['note']}")
    if not args.no_track:
        from ctxsim.tracking import log_training

        run_id, version = log_training(args.out, metrics, cfg, args.triplets, args.register)
        log.info("MLflow run %s%s", run_id, f"; registered {args.register} version {version}" if version else "")
    print(args.out)
    return 0


#: Shortcut flags of ``ctxsim train`` and the config keys they set.
_TRAIN_FLAGS = {"backbone": "backbone", "folds": "folds", "seed": "seed", "member_kind": "member.kind",
                "epochs": "member.epochs", "contexts_mode": "contexts.mode", "k": "contexts.k", "stacker": "ensemble.stacker"}


def _cmd_demo(args) -> int:
    from ctxsim.demo import run_demo

    run_demo(data=args.data, out=args.out, device=args.device)
    return 0


def _print_problems(problems) -> None:
    for p in problems[:MAX_PRINTED_PROBLEMS]:
        print(p, file=sys.stderr)
    if len(problems) > MAX_PRINTED_PROBLEMS:
        print(f"... and {len(problems) - MAX_PRINTED_PROBLEMS} more problems", file=sys.stderr)


def _add_ray_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help=f"{what}; ADDRESS of the cluster, or none: the running one, else a local one")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxsim", description="Which of two images is closer to a reference, judged in context.")
    parser.add_argument("--version", action="version", version=f"ctxsim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (to stderr)")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="import and validate triplet data").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("import", help="convert an upstream data set into triplet CSVs")
    p.add_argument("kind", choices=["zappos", "materials"])
    p.add_argument("src", help="the upstream data folder")
    p.add_argument("--out", required=True, help="folder for the CSVs and images/")
    p.add_argument("--context", help="fill the context column with this name")
    p.add_argument("--seed", type=int, default=0, help="seed of the candidate-order shuffle")
    p.set_defaults(func=_cmd_data_import)
    p = data.add_parser("validate", help="check triplet CSVs and their images; exit 2 when invalid")
    p.add_argument("triplets", nargs="+")
    p.add_argument("--images", help="root of relative image paths (default: each CSV's folder)")
    p.add_argument("--require-label", action="store_true", help="the label column must be present")
    p.set_defaults(func=_cmd_data_validate)
    p = data.add_parser("split", help="hold out a share of the images: rows over kept images vs rows over held-out images")
    p.add_argument("triplets", nargs="+")
    p.add_argument("--images", help="root of relative image paths (default: each CSV's folder)")
    p.add_argument("--fit", required=True, help="CSV of rows whose images are all kept")
    p.add_argument("--heldout", required=True, help="CSV of rows whose images are all held out")
    p.add_argument("--holdout", type=float, default=0.25, help="share of images held out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_data_split)

    p = sub.add_parser("compare", help="score triplet CSVs with a model")
    p.add_argument("model", help="backbone:NAME, a run folder, or models:/NAME@ALIAS")
    p.add_argument("triplets", nargs="+")
    p.add_argument("--images", help="root of relative image paths (default: each CSV's folder)")
    p.add_argument("--out", required=True, help="scored CSV to write")
    p.add_argument("--margins", action="store_true", help="add a margin_<member> column per member")
    p.add_argument("--chunk-rows", type=int, default=100_000, help="rows scored per chunk (memory stays flat)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--baselines", action="store_true", help="a run: add p_a_<combiner> for every baseline ensemble")
    p.add_argument("--report", metavar="DIR", help="also write the HTML/JSON/Markdown report of the scored rows here")
    p.add_argument("--resume", action="store_true", help="go on with an interrupted run from its last complete chunk")
    _add_ray_flag(p, "shard the CSVs over a Ray cluster (pip install ctxsim[ray])")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("train", help="train contexts, members and the ensemble into a run folder")
    p.add_argument("--triplets", nargs="+", required=True, help="labelled triplet CSVs")
    p.add_argument("--images", help="root of relative image paths (default: each CSV's folder)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--config", help="TOML file with training settings")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. member.epochs=10")
    p.add_argument("--backbone", help="backbone name (default efficientnet_lite0)")
    p.add_argument("--member-kind", choices=["head", "lora"], help="members: MLP heads (CPU) or LoRA adapters")
    p.add_argument("--epochs", type=int)
    p.add_argument("--folds", type=int, help="image folds for out-of-fold margins")
    p.add_argument("--contexts-mode", choices=["auto", "declared", "discovered"])
    p.add_argument("--k", type=int, help="number of discovered contexts (default: chosen automatically)")
    p.add_argument("--stacker", choices=["lightgbm", "logistic"])
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--register", metavar="NAME", help="register the ensemble as a new version of this MLflow model")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow ($MLFLOW_TRACKING_URI, default sqlite:///mlflow.db)")
    _add_ray_flag(p, "fit members as Ray tasks, one per member and fold (pip install ctxsim[ray])")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="the whole pipeline on the shared data")
    p.add_argument("--data", help="folder with zappos/ and materials/ (default: $CTXSIM_DATA or ../shared/data)")
    p.add_argument("--out", default="demo_out", help="folder for everything the demo writes")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_demo)
    add_report_command(sub)
    add_label_commands(sub)
    add_promote_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ctxsim.console import setup_logging

    setup_logging(args.verbose)
    try:
        return args.func(args)
    except InputError as err:
        _print_problems(err.problems)
        return EXIT_INVALID_INPUT
    except ImageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
