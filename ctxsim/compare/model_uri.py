"""Model URIs: ``backbone:NAME``, a run folder, or a model in the MLflow registry, as a local run folder.

``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (or ``models:/NAME/latest``, ``models:/m-<id>``,
``runs:/<run id>/model``) resolve to the run folder inside the model, downloaded once per model
version into a cache folder (``$CTXSIM_MODEL_CACHE``, default ``<tmp>/ctxsim-models``). Versions are
immutable, so a cached version is never downloaded again; an alias is resolved on every call, so
moving it is seen at once. The tracking store is ``$MLFLOW_TRACKING_URI``, else the SQLite database
``mlflow.db`` in the working directory; :mod:`ctxsim.mlops` writes to the same store.

mlflow is imported inside the functions: importing this module is cheap.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from ctxsim.compare.comparator import Comparator
from ctxsim.compare.trained import RunComparator
from ctxsim.compare.zero_shot import ZeroShotComparator
from ctxsim.errors import ModelNotFoundError
from ctxsim.run_folder import MANIFEST_FILE

log = logging.getLogger(__name__)

REGISTRY_PREFIXES = ("models:/", "runs:/")


DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the SQLite database ``mlflow.db`` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def use_tracking_store() -> str:
    """Point mlflow at :func:`tracking_uri` (read again on every call) and return it."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return uri


def safe_name(text: str) -> str:
    """``text`` with every character MLflow refuses in a metric or tag key replaced by ``_`` (and no
    empty, ``.`` or ``..`` path segment, which MLflow refuses too)."""
    text = re.sub(r"[^\w\-. :/]", "_", str(text))
    return "/".join(seg if seg.strip(".") else "_" for seg in text.split("/"))


@contextlib.contextmanager
def quiet_mlflow():
    """No artifact progress bars, and none of MLflow's warnings that do not apply to ctxsim's model
    (it has a signature and no input example; training CSVs are plain local files)."""
    old = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            warnings.filterwarnings("ignore", message=".*dataset source can be interpreted in multiple ways.*")
            yield
    finally:
        if old is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = old


#: Where a run folder lies inside the pyfunc model (:mod:`ctxsim.mlops.pyfunc`).
RUN_IN_MODEL = "artifacts/run"


MODEL_CACHE_ENV = "CTXSIM_MODEL_CACHE"


_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w\-]+)|/(?P<version>[^/]+))?/?$")


class RegistryError(ModelNotFoundError):
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


def is_not_found(err) -> bool:
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
        if is_not_found(err):
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise RegistryError(f"registered model {name!r} has no {what} in {use_tracking_store()}") from None
        raise


def cache_dir() -> Path:
    return Path(os.environ.get(MODEL_CACHE_ENV) or Path(tempfile.gettempdir()) / "ctxsim-models")


def _download(artifact_uri: str, key: str) -> Path:
    """Download ``artifact_uri`` (a folder) once into the cache under ``key``; returns the local folder."""
    import mlflow.artifacts

    target = cache_dir() / key
    if (target / MANIFEST_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        with quiet_mlflow():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(staging)))
        if not (local / MANIFEST_FILE).is_file():
            raise RegistryError(f"{artifact_uri} is not a ctxsim run folder (no {MANIFEST_FILE}): not a ctxsim model?")
        try:
            local.rename(target)
        except OSError:  # another process finished first: use its copy
            if not (target / MANIFEST_FILE).is_file():
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
        if is_not_found(err):
            raise RegistryError(f"{uri}: not found in {use_tracking_store()} ({err.message})") from None
        raise


#: Context name given to triplets when no context is declared or discovered.
BACKBONE_PREFIX = "backbone:"


def load_comparator(model: str, **kw) -> Comparator:
    """``backbone:NAME`` (zero-shot), a training run folder, or an MLflow ``models:/`` URI."""
    if model.startswith(BACKBONE_PREFIX):
        return ZeroShotComparator(model.removeprefix(BACKBONE_PREFIX), **kw)
    if model.startswith("models:/") or model.startswith("runs:/"):
        return load_comparator(str(download_run(model)), **kw)
    path = Path(model)
    if path.is_dir():
        return RunComparator(path, **kw)
    raise ModelNotFoundError(f"model {model!r}: no such run folder; expected backbone:NAME, a run folder or models:/NAME@ALIAS")
