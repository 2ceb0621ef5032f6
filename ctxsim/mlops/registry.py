"""The MLflow model registry: versions, the ``champion`` alias, and run folders downloaded from it.

- :func:`register_version` registers a logged model as a new version tagged with its out-of-fold
  accuracy (``oof_accuracy`` overall, ``oof_accuracy.<context>`` per context).
- :func:`download_run` resolves ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (or
  ``models:/NAME/latest``, ``models:/m-<id>``, ``runs:/<run id>/model``) to the run folder inside
  the model, downloaded once per model version into a cache folder (``$CTXSIM_MODEL_CACHE``, default
  ``<tmp>/ctxsim-models``). Versions are immutable, so a cached version is never downloaded again;
  an alias is resolved on every call, so moving it is seen at once.
- :func:`champion`, :func:`set_champion` and :func:`record_promotion` are the registry side of
  ``ctxsim promote`` (:mod:`ctxsim.mlops.promotion`); the alias is moved with
  ``MlflowClient.set_registered_model_alias`` (no deprecated stages).

The tracking store is the one of :func:`ctxsim.mlops.tracking.tracking_uri`. mlflow is imported inside
the functions.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
from pathlib import Path

from ctxsim.compare.model_uri import (
    client,
    is_not_found,
    quiet_mlflow,
    safe_name,
    use_tracking_store,
)
from ctxsim.mlops.store import log_batch, log_datasets, use_experiment
from ctxsim.schema import OVERALL

log = logging.getLogger(__name__)

CHAMPION = "champion"
#: Tag prefix of a version's out-of-fold accuracy (``oof_accuracy``, ``oof_accuracy.<context>``).
ACCURACY_TAG = "oof_accuracy"
#: Tag prefix of what ``ctxsim promote`` decided about a version.
PROMOTION_TAG = "promotion"
#: Tag on a former champion: the version that replaced it (removed again if it becomes the champion once more).
SUPERSEDED_TAG = f"{PROMOTION_TAG}.superseded_by"


def champion(name: str):
    """The version the ``champion`` alias points at, or None (also when the model does not exist yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if is_not_found(err):
            return None
        raise


def set_champion(name: str, version: str | int) -> None:
    client().set_registered_model_alias(name, CHAMPION, str(version))
    log.info("%s: alias %s -> version %s", name, CHAMPION, version)


def lock_path(name: str) -> Path:
    """The lock file of promotions of ``name`` in the current tracking store: beside a local SQLite database
    (``<db folder>/.ctxsim-locks/``), else under the model cache (``$CTXSIM_MODEL_CACHE``, default
    ``<tmp>/ctxsim-models``), keyed by the store's URI and the model name."""
    uri = use_tracking_store()
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):].split("?", 1)[0]).resolve().parent / ".ctxsim-locks"
    else:
        folder = Path(os.environ.get("CTXSIM_MODEL_CACHE") or Path(tempfile.gettempdir()) / "ctxsim-models") / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{uri}\0{name}".encode()).hexdigest()[:24]
    return folder / f"promote-{safe_name(name).replace('/', '_')[:80]}-{key}.lock"


@contextlib.contextmanager
def promotion_lock(name: str):
    """Hold the exclusive promotion lock of ``name`` (``fcntl.flock``; released when the block ends or the
    process dies): one ``ctxsim promote`` of a model at a time on this machine and store."""
    path = lock_path(name)
    with open(path, "a+") as f:
        log.debug("waiting for the promotion lock %s", path)
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def mark_champion(name: str, version: str | int, previous: str | int | None) -> None:
    """Move the alias to ``version``, drop its stale ``superseded_by`` tag, and tag ``previous`` as superseded."""
    set_champion(name, version)
    c = client()
    mv = c.get_model_version(name, str(version))
    if SUPERSEDED_TAG in (mv.tags or {}):
        c.delete_model_version_tag(name, str(version), SUPERSEDED_TAG)
    if previous is not None and str(previous) != str(version):
        c.set_model_version_tag(name, str(previous), SUPERSEDED_TAG, str(version))


def accuracy_tags(metrics: dict, system: str = "ensemble") -> dict[str, str]:
    """``oof_accuracy`` (overall) and ``oof_accuracy.<context>`` from a run's metrics.json."""
    tags = {}
    for row in metrics.get("accuracy", {}).get(system, []):
        if row.get("accuracy") is None:
            continue
        key = ACCURACY_TAG if row["context"] == OVERALL else f"{ACCURACY_TAG}.{safe_name(row['context'])}"
        tags[key] = f"{row['accuracy']:.4f}"
        if row["context"] == OVERALL:
            low, high = (float("nan") if row.get(k) is None else row[k] for k in ("ci_low", "ci_high"))
            tags[f"{ACCURACY_TAG}.ci"] = f"[{low:.4f}, {high:.4f}]"
            tags["oof_triplets"] = str(row.get("labelled", ""))
    return tags


def register_version(name: str, model_uri: str, run_id: str | None, metrics: dict):
    """Register ``model_uri`` as a new version of ``name`` tagged with its evaluation metrics."""
    import mlflow

    use_tracking_store()
    tags = accuracy_tags(metrics) | {"validation": "out-of-fold, image-grouped"}
    if run_id:
        tags["ctxsim.training_run"] = run_id
    chosen = metrics.get("ensemble", {}).get("chosen")
    if chosen:
        tags["ensemble"] = str(chosen)
    return mlflow.register_model(model_uri, name, tags=tags)


# -- downloads ------------------------------------------------------------------------------------------


# -- promotion records ------------------------------------------------------------------------------------
def record_promotion(name: str, version: str, tags: dict[str, str], metrics: dict[str, float],
                     artifacts: list[tuple[Path, str | None]], eval_csvs=None) -> str:
    """Log a promotion decision: a ``promote NAME vN`` run (metrics, the eval data as an ``evaluation``
    input, ``artifacts`` as ``(local file or folder, artifact folder)``; missing ones are skipped), in the
    candidate's experiment, and ``promotion.*`` tags on the candidate version. Returns the run id."""
    import mlflow

    c = client()
    mv = c.get_model_version(name, str(version))
    experiment_id = None
    if mv.run_id:
        try:
            experiment_id = c.get_run(mv.run_id).info.experiment_id
        except Exception:  # noqa: BLE001 - the source run may have been deleted: use the default experiment
            experiment_id = None
    if experiment_id is None:
        experiment_id = use_experiment().experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"promote {name} v{version}") as run:
        mlflow.set_tags({"ctxsim.kind": "promotion", "ctxsim.model": name, "ctxsim.model_version": str(version)}
                        | {f"{PROMOTION_TAG}.{k}": v for k, v in tags.items()})
        log_batch(run.info.run_id, metrics)
        if eval_csvs is not None:
            with quiet_mlflow():
                log_datasets(eval_csvs, context="evaluation")
        for path, artifact_dir in artifacts:
            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_dir)
            elif Path(path).is_file():
                mlflow.log_artifact(str(path), artifact_dir)
        run_id = run.info.run_id
    for key, value in (tags | {"run_id": run_id}).items():
        c.set_model_version_tag(name, str(version), f"{PROMOTION_TAG}.{key}", str(value)[:5000])
    return run_id


def version_summary(mv) -> dict:
    """What a report says about a model version."""
    return {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id, "source": mv.source,
            "tags": dict(mv.tags or {}), "aliases": list(getattr(mv, "aliases", []) or [])}

