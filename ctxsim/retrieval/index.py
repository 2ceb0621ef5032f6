"""A catalogue index: every image under a folder, embedded by every member of a model, in a vector store.

The index is a folder: ``index.json`` (the model's fingerprint, the store's URI, a collection per
member and its dimension) and, for the embedded default, the Milvus Lite database ``milvus.db``. A
Milvus server instead (``uri="http://host:19530"``) keeps the vectors there; the folder keeps the
manifest. Images are keyed by content digest: building again into the same index embeds and adds only
images it does not hold yet (in every member's collection), in batches, so an interrupted build goes on
where it stopped.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ctxsim.atomic import write_text_atomic
from ctxsim.data.images import file_digest, image_problem
from ctxsim.embedding.bad_images import write_bad_images
from ctxsim.embedding.progress import Progress
from ctxsim.errors import InputError, Problem
from ctxsim.retrieval.store import MilvusStore, VectorStore, collection_name

log = logging.getLogger("ctxsim")

INDEX_FILE = "index.json"
LITE_FILE = "milvus.db"
INDEX_FORMAT = 1
#: Images embedded and added per batch (each batch is committed: an interrupted build resumes after it).
DEFAULT_BATCH_IMAGES = 512
#: File name suffixes taken as images when a folder is indexed.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Threads that hash and check image files.
IO_THREADS = 8


@dataclass
class Manifest:
    model: str
    fingerprint: str
    uri: str | None = None  # None: Milvus Lite in the index folder
    prefix: str = "ctxsim"
    members: dict[str, dict] = field(default_factory=dict)  # name -> {"collection": str, "dim": int}
    format: int = INDEX_FORMAT

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / INDEX_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError([Problem(str(folder), f"not a catalogue index (no {INDEX_FILE}); build one with `ctxsim index build`")]) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError([Problem(str(path), f"unreadable index manifest ({err})")]) from None
        if data.get("format") != INDEX_FORMAT:
            raise InputError([Problem(str(path), f"index format {data.get('format')!r}, this ctxsim reads {INDEX_FORMAT}")])
        return cls(**data)

    def write(self, folder: Path) -> None:
        write_text_atomic(folder / INDEX_FILE, json.dumps(asdict(self), indent=1))


class CatalogueIndex:
    """An opened index: its manifest and its store."""

    def __init__(self, folder: str | os.PathLike, manifest: Manifest, store: VectorStore | None = None):
        self.folder, self.manifest = Path(folder), manifest
        self.store = store if store is not None else MilvusStore(manifest.uri or str(self.folder / LITE_FILE))

    @classmethod
    def open(cls, folder: str | os.PathLike, store: VectorStore | None = None) -> CatalogueIndex:
        return cls(folder, Manifest.read(Path(folder)), store)

    @property
    def members(self) -> list[str]:
        return list(self.manifest.members)

    def collection(self, member: str) -> str:
        return self.manifest.members[member]["collection"]

    def check_model(self, comparator) -> None:
        if comparator.fingerprint() != self.manifest.fingerprint:
            raise InputError([Problem(str(self.folder), f"built with another model ({self.manifest.model}); "
                                                        "search it with that model or build a new index")])

    def size(self) -> int:
        """Images in every member's collection."""
        return min((self.store.count(self.collection(m)) for m in self.members), default=0)

    def search(self, member: str, vectors: np.ndarray, k: int) -> list[list[tuple[str, str, float]]]:
        return self.store.search(self.collection(member), vectors, k)

    def held(self, digests: Sequence[str], members: Sequence[str]) -> set[str]:
        """The digests held by every one of ``members``' collections."""
        held = None
        for m in members:
            have = self.store.existing(self.collection(m), digests) if m in self.manifest.members else set()
            held = have if held is None else held & have
        return held or set()

    def close(self) -> None:
        self.store.close()


