"""Training runs in MLflow: parameters, metrics, datasets, the report and the model, after ``train_run``.

One MLflow run per training run (named after the run folder), in the experiment
``$MLFLOW_EXPERIMENT_NAME`` (default ``ctxsim``) of the tracking store ``$MLFLOW_TRACKING_URI``
(default: the SQLite database ``sqlite:///mlflow.db`` in the working directory, artifacts in
``mlruns/`` beside the database; an ``http://`` address of a real ``mlflow server`` works the same
way, and the server decides where artifacts go). It records:
- parameters: the training config flattened (``member.epochs``, ``contexts.k``, ...) and the data sizes;
- metrics: out-of-fold accuracy, its 95% interval and the labelled count, for the ensemble, every
  member and every baseline, overall (``ensemble/accuracy``) and per context
  (``ensemble/context/<name>/accuracy``);
- one nested run per member, with its training history as step metrics (``val_accuracy`` per
  epoch, epoch 0 being before training; ``train_loss`` per epoch) and its own accuracies;
- datasets: every training CSV as an MLflow dataset (with its digest), logged as a ``training`` input;
- code version: ``ctxsim.version`` and the git commit (``mlflow.source.git.commit``) when known;
- artifacts: ``metrics.json``, ``run.json`` and the run's report folder (``report/``: the out-of-fold
  validation report and predictions);
- the model: the run folder as one pyfunc model (:mod:`ctxsim.mlops.pyfunc`), registered as a new
  version of ``register`` when given (:func:`ctxsim.mlops.registry.register_version`).

mlflow is imported inside the functions: importing this module is cheap.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ctxsim import __version__
from ctxsim.compare.model_uri import quiet_mlflow, safe_name, use_tracking_store
from ctxsim.mlops.pyfunc import RUN_ARTIFACT, model_code, signature
from ctxsim.mlops.registry import register_version
from ctxsim.mlops.store import (
    MAX_PARAM_CHARS,
    as_paths,
    experiment_name,
    log_batch,
    log_datasets,
    use_experiment,
)
from ctxsim.run_folder import REPORT_DIR, RunFolder
from ctxsim.schema import OVERALL

log = logging.getLogger(__name__)

#: Name of the logged model inside the training run.
MODEL_NAME = "model"
#: Run-folder entries left out of the model (they are logged beside it as run artifacts).
NOT_IN_MODEL = (REPORT_DIR,)
#: File name of the model's code (MLflow "models from code") inside the model.
MODEL_CODE_FILE = "ctxsim_model.py"
#: Name the overall row of a per-context summary has in metrics.json.
#: Per-context statistics logged as metrics.
STATS = ("accuracy", "ci_low", "ci_high", "labelled")


# -- names --------------------------------------------------------------------------------------------


def metric_key(system: str, context: str, stat: str) -> str:
    """``ensemble/accuracy`` overall, ``ensemble/context/shoes/accuracy`` per context."""
    if context == OVERALL:
        return f"{safe_name(system)}/{stat}"
    return f"{safe_name(system)}/context/{safe_name(context).replace('/', '_')}/{stat}"


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"member.epochs": "2", ...}`` (lists joined by commas)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        else:
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            out[name] = text[:MAX_PARAM_CHARS]
    return out


def accuracy_metrics(rows: list[dict], system: str) -> dict[str, float]:
    """Metrics of one system's per-context summary rows (``metrics["accuracy"][system]``)."""
    out = {}
    for row in rows:
        for stat in STATS:
            value = row.get(stat)
            if value is not None and value == value:  # skip missing and NaN
                out[metric_key(system, row["context"], stat)] = float(value)
    return out


