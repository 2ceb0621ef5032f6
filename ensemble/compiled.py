"""Compiled prediction for a LightGBM stacker: the same probabilities as ``Booster.predict``, faster.

``compare`` runs the stacker on every row (twice: the row and its A/B swap), and LightGBM's own
``predict`` on a dense array reaches only ~10^5 rows/s here. :func:`compiled_predictor` compiles the
booster's text model to native code with lleaves (LLVM, through llvmlite wheels: no compiler on the
machine) and checks it against the booster before use. Trees are added up in the booster's order in
float64 (one block of trees, lleaves' ``fblocksize`` = number of trees) and the sigmoid is the same libm
``exp``, so predictions are bit-for-bit those of LightGBM; when the check finds any difference, or
lleaves cannot compile the model, the booster answers instead (and the log says why).

The object code is cached beside the embedding cache, keyed by the model text and the compiler and CPU,
so a model is compiled once per machine (about a second for 150 trees). Large inputs are predicted in
row blocks in threads (:mod:`ctxsim.row_blocks`). Explanations of large inputs come from the
model's cell tables (:mod:`ctxsim.ensemble.tree_contributions`), built on first use.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from ctxsim.embedding.cache import default_cache_dir
from ctxsim.ensemble.explain import group_columns
from ctxsim.ensemble.tree_contributions import CellTables, cell_tables
from ctxsim.ensemble.trees import ZERO_THRESHOLD, TextModelError, TreeModel
from ctxsim.native import CACHE_SUBDIR
from ctxsim.row_blocks import MIN_ROWS_PER_THREAD, prediction_threads

log = logging.getLogger(__name__)

#: Rows of the self-check run on load (random rows plus every split threshold of the model).
CHECK_ROWS = 512
#: The first call with at least this many rows compiles the model; smaller calls use the booster.
COMPILE_MIN_ROWS = 20_000
#: Explaining at least this many rows builds the cell tables (a second or two), used from then on.
TABLES_MIN_ROWS = 20_000


class BoosterPredictor:
    """LightGBM's own prediction (the reference, and the fallback)."""

    compiled = False

    def __init__(self, booster):
        self.booster = booster

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X, num_threads=0)


