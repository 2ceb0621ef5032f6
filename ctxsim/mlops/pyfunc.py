"""A trained run folder as one MLflow pyfunc model.

The model's only artifact is the run folder (contexts, members' safetensors, the ensemble's
stacker and baselines, preprocessing in run.json; weights are safetensors). Loading it calls
``ctxsim.load(<run folder>)``, so ctxsim must be installed where the model is loaded
(``mlflow.pyfunc.load_model`` installs nothing).

Input: a DataFrame with string columns ``ref``, ``a``, ``b`` (absolute paths, ``file://`` or
``http(s)://`` URIs, or paths relative to the ``images`` parameter) and an optional ``context``.
Output: ``p_a`` (double, P(A closer)), ``pred`` (``A``/``B``, or ``abstain``) and ``context`` (string), and
``context_similarity`` / ``out_of_context`` (every reference). Parameters ask for more (README, Trust):
``target_accuracy`` (> 0: abstain below the threshold for it, at ``delta``) adds ``pred_raw`` and ``answered``;
``explain`` (``top`` or ``full``) adds ``why`` (and ``contrib_<feature>`` columns when full).

The model is logged "from code" (:func:`model_code`): MLflow stores a three-line script that
imports :class:`CtxsimModel` from the installed ctxsim, so nothing is pickled at all. This module
imports mlflow at the top (it subclasses ``PythonModel``); only the MLflow code paths import it,
never ``ctxsim.cli``.
"""
from __future__ import annotations

import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

import ctxsim
from ctxsim import __version__
from ctxsim.schema import ANSWERED, CONTEXT_SIMILARITY, CONTRIB_PREFIX, DEFAULT_DELTA, OUT_OF_CONTEXT, PRED_RAW, WHY

#: Name of the run-folder artifact inside the MLflow model (``<model>/artifacts/run``).
RUN_ARTIFACT = "run"
INPUT_COLUMNS = ("ref", "a", "b")
OPTIONAL_INPUT_COLUMNS = ("context",)
OUTPUT_COLUMNS = ("p_a", "pred", "context")
#: Output columns present when asked for (``target_accuracy``, ``explain``) or when the run has them.
OPTIONAL_OUTPUT_COLUMNS = {PRED_RAW: "string", ANSWERED: "boolean", CONTEXT_SIMILARITY: "double", OUT_OF_CONTEXT: "boolean",
                           WHY: "string"}
#: Seconds to wait for one ``http(s)://`` image.
DOWNLOAD_TIMEOUT_S = 30


def signature():
    """Input ``ref, a, b`` (+ optional ``context``) strings; output ``p_a`` double, ``pred`` and ``context`` strings;
    an optional ``images`` parameter roots relative paths."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", c) for c in INPUT_COLUMNS] + [ColSpec("string", c, required=False) for c in OPTIONAL_INPUT_COLUMNS])
    outputs = Schema([ColSpec("double", "p_a"), ColSpec("string", "pred"), ColSpec("string", "context")]
                     + [ColSpec(t, c, required=False) for c, t in OPTIONAL_OUTPUT_COLUMNS.items()])
    params = ParamSchema([ParamSpec("images", "string", ""), ParamSpec("target_accuracy", "double", 0.0),
                          ParamSpec("delta", "double", DEFAULT_DELTA), ParamSpec("explain", "string", "")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def model_code() -> str:
    """The script MLflow stores as the model's code (models from code): it builds a :class:`CtxsimModel`."""
    return (f'"""ctxsim {__version__}: the ensemble of a run folder as a pyfunc model (see ctxsim.mlops.pyfunc)."""\n'
            "import mlflow\n"
            "from ctxsim.mlops.pyfunc import CtxsimModel\n\n"
            "mlflow.models.set_model(CtxsimModel())\n")


class CtxsimModel(mlflow.pyfunc.PythonModel):
    """``predict(df)`` -> ``p_a``, ``pred``, ``context`` per row, by the run folder's ensemble."""

    def load_context(self, context):
        self.comparator = ctxsim.load(context.artifacts[RUN_ARTIFACT], progress=False)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        import polars as pl

        frame = model_input if isinstance(model_input, pl.DataFrame) else pl.from_pandas(model_input)
        params = params or {}
        images = params.get("images") or None
        target = float(params.get("target_accuracy") or 0.0)
        comparator = self.comparator
        if target > 0 or params.get("explain"):
            comparator = comparator.with_options(target_accuracy=target if target > 0 else None,
                                                 delta=float(params.get("delta") or DEFAULT_DELTA),
                                                 explain=params.get("explain") or None)
        with tempfile.TemporaryDirectory(prefix="ctxsim-images-") as downloads:
            local = {}
            uris = [c for c in INPUT_COLUMNS if frame[c].str.contains("://", literal=True).any()]
            frame = frame.with_columns(
                pl.col(c).map_elements(lambda p: _localize(p, downloads, local), return_dtype=pl.String) for c in uris
            )
            scored = comparator.score(frame, images)
        extra = [c for c in scored.columns if c in OPTIONAL_OUTPUT_COLUMNS or c.startswith(CONTRIB_PREFIX)]
        return scored.select(*OUTPUT_COLUMNS, *extra).to_pandas()


def _localize(path: str, downloads: str, seen: dict[str, str]) -> str:
    """A local path for ``path``: ``file://`` URIs become paths, ``http(s)://`` images are downloaded once."""
    scheme = urllib.parse.urlparse(path).scheme
    if scheme == "file":
        return urllib.request.url2pathname(urllib.parse.urlparse(path).path)
    if scheme not in ("http", "https"):
        return path
    if path not in seen:
        target = Path(downloads) / f"{len(seen)}{Path(urllib.parse.urlparse(path).path).suffix}"
        with urllib.request.urlopen(path, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as f:
            f.write(response.read())
        seen[path] = os.fspath(target)
    return seen[path]
