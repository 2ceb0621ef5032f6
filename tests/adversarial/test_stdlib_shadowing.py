"""No project module may take a standard-library module's name: running a script puts its folder first on
``sys.path``, and a ``profile.py`` there broke ``python benchmarks/run.py steady_state`` (timm -> torch._dynamo
-> cProfile -> ``import profile`` found the benchmark instead of the standard library)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["ctxsim", "contexts", "members", "ensemble", "labeling", "reports", "benchmarks", "tools"]

#: Known stdlib-named modules inside package folders that no script is run from (so the folder never goes on
#: ``sys.path``; they are only imported as ``ctxsim.<package>.<name>``). Owned by other work; kept visible here.
#: Any folder that holds a script must have none (checked below), and no new one may appear anywhere.
KNOWN: set[str] = set()


def _modules():
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if "__pycache__" in path.parts:
                continue
            if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").is_file()):
                yield path


def _is_script(path: Path) -> bool:
    text = path.read_text(errors="replace")
    return path.suffix == ".py" and ("__name__ == \"__main__\"" in text or "__name__ == '__main__'" in text)


def test_no_module_has_a_stdlib_name():
    shadowing = {p.relative_to(ROOT).as_posix() for p in _modules() if p.stem in sys.stdlib_module_names}
    assert shadowing <= KNOWN, f"modules named like the standard library: {sorted(shadowing - KNOWN)}"


def test_no_script_folder_holds_a_stdlib_name():
    script_dirs = {p.parent for p in _modules() if p.is_file() and _is_script(p)}
    assert ROOT / "benchmarks" in script_dirs  # the scan sees the benchmark scripts
    bad = [p.relative_to(ROOT).as_posix() for p in _modules() if p.parent in script_dirs and p.stem in sys.stdlib_module_names]
    assert not bad, f"a script's folder goes first on sys.path and these shadow the standard library: {bad}"


def _env():
    return os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}


def test_benchmark_runner_help_exits_0():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--help"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "profiling" in proc.stdout


def test_timm_imports_with_the_benchmarks_folder_first_on_sys_path():
    """What ``python benchmarks/run.py steady_state`` does: the benchmarks folder is sys.path[0] when timm
    (and through it torch._dynamo and cProfile) is imported."""
    code = "import sys, timm, cProfile, profile; assert profile.__file__.startswith(sys.base_prefix) or 'benchmarks' not in profile.__file__, profile.__file__"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "benchmarks", env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
