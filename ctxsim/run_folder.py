"""The run folder: the one module that knows its layout.

A trained run is a folder::

    run.json        the manifest (:class:`RunManifest`): format version, backbone, members, contexts,
                    config, and the sha256 of every model file
    contexts/       the contexts' own files (:meth:`ctxsim.contexts.membership.Contexts.save`)
    members/        the members' specs and weights (:func:`ctxsim.members.member.save_members`)
    ensemble/       the stacker and baselines (:meth:`ctxsim.ensemble.selection.Ensemble.save`)
    trust/          selective answers: the out-of-fold confidences and correctness of the chosen combiner
                    (``calibration.safetensors``) and the thresholds of the common targets (``thresholds.json``)
    known/          the content digests of the training images (:class:`ctxsim.ensemble.regime.KnownImages`)
    metrics.json    out-of-fold metrics of training
    report/         the out-of-fold validation report (not part of the model)

Contexts, members and ensemble save into the sub-folder this module gives them and never name a
file of the run. Loading checks the format and every model file's digest, so a run of an unknown or
newer format, or with a changed file, is refused with one line naming the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ctxsim import __version__
from ctxsim.atomic import atomic_dir
from ctxsim.contexts.membership import Contexts
from ctxsim.ensemble.regime import KnownImages
from ctxsim.ensemble.selection import Ensemble
from ctxsim.ensemble.selective import SelectiveCalibration
from ctxsim.errors import InputError, Problem
from ctxsim.members.inference import MemberSet, MemberSpec, save_members

#: The layout this code writes and reads; a run of another format is refused.
FORMAT_VERSION = 2
MANIFEST_FILE = "run.json"
CONTEXTS_DIR, MEMBERS_DIR, ENSEMBLE_DIR = "contexts", "members", "ensemble"
TRUST_DIR, KNOWN_DIR = "trust", "known"
#: The model: what a run's answers depend on (digests are kept for every file in these).
MODEL_DIRS = (CONTEXTS_DIR, MEMBERS_DIR, ENSEMBLE_DIR, TRUST_DIR, KNOWN_DIR)
CALIBRATION_FILE, THRESHOLDS_FILE = "calibration.safetensors", "thresholds.json"
METRICS_FILE = "metrics.json"
#: Sub-folder with the validation report and out-of-fold predictions (not part of the model).
REPORT_DIR = "report"
_HASH_BLOCK = 1 << 20


@dataclass
class RunManifest:
    backbone: str
    members: list[str]
    contexts: list[str]
    config: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # model file (relative path) -> sha256
    format: int = FORMAT_VERSION
    ctxsim: str = __version__

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str) -> RunManifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise _invalid(source, f"not valid JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(data, dict):
            raise _invalid(source, "not a run manifest (expected a JSON object)")
        fmt = data.get("format")
        if fmt != FORMAT_VERSION:
            newer = isinstance(fmt, int) and fmt > FORMAT_VERSION
            what = f"format {fmt} is newer than this ctxsim reads ({FORMAT_VERSION}): upgrade ctxsim" if newer else \
                f"unknown run folder format {fmt!r} (this ctxsim reads format {FORMAT_VERSION}): train the run again"
            raise _invalid(source, what)
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("backbone", "members", "contexts") if n not in data]
        if missing:
            raise _invalid(source, f"missing {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def _invalid(file: str | Path, message: str) -> InputError:
    return InputError([Problem(str(file), message)])


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class RunFolder:
    """Paths of one run folder, and reading and writing its parts."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    contexts_dir = property(lambda self: self.path / CONTEXTS_DIR)
    members_dir = property(lambda self: self.path / MEMBERS_DIR)
    ensemble_dir = property(lambda self: self.path / ENSEMBLE_DIR)
    trust_dir = property(lambda self: self.path / TRUST_DIR)
    known_dir = property(lambda self: self.path / KNOWN_DIR)
    manifest_file = property(lambda self: self.path / MANIFEST_FILE)
    metrics_file = property(lambda self: self.path / METRICS_FILE)
    report_dir = property(lambda self: self.path / REPORT_DIR)

    @staticmethod
    def is_run(path: str | Path) -> bool:
        return (Path(path) / MANIFEST_FILE).is_file()

    def model_files(self) -> list[Path]:
        return sorted(p for d in MODEL_DIRS for p in (self.path / d).rglob("*") if p.is_file())

    # -- writing ------------------------------------------------------------------------------------
    def save_model(self, contexts: Contexts, specs: list[MemberSpec], weights: dict, ensemble: Ensemble,
                   manifest: RunManifest, calibration: SelectiveCalibration | None = None,
                   thresholds: list[dict] | None = None, known: KnownImages | None = None) -> None:
        contexts.save(self.contexts_dir)
        save_members(self.members_dir, specs, weights)
        ensemble.save(self.ensemble_dir)
        if calibration is not None:
            from safetensors.numpy import save_file

            self.trust_dir.mkdir(parents=True, exist_ok=True)
            save_file(calibration.arrays(), str(self.trust_dir / CALIBRATION_FILE))
            (self.trust_dir / THRESHOLDS_FILE).write_text(json.dumps(thresholds or [], indent=1))
        if known is not None:
            known.save(self.known_dir)
        manifest.files = {p.relative_to(self.path).as_posix(): file_sha256(p) for p in self.model_files()}
        self.manifest_file.write_text(manifest.to_json())

    def write_metrics(self, metrics: dict) -> None:
        self.metrics_file.write_text(json.dumps(metrics, indent=1))

    # -- reading ------------------------------------------------------------------------------------
    def manifest(self, *, verify: bool = True) -> RunManifest:
        """The manifest; with ``verify`` every model file must be there with the digest it was saved with."""
        if not self.manifest_file.is_file():
            raise _invalid(self.path, f"not a ctxsim run folder (no {MANIFEST_FILE})")
        try:
            text = self.manifest_file.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise _invalid(self.manifest_file, f"cannot be read ({err})") from None
        manifest = RunManifest.from_json(text, str(self.manifest_file))
        if verify:
            self._verify(manifest)
        return manifest

    def _verify(self, manifest: RunManifest) -> None:
        problems = []
        listed = set(manifest.files)
        for rel, digest in manifest.files.items():
            path = self.path / rel
            if not path.is_file():
                problems.append(Problem(str(path), "missing: the run folder is incomplete"))
            elif file_sha256(path) != digest:
                problems.append(Problem(str(path), "changed since training (sha256 differs from run.json): refusing a tampered or corrupted run"))
        for path in self.model_files():
            if path.relative_to(self.path).as_posix() not in listed:
                problems.append(Problem(str(path), "not listed in run.json: refusing a run with files it was not saved with"))
        if problems:
            raise InputError(problems)

    def load_contexts(self) -> Contexts:
        return Contexts.load(self.contexts_dir)

    def load_members(self, backbone: str, *, pretrained: bool = True) -> MemberSet:
        from safetensors import SafetensorError

        try:
            return MemberSet(self.members_dir, backbone, pretrained=pretrained)
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
            raise InputError(self._unreadable_weights() or [Problem(str(self.members_dir), f"members cannot be loaded ({err})")]) from None

    def _unreadable_weights(self) -> list[Problem]:
        """The members' weight files that safetensors cannot open, one problem each."""
        from safetensors import safe_open

        problems = []
        for path in sorted(self.members_dir.glob("*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():
                        f.get_slice(key)
            except Exception as err:  # noqa: BLE001 - whatever the reader says, the file is unusable
                problems.append(Problem(str(path), f"not a readable safetensors file ({err})"))
        return problems

    def load_ensemble(self) -> Ensemble:
        return Ensemble.load(self.ensemble_dir)

    def load_calibration(self) -> SelectiveCalibration | None:
        """The held-out confidences and correctness of selective answers (None for a run trained without)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = self.trust_dir / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            return SelectiveCalibration.from_arrays(load_file(str(path)))
        except (SafetensorError, OSError, KeyError) as err:
            raise _invalid(path, f"not a readable calibration file ({err})") from None

    def load_known(self) -> KnownImages | None:
        """The training images' digests (None for a run saved without them)."""
        return KnownImages.load(self.known_dir)

    def fingerprint(self) -> str:
        """A digest of the model files (not the report), from the manifest's own digests."""
        h = hashlib.sha256()
        for rel, digest in sorted(self.manifest(verify=False).files.items()):
            h.update(rel.encode() + b"\0" + digest.encode())
        return h.hexdigest()


@contextmanager
def new_run(out: str | Path):
    """A :class:`RunFolder` in a staging folder that takes ``out``'s place only when the block succeeds."""
    with atomic_dir(out) as staging:
        yield RunFolder(staging)