# -- code and data --------------------------------------------------------------------------------------
def code_tags() -> dict[str, str]:
    """ctxsim's version and, when ctxsim runs from a git checkout, its commit and whether it was dirty."""
    tags = {"ctxsim.version": __version__}
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                                   capture_output=True, text=True, timeout=10)
            tags["ctxsim.git_dirty"] = str(bool(dirty.stdout.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


# -- logging --------------------------------------------------------------------------------------------


def _member_histories(metrics: dict) -> dict[str, dict]:
    """Every member: its training history (none for the zero-shot one) and its accuracy rows."""
    members = {name.removeprefix("member:"): {"accuracy": rows, "history": {}}
               for name, rows in metrics.get("accuracy", {}).items() if name.startswith("member:")}
    for name, history in metrics.get("members", {}).items():
        members.setdefault(name, {"accuracy": [], "history": {}})["history"] = history
    return members


def log_member_run(name: str, accuracy: list[dict], history: dict) -> str:
    """A nested run for one member: its history as step metrics, its out-of-fold accuracies."""
    import mlflow

    with mlflow.start_run(run_name=f"member:{name}", nested=True) as run:
        mlflow.set_tag("ctxsim.member", name)
        steps = {"val_accuracy": list(enumerate(history.get("val_accuracy", []))),
                 "train_loss": [(epoch, v) for epoch, v in enumerate(history.get("train_loss", []), start=1)]}
        params = {k: str(history[k]) for k in ("best_epoch",) if k in history}
        values = accuracy_metrics(accuracy, "oof")
        if "best_val_accuracy" in history:
            values["best_val_accuracy"] = history["best_val_accuracy"]
        log_batch(run.info.run_id, values, params, steps)
        return run.info.run_id


def _log_report(run_dir: Path) -> None:
    """Log the run's validation report (``train_run`` writes it to ``report/``)."""
    import mlflow

    report = run_dir / REPORT_DIR
    if (report / "report.html").is_file():
        mlflow.log_artifacts(str(report), REPORT_DIR)
    else:
        log.warning("%s has no %s/: the run is tracked without a report", run_dir, REPORT_DIR)


def pip_requirements() -> list[str]:
    """ctxsim itself and its declared (non-optional) dependencies: what loading the model imports."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = [r for r in requires("ctxsim") or [] if "extra ==" not in r]
    except PackageNotFoundError:
        declared = []
    return [f"ctxsim=={__version__}", *declared]


def log_model(run_dir: str | os.PathLike, name: str = MODEL_NAME):
    """Log the run folder as a pyfunc model of the active run; returns MLflow's ``ModelInfo``.

    The model is logged from code (:func:`ctxsim.mlops.pyfunc.model_code`): nothing is pickled.
    """
    import mlflow.pyfunc

    run_dir = Path(run_dir)
    run = RunFolder(run_dir).manifest()
    with tempfile.TemporaryDirectory(prefix="ctxsim-model-") as tmp:
        staged = Path(tmp) / RUN_ARTIFACT
        shutil.copytree(run_dir, staged, ignore=lambda folder, names: [n for n in names if Path(folder) == run_dir and n in NOT_IN_MODEL])
        code = Path(tmp) / MODEL_CODE_FILE
        code.write_text(model_code())
        with quiet_mlflow():
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=str(code),
                artifacts={RUN_ARTIFACT: str(staged)},
                signature=signature(),
                pip_requirements=pip_requirements(),  # given, so MLflow neither infers nor installs anything
                metadata={"ctxsim_version": run.ctxsim, "backbone": run.backbone,
                          "members": run.members, "contexts": run.contexts},
            )


def log_training(run_dir: str | os.PathLike, metrics: dict, cfg, csvs, register: str | None = None, *,
                 run_name: str | None = None) -> tuple[str, str | None]:
    """Track a finished training run (see the module docstring); returns ``(mlflow run id, model version or None)``.

    ``cfg`` is the :class:`ctxsim.config.TrainConfig` of the run (or its dict), ``csvs`` its training CSVs.
    With ``register``, the model becomes a new
    version of that registered model, tagged with its out-of-fold accuracy overall and per context.
    """
    import mlflow

    run_dir = Path(run_dir)
    config = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    uri = use_tracking_store()
    use_experiment()
    params = flatten(config) | {
        "data.triplets": ",".join(str(p) for p in as_paths(csvs))[:MAX_PARAM_CHARS],
        "data.n_triplets": str(metrics.get("n_triplets")), "data.n_images": str(metrics.get("n_images")),
        "ensemble.chosen": str(metrics.get("ensemble", {}).get("chosen")),
    }
    values = {k: v for system, rows in metrics.get("accuracy", {}).items() for k, v in accuracy_metrics(rows, system).items()}
    values |= {f"ensemble/cv_accuracy/{safe_name(k)}": v for k, v in metrics.get("ensemble", {}).get("cv_accuracy", {}).items()
               if v is not None and v == v}
    for t in metrics.get("selective", {}).get("targets", []):  # expected coverage of selective answers
        values[f"selective/coverage_at_{t['target']:g}"] = t["coverage"]
    if "seconds" in metrics:
        values["train_seconds"] = metrics["seconds"]

    with mlflow.start_run(run_name=run_name or run_dir.name) as run:
        run_id = run.info.run_id
        mlflow.set_tags(code_tags() | {"ctxsim.run_dir": str(run_dir.resolve()), "ctxsim.backbone": str(config.get("backbone"))})
        log_batch(run_id, values, params)
        with quiet_mlflow():
            digests = log_datasets(csvs)
        mlflow.set_tag("ctxsim.data_digests", ",".join(digests))
        for name, member in _member_histories(metrics).items():
            log_member_run(name, member["accuracy"], member["history"])
        folder = RunFolder(run_dir)
        for artifact in (folder.metrics_file, folder.manifest_file):
            if artifact.is_file():
                mlflow.log_artifact(str(artifact))
        _log_report(run_dir)
        model = log_model(run_dir)
    log.info("tracked run %s in %s (experiment %s)", run_id, uri, experiment_name())
    version = None
    if register:
        version = register_version(register, model.model_uri, run_id, metrics).version
        log.info("registered %s version %s", register, version)
    return run_id, None if version is None else str(version)


def track_run(run_dir: str | os.PathLike, csvs, register: str | None = None) -> tuple[str, str | None]:
    """:func:`log_training` for a finished run folder: its config and metrics are read from the folder
    (``run.json``, ``metrics.json``), e.g. to track a run trained with ``--no-track`` later."""
    folder = RunFolder(run_dir)
    config = folder.manifest().config
    metrics = json.loads(folder.metrics_file.read_text())
    return log_training(run_dir, metrics, config, csvs, register)
