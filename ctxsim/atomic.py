"""Write outputs to a temporary file beside the target and rename it, so nothing is half-written.

A folder written with :func:`atomic_dir` is a symlink ``NAME -> .NAME.v<id>/``: replacing it builds the
new version beside the old one and swaps the link with one ``os.replace``, so a crash at any moment
leaves either the old or the new version at ``NAME``, never nothing. Leftovers of killed runs
(``.NAME.<id>.part/`` staging folders, versions no link points to) are removed by the next run to
the same place.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Mode of a newly created file before the umask applies (what ``open(path, "w")`` gives).
_DEFAULT_FILE_MODE = 0o666


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_problem(target: str | os.PathLike, *, folder: bool = False) -> str | None:
    """Why ``target`` cannot be written (checked before any work), or None: the nearest existing parent
    must accept a new file, and ``target`` must not be a folder where a file is written (or, with
    ``folder``, a file where a folder is written)."""
    target = Path(target)
    if folder and target.exists() and not target.is_dir():
        return "exists and is not a folder: cannot write a run folder there"
    if not folder and target.is_dir():
        return "is a folder: expected the path of a file to write"
    parent = target.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be written: {parent} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".ctxsim-write-probe.", dir=parent)
    except OSError as err:
        return f"cannot be written: {parent}: {err.strerror or err}"
    os.close(fd)
    os.unlink(probe)
    return None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; it replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, _DEFAULT_FILE_MODE & ~_umask())  # mkstemp makes 0600 files; give the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def _version_name(name: str) -> str:
    return f".{name}.v{uuid.uuid4().hex}"


def _siblings(target: Path, kind: str) -> list[Path]:
    """Staging folders (``part``) or versions (``version``) of ``target`` in its folder."""
    pattern = re.compile(re.escape(f".{target.name}.") + (r"[a-z0-9_]{8}\.part" if kind == "part" else r"v[0-9a-f]{32}"))
    with contextlib.suppress(OSError):
        return [p for p in target.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    return []


def _link_to(target: Path, version: Path) -> None:
    """Point ``target`` (a symlink or nothing) at ``version`` in one rename."""
    tmp_link = target.parent / f".{target.name}.{uuid.uuid4().hex}.link"
    os.symlink(version.name, tmp_link)
    try:
        os.replace(tmp_link, target)
    except BaseException:
        tmp_link.unlink(missing_ok=True)
        raise


def _current_version(target: Path) -> Path | None:
    if not target.is_symlink():
        return None
    dest = Path(os.readlink(target))
    return target.parent / dest if not dest.is_absolute() else dest


def _recover(target: Path) -> None:
    """Repair what a killed run left: a real folder becomes a version behind a link (rename, then link;
    if killed in between, the version is linked here); orphaned staging folders and versions go."""
    if not target.exists() and not target.is_symlink():
        versions = sorted(_siblings(target, "version"), key=lambda p: p.stat().st_mtime)
        if versions:  # killed between the conversion's rename and its link: put the newest back
            _link_to(target, versions[-1])
    elif target.is_dir() and not target.is_symlink():  # a run folder from before links: convert it
        version = target.parent / _version_name(target.name)
        os.replace(target, version)
        _link_to(target, version)
    current = _current_version(target)
    for orphan in _siblings(target, "part"):
        shutil.rmtree(orphan, ignore_errors=True)
    for version in _siblings(target, "version"):
        if current is None or os.path.abspath(version) != os.path.abspath(current):
            shutil.rmtree(version, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, writer: str = "ctxsim run"):
    """One writer at a time per output (a lock file beside it): a second one fails at once."""
    target = Path(target)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another {writer} is writing {target}") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                lock_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it takes ``target``'s place (replacing an older folder)
    only if the block succeeds, so a failed run never leaves a half-written folder. ``target`` becomes
    a symlink to a versioned folder beside it; the swap from the old version to the new is one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise FileExistsError(errno.EEXIST, "exists and is not a folder", str(target))
    with exclusive_lock(target):
        _recover(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        try:
            yield tmp
            tmp.chmod(0o755)  # mkdtemp makes it private; a run folder is an ordinary folder
            old = _current_version(target)
            version = target.parent / _version_name(target.name)
            os.replace(tmp, version)
            _link_to(target, version)  # the one step that swaps old for new
            if old is not None and old.parent == target.parent and old.name.startswith(f".{target.name}.v"):
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
