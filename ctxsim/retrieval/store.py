"""Vector stores behind a catalogue index: Milvus (embedded Milvus Lite by default, or a server) and an
exact in-memory numpy store (the brute-force baseline of the benchmarks, and a store for tests).

One collection per member: primary key the image's content digest (SHA-256 hex), the member's
normalised embedding (inner product = cosine similarity) and the image path. pymilvus is imported
when a Milvus store is opened, never at import time.
"""
from __future__ import annotations

import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Ids per ``id in [...]`` query when checking which digests a collection already holds.
LOOKUP_CHUNK = 2000
#: Rows per insert request (Milvus caps one gRPC message at 64 MiB by default).
INSERT_CHUNK = 1000
#: Longest image path stored.
MAX_PATH_CHARS = 4096
_DIGEST_CHARS = 64
_ID, _VEC, _PATH = "id", "vec", "path"


def collection_name(prefix: str, member: str) -> str:
    """A Milvus-safe collection name (letters, digits, underscores) for ``member``, unique per name."""
    safe = re.sub(r"[^0-9A-Za-z_]", "_", member)[:120]
    return f"{prefix}_{safe}_{hashlib.sha256(member.encode()).hexdigest()[:8]}"


class VectorStore(ABC):
    """What a catalogue index needs from a vector database (Milvus, or exact numpy)."""

    @abstractmethod
    def create(self, name: str, dim: int) -> None:
        ...

    @abstractmethod
    def existing(self, name: str, ids: Sequence[str]) -> set[str]:
        ...

    @abstractmethod
    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, paths: Sequence[str]) -> None:
        ...

    @abstractmethod
    def search(self, name: str, vectors: np.ndarray, k: int) -> list[list[tuple[str, str, float]]]:
        """For each query vector, up to ``k`` (id, path, cosine similarity), most similar first."""
        ...

    @abstractmethod
    def count(self, name: str) -> int:
        ...

    def close(self) -> None:
        pass


class MilvusStore(VectorStore):
    """Milvus through pymilvus: ``uri`` is a local file (``*.db``: Milvus Lite, embedded, no server) or
    a server address (``http://host:19530``); the same calls either way."""

    def __init__(self, uri: str, token: str | None = None):
        from pymilvus import MilvusClient

        for quiet in ("milvus_lite", "faiss", "faiss.loader"):  # no line per server start and stop, nor for loading faiss
            logging.getLogger(quiet).setLevel(logging.WARNING)
        self.uri = uri
        self.lite = not re.match(r"^[a-z]+://", uri)
        if self.lite:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.client = MilvusClient(uri, **({"token": token} if token else {}))
        self._loaded: set[str] = set()

    def create(self, name: str, dim: int) -> None:
        from pymilvus import DataType

        if self.client.has_collection(name):
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, DataType.VARCHAR, is_primary=True, max_length=_DIGEST_CHARS)
        schema.add_field(_VEC, DataType.FLOAT_VECTOR, dim=int(dim))
        schema.add_field(_PATH, DataType.VARCHAR, max_length=MAX_PATH_CHARS)
        params = self.client.prepare_index_params()
        # Milvus Lite serves FLAT (exact); a server picks its own index (AUTOINDEX: HNSW-like, approximate).
        params.add_index(_VEC, index_type="FLAT" if self.lite else "AUTOINDEX", metric_type="IP")
        self.client.create_collection(name, schema=schema, index_params=params)

    def _load(self, name: str) -> None:
        if name not in self._loaded:
            self.client.load_collection(name)
            self._loaded.add(name)

    def existing(self, name: str, ids: Sequence[str]) -> set[str]:
        if not self.client.has_collection(name):
            return set()
        self._load(name)
        found: set[str] = set()
        for start in range(0, len(ids), LOOKUP_CHUNK):
            part = list(ids[start : start + LOOKUP_CHUNK])
            rows = self.client.query(name, filter=f"{_ID} in {_quoted(part)}", output_fields=[_ID], limit=len(part))
            found.update(r[_ID] for r in rows)
        return found

    def upsert(self, name, ids, vectors, paths) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(ids), INSERT_CHUNK):
            stop = start + INSERT_CHUNK
            rows = [{_ID: i, _VEC: v, _PATH: p} for i, v, p in zip(ids[start:stop], vectors[start:stop], paths[start:stop])]
            self.client.upsert(name, rows)
        self.client.flush(name)

    def search(self, name, vectors, k):
        self._load(name)
        hits = self.client.search(name, data=np.asarray(vectors, np.float32).tolist(), limit=int(k), output_fields=[_PATH],
                                  anns_field=_VEC, search_params={"metric_type": "IP"})
        return [[(h["id"], h["entity"][_PATH], float(h["distance"])) for h in row] for row in hits]

    def count(self, name: str) -> int:
        if not self.client.has_collection(name):
            return 0
        self.client.flush(name)
        return int(self.client.get_collection_stats(name)["row_count"])

    def close(self) -> None:
        self.client.close()
        if self.lite:  # Milvus Lite serves the file from this process until released
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)


def _quoted(ids: list[str]) -> str:
    """A Milvus list literal of hex digests (checked: nothing else can reach the filter expression)."""
    for i in ids:
        if not re.fullmatch(r"[0-9a-f]{1,64}", i):
            raise ValueError(f"not a content digest: {i!r}")
    return "[" + ",".join(f'"{i}"' for i in ids) + "]"


class ExactStore(VectorStore):
    """Brute force in memory: one float32 matrix per collection, top-k by one matrix-vector product."""

    def __init__(self):
        self._ids: dict[str, list[str]] = {}
        self._paths: dict[str, list[str]] = {}
        self._rows: dict[str, dict[str, int]] = {}
        self._vecs: dict[str, list[np.ndarray]] = {}
        self._matrix: dict[str, np.ndarray] = {}

    def create(self, name, dim):
        for d in (self._ids, self._paths, self._vecs):
            d.setdefault(name, [])
        self._rows.setdefault(name, {})

    def existing(self, name, ids):
        rows = self._rows.get(name, {})
        return {i for i in ids if i in rows}

    def upsert(self, name, ids, vectors, paths):
        self.create(name, None)
        rows, matrix = self._rows[name], self.matrix(name)
        vectors = np.asarray(vectors, np.float32)
        fresh = []
        for i, v, p in zip(ids, vectors, paths):
            if i in rows:
                matrix[rows[i]] = v
                self._paths[name][rows[i]] = p
            else:
                rows[i] = len(self._ids[name]) + len(fresh)
                fresh.append((i, v, p))
        self._ids[name] += [i for i, _, _ in fresh]
        self._paths[name] += [p for _, _, p in fresh]
        if fresh:
            self._matrix[name] = np.concatenate([matrix, np.stack([v for _, v, _ in fresh])]) if len(matrix) else np.stack([v for _, v, _ in fresh])

    def matrix(self, name: str) -> np.ndarray:
        return self._matrix.get(name, np.zeros((0, 0), np.float32))

    def search(self, name, vectors, k):
        matrix = self.matrix(name)
        sims = np.asarray(vectors, np.float32) @ matrix.T
        k = min(int(k), matrix.shape[0])
        out = []
        for row in sims:
            top = np.argpartition(-row, k - 1)[:k] if k else np.zeros(0, int)
            top = top[np.argsort(-row[top], kind="stable")]
            out.append([(self._ids[name][j], self._paths[name][j], float(row[j])) for j in top])
        return out

    def count(self, name):
        return len(self._ids.get(name, []))
