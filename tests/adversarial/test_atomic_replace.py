"""Replacing a run folder is one rename: a crash at any step leaves the old or the new run at ``--out``."""
from __future__ import annotations

import os

import pytest

from ctxsim import atomic
from ctxsim.atomic import atomic_dir


def _write(target, name, text):
    with atomic_dir(target) as folder:
        (folder / name).write_text(text)


def test_a_crash_between_the_renames_keeps_the_old_run(tmp_path, monkeypatch):
    target = tmp_path / "run"
    _write(target, "a.json", "old")
    real_replace, calls = os.replace, []

    def crash_after_first(src, dst):
        calls.append((src, dst))
        if len(calls) > 1:
            raise KeyboardInterrupt("killed between the renames")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        _write(target, "b.json", "new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (target / "a.json").read_text() == "old" and not (target / "b.json").exists()
    _write(target, "c.json", "newer")  # the next run cleans the leftovers
    assert sorted(p.name for p in target.iterdir()) == ["c.json"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == [os.readlink(target)]


def test_a_real_folder_from_before_is_converted_and_replaced(tmp_path, monkeypatch):
    target = tmp_path / "run"
    target.mkdir()
    (target / "a.json").write_text("old")
    real_replace = os.replace

    def crash_on_the_swap(src, dst):  # the conversion goes through, the swap to the new run does not
        if str(src).endswith(".link") and os.path.islink(dst):
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_the_swap)
    with pytest.raises(KeyboardInterrupt):
        _write(target, "b.json", "new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert target.is_symlink() and (target / "a.json").read_text() == "old"
    _write(target, "b.json", "new")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"]


def test_a_kill_inside_the_conversion_is_recovered(tmp_path):
    target = tmp_path / "run"
    version = tmp_path / f".run.v{'0' * 32}"  # renamed away, killed before the link was made
    version.mkdir()
    (version / "a.json").write_text("old")
    with atomic_dir(target) as folder:
        assert (target / "a.json").read_text() == "old"  # put back before the new run starts
        (folder / "b.json").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"] and not version.exists()


def test_an_orphaned_part_folder_is_cleaned_by_the_next_run(tmp_path):
    orphan = tmp_path / ".run.abcd1234.part"  # what a SIGKILLed run leaves
    orphan.mkdir()
    (orphan / "half.bin").write_bytes(b"x" * 100)
    other = tmp_path / ".run.other.abcd1234.part"  # another target's staging is not ours to delete
    other.mkdir()
    _write(tmp_path / "run", "a.json", "1")
    assert not orphan.exists() and other.exists()


def test_readers_work_through_the_link(tmp_path):
    from ctxsim.run_folder import RunFolder

    target = tmp_path / "run"
    with atomic_dir(target) as folder:
        (folder / "run.json").write_text("{}")
        (folder / "members").mkdir()
        (folder / "members" / "m.safetensors").write_bytes(b"1")
    run = RunFolder(target)
    assert RunFolder.is_run(target) and [p.relative_to(target).as_posix() for p in run.model_files()] == ["members/m.safetensors"]


def test_write_problem_names_unwritable_targets(tmp_path):
    file = tmp_path / "f"
    file.write_text("x")
    assert "not a folder" in atomic.write_problem(file, folder=True)
    assert "is a folder" in atomic.write_problem(tmp_path, folder=False)
    assert atomic.write_problem(tmp_path / "new" / "deeper" / "run", folder=True) is None
    assert list(tmp_path.iterdir()) == [file]
