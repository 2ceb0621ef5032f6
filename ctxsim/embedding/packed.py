"""Every member's embeddings of an image pool side by side in one matrix, and all their margins in one pass.

Past the distance tables' limit (``distances.MAX_TABLE_IMAGES``) a margin ``r . a - r . b`` reads three
image rows per member from a matrix that no cache holds, so the work is bound by memory traffic, not by
arithmetic. :class:`PackedEmbeddings` keeps each image's embeddings for every member contiguous (one row
of the matrix), so a triplet row reads three contiguous runs of memory, and computes every member's
margin of a row in one native loop (LLVM IR generated for the matrix layout and compiled with llvmlite,
:mod:`ctxsim.native`): ``(a - b) . r`` in 16-wide float32 vectors, nothing copied to intermediate buffers.
Rows are visited sorted by reference, so a reference's row stays in cache across its triplets, and in
row blocks on every core (ctypes releases the GIL). Each member's columns are padded with zeros to a
multiple of ``LANES``, which changes no dot product.
"""
from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import numpy as np

from ctxsim.embedding.cache import default_cache_dir
from ctxsim.native import compile_ir
from ctxsim.row_blocks import each_block

#: float32 lanes of one vector step of the kernel; each member's columns are padded to a multiple of it.
LANES = 16
#: Triplet rows per block of work handed to a thread.
BLOCK_ROWS = 8192
#: Element types the kernel reads, by numpy dtype: float32, or float16 (half the memory traffic; each
#: value is widened to float32 before the arithmetic).
IR_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float16): "half"}

_kernels: dict[tuple, tuple] = {}  # layout -> (execution engine, function): compiled once per process
_kernels_lock = threading.Lock()


def margins_ir(element: str, offsets: Sequence[int], dims: Sequence[int], width: int) -> str:
    """LLVM IR of ``packed_margins(n, order, ref, a, b, matrix, out)``: for ``i < n``, row = order[i],
    ``out[row, k] = sum_j (A[j] - B[j]) * R[j]`` over member ``k``'s ``dims[k]`` columns from
    ``offsets[k]`` (multiples of LANES), where R, A, B are rows ``ref[row]``, ``a[row]``, ``b[row]`` of the
    row-major (images, width) ``matrix`` of ``element`` values. Sums of products are allowed to fuse and
    reassociate (they run in LANES partial sums)."""
    t, vt, vf = element, f"<{LANES} x {element}>", f"<{LANES} x float>"
    ir = [f"define void @packed_margins(i64 %n, i64* noalias %order, i64* noalias %ref, i64* noalias %a, i64* noalias %b, "
          f"{t}* noalias %m, float* noalias %out) {{",
          "entry:", "  br label %row_head",
          "row_head:", "  %i = phi i64 [0, %entry], [%i_next, %row_end]",
          "  %done = icmp sge i64 %i, %n", "  br i1 %done, label %exit, label %row_body",
          "row_body:", "  %order_i = getelementptr i64, i64* %order, i64 %i", "  %row = load i64, i64* %order_i"]
    for s in ("ref", "a", "b"):
        ir += [f"  %{s}_at = getelementptr i64, i64* %{s}, i64 %row", f"  %{s}_image = load i64, i64* %{s}_at",
               f"  %{s}_start = mul i64 %{s}_image, {width}", f"  %{s}_row = getelementptr {t}, {t}* %m, i64 %{s}_start"]
    ir += [f"  %out_start = mul i64 %row, {len(dims)}", "  %out_row = getelementptr float, float* %out, i64 %out_start",
           "  br label %k0_head"]
    for k, (offset, dim) in enumerate(zip(offsets, dims)):
        after = f"k{k + 1}_head" if k + 1 < len(dims) else "row_end"
        ir += [f"k{k}_head:", f"  br label %k{k}_loop", f"k{k}_loop:",
               f"  %j{k} = phi i64 [{offset}, %k{k}_head], [%j_next{k}, %k{k}_loop]",
               f"  %acc{k} = phi {vf} [zeroinitializer, %k{k}_head], [%acc_next{k}, %k{k}_loop]"]
        value = {}
        for s in ("ref", "a", "b"):
            ir += [f"  %{s}_p{k} = getelementptr {t}, {t}* %{s}_row, i64 %j{k}", f"  %{s}_v{k} = bitcast {t}* %{s}_p{k} to {vt}*",
                   f"  %{s}_x{k} = load {vt}, {vt}* %{s}_v{k}, align 2"]
            if t != "float":
                ir.append(f"  %{s}_f{k} = fpext {vt} %{s}_x{k} to {vf}")
            value[s] = f"%{s}_{'x' if t == 'float' else 'f'}{k}"
        ir += [f"  %diff{k} = fsub {vf} {value['a']}, {value['b']}", f"  %prod{k} = fmul contract {vf} %diff{k}, {value['ref']}",
               f"  %acc_next{k} = fadd contract {vf} %acc{k}, %prod{k}", f"  %j_next{k} = add i64 %j{k}, {LANES}",
               f"  %end{k} = icmp eq i64 %j_next{k}, {offset + dim}", f"  br i1 %end{k}, label %k{k}_sum, label %k{k}_loop",
               f"k{k}_sum:", f"  %sum{k} = call reassoc float @llvm.vector.reduce.fadd.v{LANES}f32(float 0.0, {vf} %acc_next{k})",
               f"  %out_p{k} = getelementptr float, float* %out_row, i64 {k}", f"  store float %sum{k}, float* %out_p{k}",
               f"  br label %{after}"]
    ir += ["row_end:", "  %i_next = add i64 %i, 1", "  br label %row_head", "exit:", "  ret void", "}",
           f"declare float @llvm.vector.reduce.fadd.v{LANES}f32(float, {vf})"]
    return "\n".join(ir)


