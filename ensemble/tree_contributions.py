"""LightGBM's exact per-feature contributions (``pred_contrib``) at the speed of a prediction.

``compare --explain`` needs TreeSHAP's contributions for every row, and LightGBM computes them at a few
thousand rows/s here (O(trees x leaves x depth^2) a row). But a tree's contributions depend on a row only
through which side of each of the tree's split thresholds its features fall: a tree using features
``f1..fm`` with ``k1..km`` distinct thresholds splits feature space into ``prod(ki + 1)`` cells, and
every row of one cell gets the same contributions. So :class:`CellTables` asks LightGBM once for the
contributions of one representative row per cell, tree by tree (``pred_contrib`` with
``start_iteration=t, num_iteration=1``), and a row's contributions become table lookups: per tree, count
the thresholds below each of its features (the cell) and add that cell's row of the table — work like a
prediction's. The lookups are compiled per model to straight-line native code with llvmlite (already
here for the compiled trees; no compiler on the machine), thresholds and columns as constants, and run in
row blocks (:mod:`ctxsim.row_blocks`). ``--explain`` needs only each member's and context's sum:
:meth:`CellTables.grouped` adds a tree's columns of one group once, so a row adds fewer numbers.

The tables are LightGBM's own numbers, added up tree by tree in the booster's order; LightGBM adds a
tree's terms into the running total as its recursion finds them, so the sums agree to rounding (~1e-15),
not bit for bit. Built only for models of numerical splits without missing-value handling (what the
stacker trains: its features are never missing) and at most ``MAX_CELLS`` cells; :func:`cell_tables`
checks the tables against ``pred_contrib`` on rows at every threshold and returns None (LightGBM then
answers) when anything differs.
"""
from __future__ import annotations

import copy
import ctypes
import logging
import os
import struct
import threading

import numpy as np

from ctxsim.embedding.cache import default_cache_dir
from ctxsim.ensemble.trees import ZERO_THRESHOLD, TreeModel
from ctxsim.native import compile_ir
from ctxsim.row_blocks import each_block

log = logging.getLogger(__name__)

#: Most cells (table rows) over all trees: 150 trees of 15 leaves have ~5*10^5 (~40 MB of tables).
MAX_CELLS = 4_000_000
#: Thresholds of one (tree, feature) pair in the native code (one vector compare); a feature with more is
#: split into several pairs of the same stride (the digit is the sum of their counts).
PAIR_THRESHOLDS = 4
#: Largest difference from LightGBM's ``pred_contrib`` the self-check accepts (rounding of the sums).
CHECK_TOLERANCE = 1e-9


def _ir_double(value: float) -> str:
    """A double constant as LLVM IR writes it exactly: its IEEE bits in hex."""
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", float(value)))[0]


