"""``ctxsim data``: import, validate and split triplet CSVs."""
from __future__ import annotations

from ctxsim.console import print_problems
from ctxsim.data.importers import import_dataset
from ctxsim.data.splits import split_files
from ctxsim.data.triplets import validate
from ctxsim.errors import EXIT_INVALID_INPUT


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
