"""The ``ctxsim`` command line: the parsers of every command, and :func:`main`.

Building the parsers imports only argparse and light ctxsim modules; each command names its handler
as ``"module:function"`` and :func:`main` imports that module when the command runs. So ``ctxsim --help``
answers at once, and a command pays only for the libraries it uses (torch, mlflow, ray, fastapi).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ctxsim import __version__
from ctxsim.console import print_problems, setup_logging
from ctxsim.errors import EXIT_INVALID_INPUT, ImageError, InputError, ModelNotFoundError
from ctxsim.labeling.cli import add_label_commands
from ctxsim.mlops.promotion_cli import add_promote_command
from ctxsim.reports.cli import add_report_command
from ctxsim.schema import DEFAULT_DELTA


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
    p.set_defaults(handler="ctxsim.commands.data:data_import")
    p = data.add_parser("validate", help="check triplet CSVs and their images; exit 2 when invalid")
    p.add_argument("triplets", nargs="+")
    p.add_argument("--images", help="root of relative image paths (default: each CSV's folder)")
    p.add_argument("--require-label", action="store_true", help="the label column must be present")
    p.set_defaults(handler="ctxsim.commands.data:data_validate")
    p = data.add_parser("split", help="hold out a share of the images: rows over kept images vs rows over held-out images")
    p.add_argument("triplets", nargs="+")
    p.add_argument("--images", help="root of relative image paths (default: each CSV's folder)")
    p.add_argument("--fit", required=True, help="CSV of rows whose images are all kept")
    p.add_argument("--heldout", required=True, help="CSV of rows whose images are all held out")
    p.add_argument("--holdout", type=float, default=0.25, help="share of images held out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler="ctxsim.commands.data:data_split")

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
    p.add_argument("--target-accuracy", type=float, metavar="ACC",
                   help="a run: abstain (pred=abstain) where not confident enough for accuracy >= ACC on answered rows")
    p.add_argument("--delta", type=float, default=DEFAULT_DELTA,
                   help="the guarantee holds with probability 1 - DELTA (default %(default)s)")
    p.add_argument("--calibrate-on", action="append", metavar="CSV",
                   help="choose the threshold on these labelled triplets instead of the run's out-of-fold predictions")
    p.add_argument("--explain", nargs="?", const="top", choices=["top", "full"],
                   help="a run: add why (the members and contexts that moved p_a most); =full adds contrib_<feature> columns")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out rows naming unreadable images (listed in OUT.bad-images.txt) instead of exit 2")
    _add_ray_flag(p, "shard the CSVs over a Ray cluster (pip install ctxsim[ray])")
    p.set_defaults(handler="ctxsim.commands.compare:compare")

    index = sub.add_parser("index", help="catalogue indexes for top-k search").add_subparsers(dest="index_command", required=True)
    p = index.add_parser("build", help="embed every image under a folder with every member into a vector index (adds only new images)")
    p.add_argument("model", help="backbone:NAME, a run folder, or models:/NAME@ALIAS")
    p.add_argument("--images", required=True, help="catalogue folder: every image file under it is indexed")
    p.add_argument("--out", default="ctxsim-index", help="index folder (default ./ctxsim-index); building into it again adds new images")
    p.add_argument("--milvus", metavar="URI", help="a Milvus server (http://host:19530) instead of the embedded Milvus Lite file")
    p.add_argument("--batch-images", type=int, default=512, help="images embedded and committed per batch")
    p.add_argument("--skip-bad-images", action="store_true", help="leave out unreadable images (listed in OUT.bad-images.txt) instead of exit 2")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler="ctxsim.commands.retrieval:index_build")

    p = sub.add_parser("search", help="top-k catalogue images closest to a query, in its context, re-ranked by the ensemble")
    p.add_argument("model", help="the model the index was built with")
    p.add_argument("--index", required=True, help="index folder (ctxsim index build)")
    p.add_argument("--query", required=True, help="the reference image")
    p.add_argument("--k", type=int, default=20, help="results")
    p.add_argument("--rerank", type=int, default=50, help="retrieved candidates re-ranked pairwise by the ensemble (0: retrieval order)")
    p.add_argument("--ranking", choices=["borda", "copeland"], default="borda", help="how pairwise preferences become a ranking")
    p.add_argument("--out", help="write the results as CSV, or JSON when it ends in .json")
    p.add_argument("--html", help="write a page of thumbnails here")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler="ctxsim.commands.retrieval:search")

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
    p.set_defaults(handler="ctxsim.commands.train:train")

    p = sub.add_parser("demo", help="the whole pipeline on the shared data")
    p.add_argument("--data", help="folder with zappos/ and materials/ (default: $CTXSIM_DATA or ../shared/data)")
    p.add_argument("--out", default="demo_out", help="folder for everything the demo writes")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler="ctxsim.commands.train:demo")
    add_report_command(sub)
    add_label_commands(sub)
    add_promote_command(sub)
    return parser


def handler_of(args: argparse.Namespace):
    """The function a parsed command runs (its module is imported now, not when the parser is built)."""
    module, _, function = args.handler.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return handler_of(args)(args)
    except InputError as err:
        print_problems(err.problems)
        return EXIT_INVALID_INPUT
    except ImageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except ModelNotFoundError as err:  # a model that is not there is bad input, like a bad CSV
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # full disk, read-only place...: one line naming the file; outputs are atomic
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_INVALID_INPUT


if __name__ == "__main__":
    sys.exit(main())