def straight_line_ir(a: dict[str, np.ndarray], n_features: int, n_out: int) -> str:
    """LLVM IR of ``cell_contributions(n, X, table, out, scale)``: for each of ``n`` rows of float32 ``X``
    (row-major), ``out[row, c] += scale * table[...]`` for every tree's cell, with the model's thresholds,
    strides and columns as constants (no loop over trees or features, so no branch to mispredict; a row's
    outputs stay in registers). A feature is read once a row the way LightGBM reads a dense row without
    missing-value handling (NaN and |x| <= kZeroThreshold are 0); a pair's PAIR_THRESHOLDS thresholds
    (padded with +inf) are counted below x with one vector compare. Sums are in tree order, as LightGBM's."""
    w, vec, zt = PAIR_THRESHOLDS, f"<{PAIR_THRESHOLDS} x double>", _ir_double(ZERO_THRESHOLD)
    tp, pf, thr, ps = a["tree_pairs"], a["pair_feature"], a["thr"], a["pair_stride"]
    tt, tc, cols = a["tree_table"], a["tree_cols"], a["cols"]
    ir = ["define void @cell_contributions(i64 %n, float* noalias %X, double* noalias %table, double* noalias %out, double %scale) {",
          "entry:", "  br label %row_head", "row_head:", "  %r = phi i64 [0, %entry], [%r_next, %row_body]",
          "  %done = icmp sge i64 %r, %n", "  br i1 %done, label %exit, label %row_body", "row_body:",
          f"  %xoff = mul i64 %r, {n_features}", "  %xrow = getelementptr float, float* %X, i64 %xoff",
          f"  %ooff = mul i64 %r, {n_out}", "  %orow = getelementptr double, double* %out, i64 %ooff"]
    for f in np.unique(pf):
        ir += [f"  %xp{f} = getelementptr float, float* %xrow, i64 {f}", f"  %xf{f} = load float, float* %xp{f}",
               f"  %xd{f} = fpext float %xf{f} to double", f"  %xa{f} = call double @llvm.fabs.f64(double %xd{f})",
               f"  %xz{f} = fcmp ule double %xa{f}, {zt}", f"  %x{f} = select i1 %xz{f}, double 0.0, double %xd{f}",
               f"  %xi{f} = insertelement {vec} undef, double %x{f}, i32 0",
               f"  %xv{f} = shufflevector {vec} %xi{f}, {vec} undef, <{w} x i32> zeroinitializer"]
    for t in range(len(tt)):
        cell = "0"
        for p in range(tp[t], tp[t + 1]):
            bounds = ", ".join(f"double {_ir_double(v)}" for v in thr[p * w:(p + 1) * w])
            ir += [f"  %m{p} = fcmp olt {vec} <{bounds}>, %xv{pf[p]}", f"  %b{p} = bitcast <{w} x i1> %m{p} to i{w}",
                   f"  %w{p} = zext i{w} %b{p} to i64", f"  %k{p} = call i64 @llvm.ctpop.i64(i64 %w{p})",
                   f"  %s{p} = mul i64 %k{p}, {ps[p]}", f"  %c{p} = add i64 {cell}, %s{p}"]
            cell = f"%c{p}"
        width = tc[t + 1] - tc[t]
        ir += [f"  %cw{t} = mul i64 {cell}, {width}", f"  %base{t} = add i64 %cw{t}, {tt[t]}"]
        for k in range(width):
            q = f"{t}_{k}"
            ir += [f"  %ti{q} = add i64 %base{t}, {k}", f"  %tp{q} = getelementptr double, double* %table, i64 %ti{q}",
                   f"  %tv{q} = load double, double* %tp{q}", f"  %sv{q} = fmul double %tv{q}, %scale",
                   f"  %op{q} = getelementptr double, double* %orow, i64 {cols[tc[t] + k]}",
                   f"  %ov{q} = load double, double* %op{q}", f"  %on{q} = fadd double %ov{q}, %sv{q}",
                   f"  store double %on{q}, double* %op{q}"]
    ir += ["  %r_next = add i64 %r, 1", "  br label %row_head", "exit:", "  ret void", "}",
           "declare i64 @llvm.ctpop.i64(i64)", "declare double @llvm.fabs.f64(double)"]
    return "\n".join(ir)


