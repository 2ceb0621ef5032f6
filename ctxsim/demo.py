"""``ctxsim demo``: the whole pipeline on the shared human-judgement data.

1. import both data sets (shoes: zappos, materials) as triplet CSVs with declared contexts;
2. hold out a quarter of each set's images: the test triplets name only images never trained on;
3. zero-shot agreement of EfficientNet-Lite0 and raw pixels on the held-out triplets;
4. train contexts, members and the ensemble on the rest;
5. compare the run on the held-out triplets with every member and baseline, and write the report;
6. log the run to MLflow, register it and promote it through the gate.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ctxsim.compare.model_uri import load_comparator
from ctxsim.compare.scoring import compare_files
from ctxsim.config import TrainConfig
from ctxsim.console import print_table
from ctxsim.data.importers import import_dataset
from ctxsim.data.splits import split_files
from ctxsim.errors import InputError, Problem
from ctxsim.mlops.promotion import REFUSED, promote
from ctxsim.mlops.tracking import log_training
from ctxsim.reports.report import build_report
from ctxsim.reports.scored import read_scored
from ctxsim.schema import OVERALL
from ctxsim.train.pipeline import train_run

log = logging.getLogger(__name__)

#: Data sets of the demo: importer kind -> declared context name.
DATASETS = {"zappos": "shoes", "materials": "materials"}
ZERO_SHOT_MODELS = ("backbone:efficientnet_lite0", "backbone:pixels")
MODEL_NAME = "ctxsim-demo"


def data_dir(data: str | os.PathLike | None = None) -> Path:
    """``data``, else ``$CTXSIM_DATA``, else ``../shared/data`` beside the checkout."""
    if data:
        return Path(data)
    if "CTXSIM_DATA" in os.environ:
        return Path(os.environ["CTXSIM_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def import_all(data: Path, out: Path) -> dict[str, list[Path]]:
    if not data.is_dir():
        raise InputError([Problem(str(data), "data folder not found (set CTXSIM_DATA or pass --data)")])
    return {kind: import_dataset(kind, data / kind, out / kind, context=ctx) for kind, ctx in DATASETS.items()}


def split_all(imported: dict[str, list[Path]], out: Path) -> tuple[list[Path], list[Path]]:
    fit, heldout = [], []
    for kind, csvs in imported.items():
        # All split CSVs in one folder: their image paths resolve from it, and so do compare's outputs.
        fit.append(out / f"{kind}-fit.csv")
        heldout.append(out / f"{kind}-heldout.csv")
        n_fit, n_held = split_files(csvs, None, fit[-1], heldout[-1])
        log.info("%s: %d training triplets, %d held-out triplets over held-out images", kind, n_fit, n_held)
    return fit, heldout


def _overall(rows: list[dict]) -> dict:
    return next(r for r in rows if r["context"] == OVERALL)


def run_demo(data=None, out="demo_out", device: str = "cpu", register: bool = True) -> dict:
    out = Path(out)
    imported = import_all(data_dir(data), out / "data")
    fit, heldout = split_all(imported, out / "data")

    zero_shot = []
    for model in ZERO_SHOT_MODELS:
        comparator = load_comparator(model, device=device)
        for kind, csv in zip(imported, heldout):
            tally = compare_files(comparator, [csv], out / "scored" / f"{kind}-{model.split(':')[-1]}.csv")
            zero_shot.append({"data": kind, "model": model, **{k: v for k, v in _overall(tally.summary()).items() if k != "context"}})
    print_table(zero_shot, ["data", "model", "rows", "accuracy", "ci_low", "ci_high", "majority_accuracy", "vote_agreement", "vote_ceiling"],
                title="Zero-shot agreement with people on held-out images")

    cfg = TrainConfig()
    run_dir = out / "run"
    metrics = train_run(fit, run_dir, cfg=cfg, device=device)

    scored_csv = out / "scored" / "heldout-run.csv"
    comparator = load_comparator(str(run_dir), device=device, baselines=True)
    compare_files(comparator, heldout, scored_csv, margins=True)
    report = build_report(read_scored(scored_csv, out / "data"), out / "report", title="ctxsim demo: held-out images",
                          notes={"combiner": metrics["ensemble"]["note"],
                                 "test": "triplets whose three images were all held out of training"})
    table = _heldout_table(report)
    print_table(table, ["model", *[c for c in table[0] if c != "model"]], title="Accuracy on held-out images (triplets over images never trained on)")
    result = {"zero_shot": zero_shot, "heldout": table, "run": str(run_dir), "report": str(out / "report" / "report.html")}
    if register:
        result["registry"] = register_and_promote(run_dir, metrics, cfg, fit, heldout, out)
    return result


def _heldout_table(report: dict) -> list[dict]:
    """One row per model: accuracy per context and overall, from report.json's accuracy rows."""
    rows: dict[str, dict] = {}
    for r in report["accuracy"]:
        rows.setdefault(r["model"], {"model": r["model"]})[r["context"]] = r.get("accuracy")
    return list(rows.values())


def register_and_promote(run_dir: Path, metrics: dict, cfg, fit: list[Path], heldout: list[Path], out: Path) -> dict:
    """Track the run in MLflow (default store: ./mlflow.db), register it and put it through the gate;
    when it becomes champion, check that ``models:/NAME@champion`` scores exactly like the run folder."""
    import polars as pl

    run_id, version = log_training(run_dir, metrics, cfg, fit, register=MODEL_NAME)
    result = promote(MODEL_NAME, version, heldout, out=out / "promotion")
    log.info("%s version %s: %s", MODEL_NAME, version, result.decision)
    summary = {"mlflow_run": run_id, "version": version, "decision": result.decision, "promotion": str(out / "promotion")}
    if result.decision != REFUSED:
        champion_csv = out / "scored" / "heldout-champion.csv"
        compare_files(load_comparator(f"models:/{MODEL_NAME}@champion"), heldout, champion_csv)
        same = pl.read_csv(champion_csv)["p_a"].equals(pl.read_csv(out / "scored" / "heldout-run.csv")["p_a"])
        summary["champion_matches_run"] = same
        log.info("models:/%s@champion %s the run folder on the held-out triplets", MODEL_NAME, "scores exactly like" if same else "DIFFERS FROM")
    print(f"registry: {MODEL_NAME} version {version} -> {result.decision}")
    return summary
