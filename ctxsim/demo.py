"""``ctxsim demo``: the whole pipeline on the shared human-judgement data."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ctxsim.errors import InputError, Problem

log = logging.getLogger(__name__)

#: Data sets of the demo: importer kind -> declared context name.
DATASETS = {"zappos": "shoes", "materials": "materials"}
ZERO_SHOT_MODELS = ("backbone:efficientnet_lite0", "backbone:pixels")


def data_dir(data: str | os.PathLike | None = None) -> Path:
    """``data``, else ``$CTXSIM_DATA``, else ``../shared/data`` beside the checkout."""
    if data:
        return Path(data)
    if "CTXSIM_DATA" in os.environ:
        return Path(os.environ["CTXSIM_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def import_all(data: Path, out: Path) -> dict[str, list[Path]]:
    from ctxsim.importers import import_dataset

    if not data.is_dir():
        raise InputError([Problem(str(data), "data folder not found (set CTXSIM_DATA or pass --data)")])
    return {kind: import_dataset(kind, data / kind, out / kind, context=ctx) for kind, ctx in DATASETS.items()}


def run_demo(data=None, out="demo_out", device: str = "cpu") -> list[dict]:
    from ctxsim.comparator import load_comparator
    from ctxsim.console import print_table
    from ctxsim.scoring import compare_files

    out = Path(out)
    imported = import_all(data_dir(data), out / "data")
    rows = []
    for model in ZERO_SHOT_MODELS:
        comparator = load_comparator(model, device=device)
        for kind, csvs in imported.items():
            tally = compare_files(comparator, csvs, out / "scored" / f"{kind}-{model.split(':')[-1]}.csv")
            overall = tally.summary()[-1]
            rows.append({"data": kind, "model": model, **{k: v for k, v in overall.items() if k != "context"}})
    print_table(rows, ["data", "model", "rows", "accuracy", "ci_low", "ci_high", "majority_accuracy", "vote_agreement", "vote_ceiling"],
                title="Zero-shot agreement with human judgements")
    return rows
