"""Resumable streaming compare: an interrupted run (an exception in a chunk, or the process killed) goes on
from its last complete chunk with ``resume=True`` / ``--resume``, and writes exactly the bytes of an
uninterrupted run; a partial output of other inputs, model or options is never reused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from ctxsim.cli import main
from ctxsim.compare.comparator import Comparator
from ctxsim.compare.model_uri import load_comparator
from ctxsim.embedding.cache import EmbeddingCache
from ctxsim.compare.scoring import PartialOutput, compare_files, skip_rows

CHUNK = 7


@pytest.fixture
def rows_csv(tmp_path, make_images, write_csv):
    """60 labelled rows with votes over 8 images (several chunks of ``CHUNK`` rows)."""
    images = make_images(8)
    names = [f"images/{p.name}" for p in images]
    rows = [(names[i % 8], names[(i + 1 + i // 8) % 8], names[(i + 3 + i // 5) % 8], "AB"[i % 2], i % 4, (i * 3) % 5)
            for i in range(60)]
    rows = [r for r in rows if len({r[0], r[1], r[2]}) == 3]
    return write_csv(tmp_path / "rows.csv", rows, header=("ref", "a", "b", "label", "votes_a", "votes_b"))


def pixels():
    return load_comparator("backbone:pixels", cache=EmbeddingCache(), progress=False)


def reference(csv: Path, tmp_path: Path, **kw) -> tuple[bytes, list]:
    out = tmp_path / "reference" / "scored.csv"
    tally = compare_files(pixels(), csv, out, chunk_rows=CHUNK, progress=False, **kw)
    return out.read_bytes(), tally.summary()


def interrupt(comp: Comparator, monkeypatch, after_chunks: int) -> list[int]:
    """Make ``comp.predict`` fail on chunk ``after_chunks + 1``; returns the heights it was called with."""
    predict, seen = comp.predict, []

    def failing(chunk, **kw):
        seen.append(chunk.height)
        if len(seen) == after_chunks + 1:
            raise RuntimeError("the machine went away")
        return predict(chunk, **kw)

    monkeypatch.setattr(comp, "predict", failing)
    return seen


def interrupted_run(csv: Path, out: Path, monkeypatch, after_chunks: int) -> None:
    """A compare into ``out`` that fails after ``after_chunks`` finished chunks, leaving its partial output."""
    comp = pixels()
    interrupt(comp, monkeypatch, after_chunks)
    with pytest.raises(RuntimeError, match="went away"):
        compare_files(comp, csv, out, chunk_rows=CHUNK, progress=False)


def counting(comp: Comparator, monkeypatch) -> list[int]:
    predict, seen = comp.predict, []
    monkeypatch.setattr(comp, "predict", lambda chunk, **kw: (seen.append(chunk.height), predict(chunk, **kw))[1])
    return seen


def test_resume_after_an_error_in_a_chunk_gives_the_uninterrupted_output(rows_csv, tmp_path, monkeypatch):
    expected, expected_tally = reference(rows_csv, tmp_path)
    n_rows = pl.read_csv(rows_csv).height
    out = tmp_path / "scored.csv"
    interrupted_run(rows_csv, out, monkeypatch, after_chunks=3)
    partial = PartialOutput(out)
    assert not out.exists()
    state = json.loads(partial.progress.read_text())
    assert state["rows"] == 3 * CHUNK and state["bytes"] == partial.data.stat().st_size

    second = pixels()
    seen = counting(second, monkeypatch)
    tally = compare_files(second, rows_csv, out, chunk_rows=CHUNK, progress=False, resume=True)
    assert sum(seen) == n_rows - 3 * CHUNK  # finished chunks are not scored again
    assert out.read_bytes() == expected
    assert tally.summary() == expected_tally  # accuracy counts carried over from the first run
    assert not partial.data.exists() and not partial.progress.exists()


def test_a_half_written_chunk_is_cut_off_on_resume(rows_csv, tmp_path, monkeypatch):
    expected, _ = reference(rows_csv, tmp_path)
    out = tmp_path / "scored.csv"
    interrupted_run(rows_csv, out, monkeypatch, after_chunks=2)
    with open(PartialOutput(out).data, "ab") as f:  # killed while writing the next chunk
        f.write(b"images/img1.png,images/img2.png,imag")
    compare_files(pixels(), rows_csv, out, chunk_rows=CHUNK, progress=False, resume=True)
    assert out.read_bytes() == expected


def test_resume_with_another_chunk_size_still_gives_the_same_bytes(rows_csv, tmp_path, monkeypatch):
    expected, _ = reference(rows_csv, tmp_path)
    out = tmp_path / "scored.csv"
    interrupted_run(rows_csv, out, monkeypatch, after_chunks=1)
    compare_files(pixels(), rows_csv, out, chunk_rows=CHUNK + 4, progress=False, resume=True)  # progress counts rows
    assert out.read_bytes() == expected


@pytest.mark.parametrize("change", ["input", "options"])
def test_a_partial_output_of_other_inputs_or_options_starts_over(rows_csv, tmp_path, monkeypatch, caplog, change):
    out = tmp_path / "scored.csv"
    interrupted_run(rows_csv, out, monkeypatch, after_chunks=2)
    margins = False
    if change == "input":
        df = pl.read_csv(rows_csv)
        df.reverse().write_csv(rows_csv)  # same size, new order
    else:
        margins = True
    expected, _ = reference(rows_csv, tmp_path, margins=margins)
    fresh = pixels()
    seen = counting(fresh, monkeypatch)
    compare_files(fresh, rows_csv, out, chunk_rows=CHUNK, progress=False, resume=True, margins=margins)
    assert sum(seen) == pl.read_csv(rows_csv).height
    assert "starting over" in caplog.text
    assert out.read_bytes() == expected


def test_without_resume_an_interrupted_run_is_done_again_from_the_start(rows_csv, tmp_path, monkeypatch):
    expected, _ = reference(rows_csv, tmp_path)
    out = tmp_path / "scored.csv"
    interrupted_run(rows_csv, out, monkeypatch, after_chunks=2)
    again = pixels()
    seen = counting(again, monkeypatch)
    compare_files(again, rows_csv, out, chunk_rows=CHUNK, progress=False)
    assert sum(seen) == pl.read_csv(rows_csv).height
    assert out.read_bytes() == expected
    # and resume with nothing left to resume is a plain run
    compare_files(pixels(), rows_csv, out, chunk_rows=CHUNK, progress=False, resume=True)
    assert out.read_bytes() == expected


def test_cli_resume(rows_csv, tmp_path, monkeypatch):
    expected, _ = reference(rows_csv, tmp_path)
    out = tmp_path / "scored.csv"
    predict, calls = Comparator.predict, []

    def failing(self, chunk, **kw):
        calls.append(chunk.height)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return predict(self, chunk, **kw)

    argv = ["compare", "backbone:pixels", str(rows_csv), "--out", str(out), "--chunk-rows", str(CHUNK)]
    monkeypatch.setattr(Comparator, "predict", failing)
    assert main(argv) == 1
    monkeypatch.setattr(Comparator, "predict", predict)
    assert main([*argv, "--resume"]) == 0
    assert out.read_bytes() == expected


def test_resume_after_the_process_is_killed(tmp_path, make_images, write_csv):
    """SIGKILL mid-run (no clean-up at all), then ``ctxsim compare --resume`` in a new process."""
    images = make_images(6)
    names = [f"images/{p.name}" for p in images]
    rows = [(names[i % 6], names[(i + 1) % 6], names[(i + 2 + i // 6 % 3) % 6], "AB"[i % 2]) for i in range(400)]
    csv = write_csv(tmp_path / "big.csv", rows)
    expected = tmp_path / "expected.csv"
    compare_files(pixels(), csv, expected, chunk_rows=20, progress=False)

    out = tmp_path / "scored.csv"
    slow = ("import sys, time\n"
            "from ctxsim.compare.comparator import Comparator\n"
            "predict = Comparator.predict\n"
            "def slow(self, chunk, **kw):\n"
            "    time.sleep(0.1)\n"
            "    return predict(self, chunk, **kw)\n"
            "Comparator.predict = slow\n"
            "from ctxsim.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    argv = ["compare", "backbone:pixels", str(csv), "--out", str(out), "--chunk-rows", "20"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", slow, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = PartialOutput(out).progress
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        state = PartialOutput(out).read_progress()
        if state and state["rows"] >= 60:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads(progress.read_text())
    assert 60 <= state["rows"] < 400 and not out.exists()

    assert main([*argv, "--resume"]) == 0
    assert out.read_bytes() == expected.read_bytes()


def test_skip_rows_across_chunks():
    chunks = [pl.DataFrame({"x": range(i, i + 5)}) for i in range(0, 15, 5)]
    got = list(skip_rows(iter(chunks), 7))
    assert [c["x"].to_list() for c in got] == [[7, 8, 9], [10, 11, 12, 13, 14]]
    assert list(skip_rows(iter(chunks), 15)) == []
    assert [c.height for c in skip_rows(iter(chunks), 0)] == [5, 5, 5]


def test_a_second_compare_on_the_same_output_is_refused(rows_csv, tmp_path, monkeypatch):
    out = tmp_path / "scored.csv"
    comp = pixels()
    predict = comp.predict
    inner = []

    def nested(chunk, **kw):
        if not inner:
            inner.append(1)
            with pytest.raises(RuntimeError, match="another `ctxsim compare` is writing"):
                compare_files(pixels(), rows_csv, out, chunk_rows=CHUNK, progress=False)
        return predict(chunk, **kw)

    monkeypatch.setattr(comp, "predict", nested)
    compare_files(comp, rows_csv, out, chunk_rows=CHUNK, progress=False)
    assert pl.read_csv(out).height == pl.read_csv(rows_csv).height
