"""The run folder: one owner of the layout; the manifest's format and digests guard every load."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ctxsim.errors import InputError
from ctxsim.run_folder import FORMAT_VERSION, MANIFEST_FILE, RunFolder, RunManifest, file_sha256


def write_model_files(folder: RunFolder, files: dict[str, bytes]) -> RunManifest:
    for rel, data in files.items():
        path = folder.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = RunManifest(backbone="test_tiny", members=["zeroshot"], contexts=["all"],
                           files={rel: file_sha256(folder.path / rel) for rel in files})
    folder.manifest_file.write_text(manifest.to_json())
    return manifest


@pytest.fixture
def run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    write_model_files(folder, {"contexts/contexts.json": b"{}", "members/global.safetensors": b"\x00" * 64,
                               "ensemble/ensemble.json": b"{}"})
    return folder


def test_manifest_round_trip(run):
    manifest = run.manifest()
    assert manifest.format == FORMAT_VERSION and manifest.backbone == "test_tiny"
    assert sorted(manifest.files) == ["contexts/contexts.json", "ensemble/ensemble.json", "members/global.safetensors"]
    assert [p.relative_to(run.path).as_posix() for p in run.model_files()] == sorted(manifest.files)


def test_a_changed_model_file_is_refused_naming_it(run):
    weights = run.members_dir / "global.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        run.manifest()
    assert len(err.value.problems) == 1
    assert err.value.problems[0].file == str(weights) and "sha256" in err.value.problems[0].message
    run.manifest(verify=False)  # the fingerprint of a resumed compare reads it without verifying


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run.members_dir / "global.safetensors").unlink(), "missing"),
    (lambda run: (run.ensemble_dir / "extra.safetensors").write_bytes(b"x"), "not listed"),
])
def test_missing_or_extra_model_files_are_refused(run, damage, message):
    damage(run)
    with pytest.raises(InputError, match=message):
        run.manifest()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a run manifest"),
    (json.dumps({"backbone": "x", "members": [], "contexts": []}), "unknown run folder format None"),
    (json.dumps({"format": FORMAT_VERSION + 1, "backbone": "x", "members": [], "contexts": []}), "newer than this ctxsim reads"),
    (json.dumps({"format": FORMAT_VERSION, "members": []}), "missing backbone, contexts"),
])
def test_bad_manifests_get_one_clear_line(run, text, message):
    run.manifest_file.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        run.manifest()
    assert [p.file for p in err.value.problems] == [str(run.manifest_file)]


def test_not_a_run_folder(tmp_path):
    assert not RunFolder.is_run(tmp_path)
    with pytest.raises(InputError, match=f"no {MANIFEST_FILE}"):
        RunFolder(tmp_path).manifest()


def test_fingerprint_follows_the_model_files_not_the_report(run):
    before = run.fingerprint()
    run.report_dir.mkdir()
    (run.report_dir / "report.html").write_text("<html>")
    run.write_metrics({"n": np.int64(3).item()})
    assert run.fingerprint() == before
    manifest = run.manifest()
    manifest.files["members/global.safetensors"] = "0" * 64
    run.manifest_file.write_text(manifest.to_json())
    assert run.fingerprint() != before