def list_images(root: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()) -> list[str]:
    """Every image file under ``root`` (by suffix, case-insensitive), as sorted absolute paths; hidden
    folders and ``exclude`` (an index folder inside the catalogue) are left out."""
    root = Path(root).resolve()
    skip = {Path(e).resolve() for e in exclude}
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and Path(folder, d).resolve() not in skip]
        out += [Path(folder, f).as_posix() for f in files if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
    return sorted(out)


@dataclass
class BuildResult:
    images: int  # unique images (by content) found under the root
    added: int
    already: int
    bad: list[Problem]
    index: Path


def _threads(fn: Callable, items: Sequence) -> list:
    with ThreadPoolExecutor(IO_THREADS) as pool:
        return list(pool.map(fn, items))


def build_index(
    comparator,
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str,
    uri: str | None = None,
    store: VectorStore | None = None,
    batch_images: int = DEFAULT_BATCH_IMAGES,
    skip_bad_images: bool = False,
    progress: bool = True,
    paths: Sequence[str] | None = None,
) -> BuildResult:
    """Embed every image under ``root`` not yet in the index at ``out`` with every member of
    ``comparator`` and add it. Raises :class:`InputError` (nothing added) for unreadable images unless
    ``skip_bad_images``: then they are left out and listed in ``<out>.bad-images.txt``."""
    out = Path(out)
    root_path = Path(root)
    if not root_path.is_dir():
        raise InputError([Problem(str(root), "not a folder of images")])
    paths = list(paths) if paths is not None else list_images(root_path, exclude=[out])
    if not paths:
        raise InputError([Problem(str(root), f"no image files ({', '.join(IMAGE_SUFFIXES)}) under this folder")])
    log.info("index: hashing %d image files", len(paths))
    by_digest = dict(zip(_threads(file_digest, paths)[::-1], paths[::-1]))  # the first path of a duplicate wins
    digests = sorted(by_digest, key=lambda d: by_digest[d])

    manifest = Manifest.read(out) if (out / INDEX_FILE).is_file() else Manifest(model, comparator.fingerprint(), uri)
    if uri is not None and manifest.uri != uri:
        raise InputError([Problem(str(out), f"index kept at {manifest.uri or 'its own Milvus Lite file'}, not {uri}")])
    out.mkdir(parents=True, exist_ok=True)
    index = CatalogueIndex(out, manifest, store)
    try:
        index.check_model(comparator)
        members = list(comparator.member_names)
        held = index.held(digests, members)
        todo = [d for d in digests if d not in held]
        log.info("index: %d unique images, %d already indexed, %d to add", len(digests), len(held), len(todo))
        problems = [Problem(by_digest[d], reason) for d, reason in zip(todo, _threads(lambda d: image_problem(by_digest[d]), todo)) if reason]
        if problems and not skip_bad_images:
            raise InputError(problems)
        if problems:
            listed = write_bad_images(out, [(p.file, p.message) for p in problems])
            log.warning("index: skipping %d unreadable images (listed in %s)", len(problems), listed)
            bad = {p.file for p in problems}
            todo = [d for d in todo if by_digest[d] not in bad]
        with Progress(len(todo), "index build", "img", enabled=progress) as bar:
            for start in range(0, len(todo), batch_images):
                part = todo[start : start + batch_images]
                part_paths = [by_digest[d] for d in part]
                embeddings = comparator.member_embeddings(part_paths)
                for m in members:
                    vectors = np.ascontiguousarray(embeddings[m], dtype=np.float32)
                    if m not in manifest.members:
                        manifest.members[m] = {"collection": collection_name(manifest.prefix, m), "dim": int(vectors.shape[1])}
                        index.store.create(index.collection(m), vectors.shape[1])
                        manifest.write(out)
                    index.store.upsert(index.collection(m), part, vectors, part_paths)
                bar.update(len(part))
        if not (out / INDEX_FILE).is_file():
            manifest.write(out)
        return BuildResult(len(digests), len(todo), len(held), problems, out)
    finally:
        index.close()