class CompiledPredictor:
    """A booster compiled with lleaves; ``predict`` gives P(class 1) as float64, like the booster."""

    compiled = True

    def __init__(self, model, n_features: int):
        self._model, self.n_features = model, n_features

    def predict(self, X: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(X, dtype=np.float64)  # kept alive here: lleaves reads it through a pointer
        if data.ndim != 2 or data.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {data.shape}")
        tiny = (np.abs(data) <= ZERO_THRESHOLD) & (data != 0.0)
        if tiny.any():  # LightGBM reads these as 0.0 (its dense rows become sparse ones)
            data = np.where(tiny, 0.0, data)
        threads = max(1, min(prediction_threads(), len(data) // MIN_ROWS_PER_THREAD))
        return self._model.predict(data, n_jobs=threads)


def compiled_predictor(booster, cache_dir: str | os.PathLike | None = None, *, check: bool = True):
    """A :class:`CompiledPredictor` for ``booster`` when lleaves compiles it and its predictions are
    identical on the check rows; else a :class:`BoosterPredictor` (with a log line saying why)."""
    try:
        predictor = _compile(booster, cache_dir)
    except Exception as err:  # noqa: BLE001 - any compiler failure leaves LightGBM's own prediction
        log.warning("stacker: LightGBM's own prediction is used (the model could not be compiled: %s: %s)",
                    type(err).__name__, err)
        return BoosterPredictor(booster)
    if check:
        X = check_rows(booster)
        expected, got = booster.predict(X, num_threads=1), predictor.predict(X)
        if not np.array_equal(expected, got):
            log.warning("stacker: LightGBM's own prediction is used (the compiled model differs by up to %.3g)",
                        float(np.max(np.abs(expected - got))))
            return BoosterPredictor(booster)
    return predictor


def check_rows(booster, n: int = CHECK_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that visit both sides of every split: each feature drawn from its thresholds (exactly on,
    just below, just above), from around zero, and from a wide normal spread."""
    rng = np.random.default_rng(seed)
    n_features = booster.num_feature()
    thresholds: dict[int, list[float]] = {}
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                if isinstance(node["threshold"], (int, float)):
                    thresholds.setdefault(node["split_feature"], []).append(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
    X = rng.normal(0.0, 1.0, (n, n_features))
    for j in range(n_features):
        t = np.asarray(thresholds.get(j, [0.0]))
        picks = rng.choice(t, n)
        nudge = rng.choice([-1.0, 0.0, 1.0], n)
        X[:, j] = np.where(rng.random(n) < 0.8, np.nextafter(picks, picks + nudge), X[:, j])
    X[: n // 16] = 0.0  # LightGBM treats (near) zeros specially
    X[n // 16 : n // 8] *= 1e-36
    return X.astype(np.float32).astype(np.float64)  # compare features are float32


def _cache_key(model_str: str) -> str:
    from importlib.metadata import version

    import llvmlite
    import llvmlite.binding as llvm

    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    h = hashlib.sha256()
    for part in (model_str, version("lleaves"), llvmlite.__version__, llvm.get_process_triple(), llvm.get_host_cpu_name(), features):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _compile(booster, cache_dir) -> CompiledPredictor:
    import lleaves

    model_str = booster.model_to_string()
    n_trees = booster.num_trees()
    options = dict(fblocksize=max(1, n_trees))  # one block: trees summed in the booster's order
    if cache_dir is None:
        cache_dir = default_cache_dir()
    folder = Path(cache_dir) / CACHE_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"lgbm-{_cache_key(model_str)}.o"
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        model_file = Path(tmp) / "model.txt"
        model_file.write_text(model_str)
        model = lleaves.Model(str(model_file))
        if target.exists():
            model.compile(cache=str(target), **options)
        else:
            # lleaves writes the object file at the end of compiling: compile into a private path, then
            # rename, so a concurrent process never loads a half-written file.
            private = Path(tmp) / "model.o"
            model.compile(cache=str(private), **options)
            if private.exists():
                os.replace(private, target)
            log.debug("stacker compiled (%d trees) -> %s", n_trees, target)
    return CompiledPredictor(model, booster.num_feature())


class FastBooster:
    """A LightGBM model (its text) that predicts small calls (one triplet, a warm compare of a few thousand
    rows) with :class:`~ctxsim.ensemble.trees.TreeModel` in numpy — LightGBM itself is not even imported —
    and compiles itself the first time it predicts many rows (``COMPILE_MIN_ROWS``). Every call answers
    exactly what ``booster.predict`` answers."""

    def __init__(self, model_str: str, cache_dir: str | os.PathLike | None = None):
        self.model_str, self.cache_dir = model_str, cache_dir
        self._booster = None
        self._trees: TreeModel | None = None
        try:
            self._trees = TreeModel(model_str)
        except TextModelError as err:
            log.debug("stacker: LightGBM predicts small calls too (%s)", err)
        self._compiled: CompiledPredictor | BoosterPredictor | None = None
        self._tables: CellTables | bool | None = None  # False: the model has none (LightGBM explains)
        self._grouped: dict[tuple[int, ...], CellTables] = {}

    @property
    def booster(self):
        """The LightGBM booster (imported and built on first use: explanations, compiling)."""
        if self._booster is None:
            import lightgbm

            self._booster = lightgbm.Booster(model_str=self.model_str)
        return self._booster

    @property
    def n_features(self) -> int:
        return self._trees.n_features if self._trees is not None else self.booster.num_feature()

    @property
    def predictor(self) -> CompiledPredictor | BoosterPredictor:
        """The predictor large calls use (compiling it now if needed)."""
        if self._compiled is None:
            self._compiled = compiled_predictor(self.booster, self.cache_dir)
        return self._compiled

    def prepare(self, n_rows: int) -> None:
        """Compile now when ``n_rows`` rows are about to be predicted (in blocks of any size)."""
        if n_rows >= COMPILE_MIN_ROWS:
            self.predictor  # noqa: B018 - compiles

    def predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) < COMPILE_MIN_ROWS and self._compiled is None:
            return (self._trees or BoosterPredictor(self.booster)).predict(X)
        return self.predictor.predict(X)

    def prepare_explanations(self, n_rows: int) -> None:
        """Build (and check) the cell tables now when ``n_rows`` rows are about to be explained."""
        if n_rows >= TABLES_MIN_ROWS and self._tables is None:
            self._tables = cell_tables(self._trees, self.booster, check_rows(self.booster), self.cache_dir) or False

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """LightGBM's ``pred_contrib`` (n, F + 1): from the cell tables once a large input built them
        (:meth:`prepare_explanations`), else from LightGBM itself."""
        if self._tables:
            return self._tables.contributions(X, threads=1)  # callers cut large inputs into blocks in threads
        return np.asarray(self.booster.predict(np.asarray(X, dtype=np.float64), pred_contrib=True, num_threads=0))

    def half_difference(self, X: np.ndarray, X_other: np.ndarray, columns: tuple[int, ...] | None = None) -> np.ndarray:
        """``(pred_contrib(X) - pred_contrib(X_other)) / 2`` (n, F + 1), in one pass over the cell tables; with
        ``columns`` (each feature's output column, then the bias's) summed into those columns."""
        if self._tables:
            tables = self._tables if columns is None else self._grouped_tables(columns)
            return tables.half_difference(X, X_other, threads=1)
        half = 0.5 * (self.contributions(X) - self.contributions(X_other))
        return half if columns is None else group_columns(half, columns)

    def _grouped_tables(self, columns: tuple[int, ...]) -> CellTables:
        if columns not in self._grouped:
            self._grouped[columns] = self._tables.grouped(list(columns))
        return self._grouped[columns]