class CellTables:
    """Per tree: the features it splits on, their distinct thresholds and one table row of contributions
    (its features' and its bias) per cell. ``contributions(X)`` equals ``pred_contrib`` (n, F + 1)."""

    def __init__(self, trees: TreeModel, booster, cache_dir: str | os.PathLike | None = None):
        self.n_features, self.cache_dir = trees.n_features, cache_dir
        n_trees = len(trees.root)
        tree_pairs, pair_feature, thr, pair_stride = [0], [], [], []
        tree_table, tree_cols, cols, tables, n_cells = [], [0], [], [], []
        offset = 0
        for t in range(n_trees):
            nodes = slice(trees.node_offset[t], trees.node_offset[t + 1])
            feats, th = trees.feature[nodes], trees.threshold[nodes]
            used = np.unique(feats)
            per_feature = [np.unique(th[feats == f]) for f in used]
            radix = [len(u) + 1 for u in per_feature]
            strides = np.cumprod([1, *radix[:-1]]).astype(np.int64)
            for f, u, s in zip(used, per_feature, strides):
                for chunk in range(0, len(u), PAIR_THRESHOLDS):
                    part = u[chunk: chunk + PAIR_THRESHOLDS]
                    pair_feature.append(int(f))
                    thr.extend([*part.tolist(), *[np.inf] * (PAIR_THRESHOLDS - len(part))])
                    pair_stride.append(int(s))
            tree_pairs.append(len(pair_feature))
            table = self._tree_table(booster, t, used, per_feature, radix)
            tree_table.append(offset)
            offset += table.size
            cols.extend([*map(int, used), self.n_features])
            tree_cols.append(len(cols))
            tables.append(table.ravel())
            n_cells.append(len(table))
        self._n_cells = n_cells
        as64 = lambda v: np.ascontiguousarray(v, dtype=np.int64)  # noqa: E731
        self._arrays = dict(tree_pairs=as64(tree_pairs), pair_feature=as64(pair_feature),
                            thr=np.ascontiguousarray(thr, dtype=np.float64), pair_stride=as64(pair_stride),
                            tree_table=as64(tree_table), tree_cols=as64(tree_cols), cols=as64(cols),
                            table=np.concatenate(tables) if tables else np.zeros(0))
        self.n_trees = n_trees
        self.n_out = self.n_features + 1  # output columns: the features' and, last, the bias
        self._native, self._lock = None, threading.Lock()

    def _kernel(self):
        """The compiled lookups of these tables (compiled on first use, once)."""
        with self._lock:
            if self._native is None:
                ptr = ctypes.c_void_p
                self._native = compile_ir(straight_line_ir(self._arrays, self.n_features, self.n_out), "cell_contributions",
                                          (ctypes.c_int64, ptr, ptr, ptr, ctypes.c_double),
                                          self.cache_dir if self.cache_dir is not None else default_cache_dir(), "cells")
            return self._native[1]

    @staticmethod
    def _tree_table(booster, t: int, used: np.ndarray, per_feature: list[np.ndarray], radix: list[int]) -> np.ndarray:
        """(cells, len(used) + 1): LightGBM's contributions of tree ``t`` for one representative row per
        cell (a feature's cell digit d < k: its d-th threshold itself, which goes left of it and right of the
        ones below; d = k: just above the largest)."""
        n_cells = int(np.prod(radix)) if radix else 1
        reps = np.zeros((n_cells, booster.num_feature()))
        digits = np.arange(n_cells)
        for f, u, k in zip(used, per_feature, radix):
            values = np.r_[u, np.nextafter(u[-1], np.inf)]
            reps[:, f] = values[digits % k]
            digits = digits // k
        contrib = np.asarray(booster.predict(reps, pred_contrib=True, start_iteration=t, num_iteration=1, num_threads=0))
        return np.ascontiguousarray(contrib[:, [*map(int, used), booster.num_feature()]], dtype=np.float64)

    def grouped(self, column_of: list[int]) -> CellTables:
        """Tables whose output sums the contributions into groups: ``column_of[j]`` is the output column of
        feature ``j`` (and, last, of the bias). Each tree's columns of one group are added up once, here,
        so a row adds fewer numbers (``--explain`` needs only the groups)."""
        column_of = np.asarray(column_of, dtype=np.int64)
        a = self._arrays
        tree_cols, cols, tables, tree_table, offset = [0], [], [], [], 0
        for t in range(self.n_trees):
            own = a["cols"][a["tree_cols"][t]: a["tree_cols"][t + 1]]
            width = len(own)
            start = a["tree_table"][t]
            table = a["table"][start: start + self._n_cells[t] * width].reshape(self._n_cells[t], width)
            targets, which = np.unique(column_of[own], return_inverse=True)
            onehot = np.zeros((width, len(targets)))
            onehot[np.arange(width), which.ravel()] = 1.0
            tables.append(np.ascontiguousarray(table @ onehot).ravel())
            tree_table.append(offset)
            offset += tables[-1].size
            cols.extend(targets.tolist())
            tree_cols.append(len(cols))
        other = copy.copy(self)
        other._arrays = dict(a, tree_table=np.asarray(tree_table, np.int64), tree_cols=np.asarray(tree_cols, np.int64),
                             cols=np.asarray(cols, np.int64), table=np.concatenate(tables))
        other.n_out = int(column_of.max()) + 1
        other._native, other._lock = None, threading.Lock()
        return other

    def contributions(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(n, F + 1) contributions and bias of every row of float32 features (what the stacker predicts on),
        as ``pred_contrib``; the native code runs over row blocks in ``threads`` threads, in place."""
        out = np.zeros((len(X), self.n_out))
        self.add_contributions(X, out, 1.0, threads)
        return out

    def half_difference(self, X: np.ndarray, X_other: np.ndarray, threads: int | None = None) -> np.ndarray:
        """``(pred_contrib(X) - pred_contrib(X_other)) / 2`` in one output (the A/B-symmetric contributions)."""
        out = np.zeros((len(X), self.n_out))
        self.add_contributions(X, out, 0.5, threads)
        self.add_contributions(X_other, out, -0.5, threads)
        return out

    def add_contributions(self, X: np.ndarray, out: np.ndarray, scale: float, threads: int | None = None) -> None:
        """``out += scale * pred_contrib(X)`` (grouped: summed into the groups' columns); ``out``: a C-contiguous
        (n, n_out) float64 array."""
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {X32.shape}")
        if X32.dtype != np.asarray(X).dtype and not np.array_equal(X32, X, equal_nan=True):
            raise ValueError("features must be float32 values (the stacker's); these lose precision as float32")
        if out.shape != (len(X32), self.n_out) or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"expected a C-contiguous float64 output of shape {(len(X32), self.n_out)}")
        kernel, table = self._kernel(), self._arrays["table"]
        row_in, row_out = X32.strides[0], out.strides[0]

        def block(start: int, stop: int) -> None:
            kernel(stop - start, X32.ctypes.data + start * row_in, table.ctypes.data, out.ctypes.data + start * row_out, scale)

        each_block(len(X32), block, threads=threads)


def cell_tables(trees: TreeModel | None, booster, check_X: np.ndarray,
                cache_dir: str | os.PathLike | None = None) -> CellTables | None:
    """:class:`CellTables` of a model when it qualifies and agrees with ``pred_contrib`` on ``check_X``
    (rows at every threshold, :func:`ctxsim.ensemble.compiled.check_rows`); else None (with a log line)."""
    if trees is None or (trees.missing != 0).any():
        log.info("explanations: LightGBM's pred_contrib is used (the model handles missing values)")
        return None
    cells = 0
    for t in range(len(trees.root)):
        nodes = slice(trees.node_offset[t], trees.node_offset[t + 1])
        feats, th = trees.feature[nodes], trees.threshold[nodes]
        cells += int(np.prod([len(np.unique(th[feats == f])) + 1 for f in np.unique(feats)]))
    if cells > MAX_CELLS:
        log.info("explanations: LightGBM's pred_contrib is used (%d cells exceed %d)", cells, MAX_CELLS)
        return None
    try:
        tables = CellTables(trees, booster, cache_dir)
        expected = np.asarray(booster.predict(check_X, pred_contrib=True, num_threads=1))
        gap = float(np.max(np.abs(tables.contributions(check_X) - expected)))
    except Exception as err:  # noqa: BLE001 - any failure leaves LightGBM's own pred_contrib
        log.warning("explanations: LightGBM's pred_contrib is used (the cell tables failed: %s: %s)", type(err).__name__, err)
        return None
    if gap > CHECK_TOLERANCE:
        log.warning("explanations: LightGBM's pred_contrib is used (the cell tables differ by up to %.3g)", gap)
        return None
    return tables

