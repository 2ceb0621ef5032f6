"""Native kernels from LLVM IR: compiled for this CPU, object code cached on disk and reused."""
from __future__ import annotations

import ctypes

import numpy as np

from ctxsim.native import CACHE_SUBDIR, compile_ir

SCALE_IR = """define void @scale(i64 %n, double* noalias %x, double %k) {
entry:
  br label %head
head:
  %i = phi i64 [0, %entry], [%next, %body]
  %done = icmp sge i64 %i, %n
  br i1 %done, label %exit, label %body
body:
  %p = getelementptr double, double* %x, i64 %i
  %v = load double, double* %p
  %w = fmul double %v, %k
  store double %w, double* %p
  %next = add i64 %i, 1
  br label %head
exit:
  ret void
}"""
ARGS = (ctypes.c_int64, ctypes.c_void_p, ctypes.c_double)


def test_compiled_function_runs_and_its_object_code_is_reused(tmp_path):
    x = np.arange(5, dtype=np.float64)
    engine, scale = compile_ir(SCALE_IR, "scale", ARGS, tmp_path, "test")
    scale(len(x), x.ctypes.data, 2.5)
    np.testing.assert_array_equal(x, np.arange(5) * 2.5)
    objects = list((tmp_path / CACHE_SUBDIR).glob("test-*.o"))
    assert len(objects) == 1
    stamp = objects[0].stat().st_mtime_ns
    _engine2, again = compile_ir(SCALE_IR, "scale", ARGS, tmp_path, "test")  # loaded, not compiled again
    again(2, x.ctypes.data, 2.0)
    np.testing.assert_array_equal(x[:3], [0.0, 5.0, 5.0])
    assert list((tmp_path / CACHE_SUBDIR).glob("test-*.o")) == objects and objects[0].stat().st_mtime_ns == stamp
    compile_ir(SCALE_IR.replace("fmul", "fadd"), "scale", ARGS, tmp_path, "test")  # other IR: its own object
    assert len(list((tmp_path / CACHE_SUBDIR).glob("test-*.o"))) == 2
