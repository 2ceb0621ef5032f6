"""Run import-linter's layers contract (pyproject.toml) over ctxsim's source.

ctxsim's card folders (contexts/, members/, ...) become ``ctxsim.<name>`` through setuptools'
package-dir mapping, which import-linter's graph builder cannot see: it walks the folder of the
``ctxsim`` package. So the mapped tree is copied as one ``ctxsim/`` package into a temporary folder
and linted there, in an interpreter that sees that copy and not the editable install.
usage: python tools/check_layers.py   (exit status: lint-imports')
"""
from __future__ import annotations

import re
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("[tool.setuptools.package-dir]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'"(ctxsim[\w.]*)"\s*=\s*"([\w/.]+)"', block))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ctxsim-layers-") as tmp:
        for package, folder in sorted(package_dirs().items()):  # "ctxsim" first, then its mapped sub-packages
            target = Path(tmp).joinpath(*package.split("."))
            shutil.copytree(ROOT / folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "static"))
        shutil.copy(ROOT / "pyproject.toml", Path(tmp) / "pyproject.toml")
        paths = [tmp, *site.getsitepackages()]
        code = "import sys; from importlinter.cli import lint_imports_command; sys.argv = ['lint-imports']; lint_imports_command()"
        # -S: no .pth files, so the editable install's finder cannot shadow the copy; -P: no cwd on sys.path
        return subprocess.run([sys.executable, "-S", "-P", "-c", code], cwd=tmp,
                              env={"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin"}).returncode


if __name__ == "__main__":
    sys.exit(main())
