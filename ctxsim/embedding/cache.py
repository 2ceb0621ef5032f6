"""Embedding cache keyed by image content and backbone: each unique image is embedded once.

Features live in a SQLite table (one row per image digest and backbone ``cache_key``), so a cache
survives between runs and is shared by processes; :func:`embed_images` computes only what is
missing, in batches, decoding images in threads, with progress (images/s and ETA on a terminal, a
line per stage otherwise), committing to the cache every :data:`COMMIT_EVERY` images: an interrupted
run embeds only what it had not committed. Lookups of 10^5-10^6 digests go in large ``IN (...)``
chunks (:data:`LOOKUP_CHUNK` bound parameters each).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ctxsim.data.images import file_digest, load_image
from ctxsim.embedding.progress import Progress

DEFAULT_BATCH_SIZE = 32
DEFAULT_DECODE_THREADS = 4
#: Images embedded between two commits to the cache (what an interruption can lose).
COMMIT_EVERY = 256
#: Digests per ``IN (...)`` lookup (SQLite >= 3.32 allows 32766 bound parameters).
LOOKUP_CHUNK = 8000
_DTYPE = np.float32


def default_cache_dir() -> Path:
    return Path(os.environ.get("CTXSIM_CACHE", Path.home() / ".cache" / "ctxsim"))


class EmbeddingCache:
    """Vectors keyed by ``(cache_key, image digest)``; in memory, or persisted in ``directory``."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            target = str(self.directory / "embeddings.sqlite")
        else:
            target = ":memory:"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(target, check_same_thread=False, timeout=60)
        if self.directory is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, digest TEXT, dim INTEGER, data BLOB, PRIMARY KEY (model, digest))"
        )

    def get_many(self, model: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(digests))
        with self._lock:
            for start in range(0, len(unique), LOOKUP_CHUNK):  # under SQLite's bound-parameter limit
                part = unique[start : start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                for digest, data in self._db.execute(
                    f"SELECT digest, data FROM vectors WHERE model = ? AND digest IN ({marks})", (model, *part)
                ):
                    found[digest] = np.frombuffer(data, dtype=_DTYPE)
        return found

    def put_many(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        rows = [(model, d, v.shape[-1], np.ascontiguousarray(v, dtype=_DTYPE).tobytes()) for d, v in vectors.items()]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def embed_images(
    paths: Sequence[str],
    backbone,
    cache: EmbeddingCache | None = None,
    *,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    decode_threads: int = DEFAULT_DECODE_THREADS,
    progress: bool = True,
) -> np.ndarray:
    """Backbone features for ``paths`` (one row per path), computing each unique image once.

    ``backbone`` is a :class:`ctxsim.members.backbones.Backbone` (anything with ``cache_key``,
    ``preprocess``, ``feature_dim`` and a forward pass).
    """
    cache = cache if cache is not None else EmbeddingCache()
    digests = [file_digest(p) for p in paths]
    have = cache.get_many(backbone.cache_key, digests)
    todo = list({d: p for d, p in zip(digests, paths) if d not in have}.items())
    if todo:
        pending: dict[str, np.ndarray] = {}
        with Progress(len(todo), f"embed {backbone.name}", "img", enabled=progress) as bar:
            for start, fresh in _forward_batches([p for _, p in todo], backbone, device, batch_size, decode_threads):
                pending.update((d, v) for (d, _), v in zip(todo[start : start + len(fresh)], fresh))
                bar.update(len(fresh))
                if len(pending) >= COMMIT_EVERY:
                    cache.put_many(backbone.cache_key, pending)
                    have.update(pending)
                    pending = {}
        cache.put_many(backbone.cache_key, pending)
        have.update(pending)
    if not paths:
        return np.zeros((0, backbone.feature_dim), dtype=_DTYPE)
    return np.stack([have[d] for d in digests])


def _forward_all(paths, backbone, device, batch_size, decode_threads, progress=False, prefetch: bool = True) -> np.ndarray:
    """Every path's features in one array (see :func:`_forward_batches`)."""
    out = [f for _, f in _forward_batches(paths, backbone, device, batch_size, decode_threads, prefetch)]
    return np.concatenate(out) if out else np.zeros((0, backbone.feature_dim), dtype=_DTYPE)


def _forward_batches(paths, backbone, device, batch_size, decode_threads, prefetch: bool = True):
    """Yield (offset, features) per batch. Decode and preprocess in threads; with ``prefetch`` the next
    batch is decoded while the current one runs through the backbone (the same batches and the same
    numbers either way)."""
    import torch

    transform = backbone.preprocess.transform()
    prepare: Callable[[str], torch.Tensor] = lambda p: transform(load_image(p))
    backbone = backbone.to(device).eval()
    batches = [paths[start : start + batch_size] for start in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(decode_threads) as pool, torch.inference_mode():
        ahead = [pool.submit(prepare, p) for p in batches[0]] if batches else []
        for i in range(len(batches)):
            batch = torch.stack([f.result() for f in ahead])
            ahead = [pool.submit(prepare, p) for p in batches[i + 1]] if prefetch and i + 1 < len(batches) else []
            feats = backbone(batch.to(device)).float().cpu().numpy()
            if not prefetch and i + 1 < len(batches):
                ahead = [pool.submit(prepare, p) for p in batches[i + 1]]
            yield i * batch_size, feats


def preprocess_images(paths: Sequence[str], preprocess, decode_threads: int = DEFAULT_DECODE_THREADS):
    """The images as one preprocessed tensor (N, 3, H, W), decoded in threads: the image table that
    LoRA members train on."""
    import torch

    transform = preprocess.transform()
    with ThreadPoolExecutor(decode_threads) as pool:
        return torch.stack(list(pool.map(lambda p: transform(load_image(p)), paths)))
