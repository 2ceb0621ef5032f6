"""LLVM IR compiled to native code for this CPU with llvmlite (no C compiler needed on the machine).

ctxsim generates small kernels whose shapes are known only at run time (a stacker's trees, the layout of
the members' embeddings) and compiles them here at -O2. The object code is cached on disk in
``cache_root/compiled`` keyed by the IR, llvmlite, the target triple and the CPU, so each kernel is
compiled once per machine; later processes only load it."""
from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: Folder of the object code under a cache root (shared with the compiled stacker trees).
CACHE_SUBDIR = "compiled"


def compile_ir(ir: str, function: str, argtypes: Sequence, cache_root: str | os.PathLike, prefix: str):
    """(execution engine, ctypes function) of ``function`` in ``ir``; keep the engine alive as long as the
    function is called. Cached object code is ``cache_root/compiled/<prefix>-<key>.o``. ctypes releases
    the GIL during the call, so kernels run in threads."""
    import llvmlite
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    key = hashlib.sha256("\0".join((ir, llvmlite.__version__, llvm.get_process_triple(), cpu, features)).encode()).hexdigest()[:32]
    folder = Path(cache_root) / CACHE_SUBDIR
    cached = folder / f"{prefix}-{key}.o"
    machine = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features, opt=2)
    if cached.exists():  # the object code alone: nothing to parse or optimise
        module = llvm.parse_assembly("")
    else:
        module = llvm.parse_assembly(ir)
        module.verify()
        builder = llvm.create_pass_manager_builder()
        builder.opt_level = 2
        passes = llvm.create_module_pass_manager()
        builder.populate(passes)
        passes.run(module)
    engine = llvm.create_mcjit_compiler(module, machine)

    def save(_module, buffer: bytes) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:  # never a half-written file
            tmp.write(buffer)
        os.replace(tmp.name, cached)

    engine.set_object_cache(save, lambda _module: cached.read_bytes() if cached.exists() else None)
    engine.finalize_object()
    return engine, ctypes.CFUNCTYPE(None, *argtypes)(engine.get_function_address(function))
