"""Every bad input through every command that takes it: exit 2 (1 for a full disk), one line per
problem naming the file, no traceback, and no output file or folder left behind."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from ctxsim.cli import main
from ctxsim.config import load_config
from ctxsim.run_folder import RunFolder
from ctxsim.train.pipeline import train_run
from tests.synthetic import write_training_set, write_unseen_set

TINY = ["backbone=test_tiny", "views=[]", "folds=2", "member.epochs=1", "contexts.min_triplets=10"]
TRAIN = ["train", "--no-track", *[a for s in TINY for a in ("--set", s)]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    csv = write_training_set(root, per_group=6, pairs_per_ref=6)
    train_run(csv, root / "run", cfg=load_config(None, TINY), progress=False)
    return root, csv, write_unseen_set(root, per_group=3, pairs_per_ref=2)


@pytest.fixture
def ctx(trained, tmp_path, monkeypatch):
    root, csv, unseen = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run, symlinks=False)  # a real folder each test may damage
    empty = tmp_path / "empty.csv"
    empty.write_text("ref,a,b,label,context\n")
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    if os.geteuid() == 0:  # root writes through permission bits: /sys refuses new files even to root
        readonly = Path("/sys")
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return {"root": root, "csv": csv, "unseen": unseen, "run": run, "empty": empty, "file": file,
            "ro": readonly, "tmp": tmp_path, "out": tmp_path / "out", "monkeypatch": monkeypatch}


def member_file(c) -> Path:
    return sorted((c["run"] / "members").glob("*.safetensors"))[0]


def truncate_member(c):
    f = member_file(c)
    f.write_bytes(f.read_bytes()[:50])
    return f.name


def random_member(c):
    f = member_file(c)
    f.write_bytes(os.urandom(f.stat().st_size))
    return f.name


def random_member_with_matching_digest(c):  # a consistent forgery: the digest check passes
    from ctxsim.run_folder import file_sha256

    name = random_member(c)
    manifest = json.loads((c["run"] / "run.json").read_text())
    manifest["files"][f"members/{name}"] = file_sha256(c["run"] / "members" / name)
    (c["run"] / "run.json").write_text(json.dumps(manifest))
    return name


def bad_manifest(c):
    (c["run"] / "run.json").write_text("{not json")
    return "run.json"


def disk_full(target, method):
    def setup(c):
        module, _, attr = target.rpartition(".")
        owner = {"RunFolder": RunFolder, "DataFrame": pl.DataFrame}[module]

        def full(*a, **k):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(c["out"]))

        c["monkeypatch"].setattr(owner, attr, full)
        return "out"
    return setup


no_setup = None
# id, setup (returns a name the message must carry, or None), argv ({key} from ctx), exit code, the message must name
CASES = [
    ("train-header-only", no_setup, [*TRAIN, "--triplets", "{empty}", "--out", "{out}"], 2, "{empty}"),
    ("validate-require-label-header-only", no_setup, ["data", "validate", "--require-label", "{empty}"], 2, "{empty}"),
    ("split-header-only-ok", no_setup, ["data", "validate", "{empty}"], 0, None),
    ("train-out-is-a-file", no_setup, [*TRAIN, "--triplets", "{csv}", "--out", "{file}"], 2, "{file}"),
    ("train-out-read-only", no_setup, [*TRAIN, "--triplets", "{csv}", "--out", "{ro}/run"], 2, "{ro}/run"),
    ("compare-out-read-only", no_setup, ["compare", "{run}", "{unseen}", "--out", "{ro}/s.csv"], 2, "{ro}/s.csv"),
    ("compare-out-is-a-folder", no_setup, ["compare", "{run}", "{unseen}", "--out", "{tmp}"], 2, "{tmp}"),
    ("compare-report-read-only", no_setup, ["compare", "{run}", "{unseen}", "--out", "{out}", "--report", "{ro}/r"], 2, "{ro}/r"),
    ("compare-truncated-member", truncate_member, ["compare", "{run}", "{unseen}", "--out", "{out}"], 2, "{setup}"),
    ("compare-random-member", random_member, ["compare", "{run}", "{unseen}", "--out", "{out}"], 2, "{setup}"),
    ("compare-forged-member", random_member_with_matching_digest, ["compare", "{run}", "{unseen}", "--out", "{out}"], 2, "{setup}"),
    ("compare-run-json-not-json", bad_manifest, ["compare", "{run}", "{unseen}", "--out", "{out}"], 2, "{setup}"),
    ("compare-missing-run-folder", no_setup, ["compare", "{tmp}/no_such_run", "{unseen}", "--out", "{out}"], 2, "{tmp}/no_such_run"),
    ("compare-unknown-registered-model", no_setup, ["compare", "models:/no_such_model@champion", "{unseen}", "--out", "{out}"], 2, "no_such_model"),
    ("compare-empty-triplets-missing", no_setup, ["compare", "{run}", "{tmp}/none.csv", "--out", "{out}"], 2, "{tmp}/none.csv"),
    ("train-disk-full", disk_full("RunFolder.write_metrics", None), [*TRAIN, "--triplets", "{csv}", "--out", "{out}"], 2, "{out}"),
    ("compare-disk-full", disk_full("DataFrame.write_csv", None), ["compare", "{run}", "{unseen}", "--out", "{out}"], 2, "{out}"),
]


@pytest.mark.parametrize("case_id, setup, argv, code, names", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, setup, argv, code, names, ctx, capsys):
    values = {k: v for k, v in ctx.items() if isinstance(v, Path)}
    values["setup"] = setup(ctx) if setup else ""
    args = [a.format(**values) for a in argv]
    def listing():  # the embedding cache and the tracking store are not outputs
        return sorted(p.name for p in ctx["tmp"].iterdir() if p.name not in ("cache", "mlflow.db")
                      and not p.name.startswith((".out.partial", ".out.progress")))

    before = listing()
    assert main(args) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code:
        lines = [line for line in err.splitlines() if line.startswith("error")]
        assert lines, err
        assert all(names.format(**values) in line for line in lines), err
        assert not ctx["out"].exists() and not ctx["out"].is_symlink()
        # nothing half-written beside the outputs (a compare keeps its resume state hidden, by design)
        assert listing() == before
