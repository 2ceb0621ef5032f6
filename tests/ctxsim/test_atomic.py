"""Outputs appear whole or not at all: files via atomic_path, run folders via atomic_dir."""
from __future__ import annotations

import os

import pytest

from ctxsim.atomic import atomic_dir, atomic_path


def test_atomic_path_keeps_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_atomic_dir_appears_whole_and_replaces_an_older_folder(tmp_path):
    target = tmp_path / "run"
    with atomic_dir(target) as folder:
        (folder / "a.json").write_text("1")
        assert not target.exists()  # nothing visible until the block ends
    assert (target / "a.json").read_text() == "1"
    with atomic_dir(target) as folder:
        (folder / "b.json").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"]
    # no temporary folders left behind: only the link and the one version it points to
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", os.readlink(target)])


def test_atomic_dir_leaves_nothing_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "run") as folder:
        (folder / "a.json").write_text("1")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
