"""The MLflow tracking store ctxsim writes to: experiments, batched logging and datasets.

The store is ``$MLFLOW_TRACKING_URI``, else the SQLite database ``mlflow.db`` in the working
directory (:func:`ctxsim.compare.model_uri.tracking_uri`, shared with the model loader), artifacts in
``mlruns/`` beside the database; an ``http://`` address of a real ``mlflow server`` works the same way,
and the server decides where artifacts go. mlflow is imported inside the functions.
"""
from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from ctxsim.compare.model_uri import safe_name, tracking_uri

#: Metrics and params sent per request (MLflow's limits are 1000 and 100).
BATCH_METRICS, BATCH_PARAMS = 1000, 100


DEFAULT_EXPERIMENT = "ctxsim"


#: Folder beside a SQLite database where its experiments keep their artifacts.
ARTIFACT_FOLDER = "mlruns"


#: MLflow keeps at most this many characters of a parameter value.
MAX_PARAM_CHARS = 6000


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def sqlite_artifact_root(uri: str) -> Path | None:
    """``<database folder>/mlruns`` for a ``sqlite:///`` store (None for others: a server decides)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(urllib.parse.unquote(uri.removeprefix("sqlite:///"))).resolve().parent / ARTIFACT_FOLDER


def use_experiment(name: str | None = None):
    """Make ``name`` (default :func:`experiment_name`) the active experiment, creating it when missing;
    with a SQLite store its artifacts go beside the database, not into the working directory."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = name or experiment_name()
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(name) is None:
        root = sqlite_artifact_root(tracking_uri())
        try:
            client.create_experiment(name, artifact_location=None if root is None else (root / safe_name(name).replace("/", "_")).as_uri())
        except MlflowException as err:
            if getattr(err, "error_code", "") != "RESOURCE_ALREADY_EXISTS":  # another process created it first
                raise
    return mlflow.set_experiment(name)


def as_paths(csvs) -> list[Path]:
    return [Path(csvs)] if isinstance(csvs, (str, os.PathLike)) else [Path(c) for c in csvs]


def log_datasets(csvs, context: str = "training") -> list[str]:
    """Log every CSV as an MLflow dataset input of the active run; returns their digests."""
    import mlflow
    import polars as pl

    digests = []
    for path in as_paths(csvs):
        frame = pl.read_csv(path, infer_schema_length=0)  # as text: the digest is of the file's values
        dataset = mlflow.data.from_polars(frame, source=str(path.resolve()), name=path.name,
                                          targets="label" if "label" in frame.columns else None)
        mlflow.log_input(dataset, context=context)
        digests.append(dataset.digest)
    return digests


def log_batch(run_id: str, metrics: dict[str, float] | None = None, params: dict[str, str] | None = None,
              steps: dict[str, Sequence[float]] | None = None) -> None:
    """Metrics (step 0), params and step series (``name -> values``, step = index) in few requests."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
    for name, values in (steps or {}).items():
        entries += [Metric(name, float(v), now, step) for step, v in values if v == v]
    client = MlflowClient()
    for i in range(0, len(entries), BATCH_METRICS):
        client.log_batch(run_id, metrics=entries[i:i + BATCH_METRICS])
    items = [Param(k, v) for k, v in (params or {}).items()]
    for i in range(0, len(items), BATCH_PARAMS):
        client.log_batch(run_id, params=items[i:i + BATCH_PARAMS])
