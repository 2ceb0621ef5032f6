"""The MLflow model registry: versions, the ``champion`` alias, and run folders downloaded from it.

- :func:`register_version` registers a logged model as a new version tagged with its out-of-fold
  accuracy (``oof_accuracy`` overall, ``oof_accuracy.<context>`` per context).
- :func:`download_run` resolves ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (or
  ``models:/NAME/latest``, ``models:/m-<id>``, ``runs:/<run id>/model``) to the run folder inside
  the model, downloaded once per model version into a cache folder (``$CTXSIM_MODEL_CACHE``, default
  ``<tmp>/ctxsim-models``). Versions are immutable, so a cached version is never downloaded again;
  an alias is resolved on every call, so moving it is seen at once.
- :func:`champion`, :func:`set_champion` and :func:`record_promotion` are the registry side of
  ``ctxsim promote`` (:mod:`ctxsim.promotion`); the alias is moved with
  ``MlflowClient.set_registered_model_alias`` (no deprecated stages).

The tracking store is the one of :func:`ctxsim.tracking.tracking_uri`. mlflow is imported inside
the functions.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ctxsim.tracking import OVERALL, quiet_mlflow, safe_name, use_experiment, use_tracking_store

log = logging.getLogger(__name__)

CHAMPION = "champion"
#: Tag prefix of a version's out-of-fold accuracy (``oof_accuracy``, ``oof_accuracy.<context>``).
ACCURACY_TAG = "oof_accuracy"
#: Tag prefix of what ``ctxsim promote`` decided about a version.
PROMOTION_TAG = "promotion"
#: Where a run folder lies inside the pyfunc model (:mod:`ctxsim.mlflow_model`).
RUN_IN_MODEL = "artifacts/run"
MODEL_CACHE_ENV = "CTXSIM_MODEL_CACHE"

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w\-]+)|/(?P<version>[^/]+))?/?$")


class RegistryError(FileNotFoundError):
    """A model name, version or alias that the registry does not have (like a missing run folder;
    ``ctxsim promote`` exits with 2 for it)."""


@dataclass(frozen=True)
class ModelRef:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` taken apart (``version`` may be ``latest``)."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef | None:
        """The reference, or None for URIs that name no registered model (``models:/m-<id>``, ``runs:/``)."""
        m = _MODEL_URI.match(uri)
        if not m or (m["alias"] is None and m["version"] is None):
            return None
        return cls(m["name"], m["version"], m["alias"])


def client():
    """An ``MlflowClient`` on the current tracking store."""
    from mlflow import MlflowClient

    use_tracking_store()
    return MlflowClient()


def _not_found(err) -> bool:
    return getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def get_version(name: str, version: str | int | None = None, alias: str | None = None):
    """The ``ModelVersion`` named by a version number, ``latest``, or an alias; :class:`RegistryError` if none."""
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        if alias is not None:
            return c.get_model_version_by_alias(name, alias)
        if str(version).lower() == "latest":
            versions = c.search_model_versions(f"name = '{name}'")
            if not versions:
                raise RegistryError(f"model {name!r} has no versions")
            return max(versions, key=lambda v: int(v.version))
        return c.get_model_version(name, str(version))
    except MlflowException as err:
        if _not_found(err):
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise RegistryError(f"registered model {name!r} has no {what} in {use_tracking_store()}") from None
        raise


def champion(name: str):
    """The version the ``champion`` alias points at, or None (also when the model does not exist yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if _not_found(err):
            return None
        raise


def set_champion(name: str, version: str | int) -> None:
    client().set_registered_model_alias(name, CHAMPION, str(version))
    log.info("%s: alias %s -> version %s", name, CHAMPION, version)


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
def cache_dir() -> Path:
    return Path(os.environ.get(MODEL_CACHE_ENV) or Path(tempfile.gettempdir()) / "ctxsim-models")


def _download(artifact_uri: str, key: str) -> Path:
    """Download ``artifact_uri`` (a folder) once into the cache under ``key``; returns the local folder."""
    import mlflow.artifacts

    target = cache_dir() / key
    if (target / "run.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        with quiet_mlflow():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(staging)))
        if not (local / "run.json").is_file():
            raise RegistryError(f"{artifact_uri} is not a ctxsim run folder (no run.json): not a ctxsim model?")
        try:
            local.rename(target)
        except OSError:  # another process finished first: use its copy
            if not (target / "run.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_run(uri: str) -> Path:
    """The run folder of a ctxsim model in the registry (see the module docstring), downloaded and cached."""
    from mlflow.exceptions import MlflowException

    use_tracking_store()
    ref = ModelRef.parse(uri)
    try:
        if ref is None:  # models:/m-<id>, runs:/<id>/<path>: not versioned by the registry, keyed by URI
            key = hashlib.sha256(f"{use_tracking_store()}|{uri}".encode()).hexdigest()[:24]
            return _download(f"{uri.rstrip('/')}/{RUN_IN_MODEL}", key)
        mv = get_version(ref.name, ref.version, ref.alias)
        identity = f"{use_tracking_store()}|{mv.name}|{mv.version}|{mv.source}|{mv.creation_timestamp}"
        key = f"{safe_name(mv.name).replace('/', '_')}-v{mv.version}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
        log.info("%s -> %s version %s", uri, mv.name, mv.version)
        return _download(f"models:/{mv.name}/{mv.version}/{RUN_IN_MODEL}", key)
    except MlflowException as err:
        if _not_found(err):
            raise RegistryError(f"{uri}: not found in {use_tracking_store()} ({err.message})") from None
        raise


# -- promotion records ------------------------------------------------------------------------------------
def record_promotion(name: str, version: str, tags: dict[str, str], metrics: dict[str, float],
                     artifacts: list[tuple[Path, str | None]], eval_csvs=None) -> str:
    """Log a promotion decision: a ``promote NAME vN`` run (metrics, the eval data as an ``evaluation``
    input, ``artifacts`` as ``(local file or folder, artifact folder)``; missing ones are skipped), in the
    candidate's experiment, and ``promotion.*`` tags on the candidate version. Returns the run id."""
    import mlflow

    from ctxsim.tracking import log_batch, log_datasets

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