def _kernel(element: str, offsets: tuple[int, ...], dims: tuple[int, ...], width: int):
    layout = (element, offsets, dims, width)
    with _kernels_lock:
        if layout not in _kernels:
            ptr = ctypes.c_void_p
            _kernels[layout] = compile_ir(margins_ir(*layout), "packed_margins", (ctypes.c_int64, ptr, ptr, ptr, ptr, ptr, ptr),
                                          default_cache_dir(), "margins")
        return _kernels[layout][1]


class PackedEmbeddings:
    """Members' normalised embeddings side by side: ``matrix`` is (images, width), C-contiguous, of
    ``dtype``; member ``i`` is the column slice ``offsets[i]:offsets[i] + dims[i]`` (then zeros up to the
    next multiple of LANES)."""

    def __init__(self, embeddings: Sequence[np.ndarray], dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype not in IR_TYPES:
            raise ValueError(f"packed embeddings are float32 or float16, not {self.dtype}")
        self.dims = [int(e.shape[1]) for e in embeddings]
        self._padded = tuple(-(-d // LANES) * LANES for d in self.dims)
        self.offsets = np.cumsum([0, *self._padded[:-1]]).astype(np.intp)
        n = len(embeddings[0]) if embeddings else 0
        self.matrix = np.zeros((n, int(sum(self._padded))), self.dtype)
        for e, o, d in zip(embeddings, self.offsets, self.dims):
            self.matrix[:, o: o + d] = e

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def views(self) -> list[np.ndarray]:
        """Each member's embeddings as a view into ``matrix`` (no copy)."""
        return [self.matrix[:, o: o + d] for o, d in zip(self.offsets, self.dims)]

    def margins(self, ref: np.ndarray, a: np.ndarray, b: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """(rows, members) float32 margins ``r . a - r . b`` = ``d(R,B) - d(R,A)``."""
        ref, a, b = (np.asarray(x, dtype=np.int64) for x in (ref, a, b))
        if not len(ref) == len(a) == len(b):
            raise ValueError("ref, a and b must have the same length")
        n = len(ref)
        out = np.empty((n, len(self.dims)), np.float32)
        if n == 0 or not self.dims:
            return out
        for x in (ref, a, b):
            if x.min() < -len(self) or x.max() >= len(self):
                raise IndexError(f"image index out of range for {len(self)} images")
        # numpy's negative indices; the kernel reads the arrays, so they must be contiguous int64
        ref, a, b = (np.ascontiguousarray(np.where(x < 0, x + len(self), x)) for x in (ref, a, b))
        order = np.argsort(ref, kind="stable").astype(np.int64)  # same reference, neighbouring rows: its row stays in cache
        kernel = _kernel(IR_TYPES[self.dtype], tuple(map(int, self.offsets)), self._padded, self.matrix.shape[1])
        pointers = [x.ctypes.data for x in (ref, a, b, self.matrix, out)]

        def block(start: int, stop: int) -> None:
            kernel(stop - start, order.ctypes.data + start * order.itemsize, *pointers)

        each_block(n, block, block_rows=BLOCK_ROWS, threads=threads)
        return out
