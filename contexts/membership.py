"""Contexts: every reference image gets a soft membership over contexts.

Contexts are *declared* (a ``context`` column names them) or *discovered* (k-means or a Gaussian
mixture over the zero-shot embeddings of the reference images, K given or chosen by silhouette /
BIC, clusters with too few triplets merged into their nearest neighbour). Either way a context
is summarised by a centroid in the normalised embedding space, so ``membership`` and ``assign``
work on images never seen in training.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ctxsim.contexts.config import ContextConfig

log = logging.getLogger(__name__)

#: A reference is out of context when its similarity to its routed context's centroid is below this
#: percentile of the training references' similarities to that centroid.
FLOOR_PERCENTILE = 1.0


class Contexts:
    """Named centroids in normalised embedding space and a soft membership over them."""

    def __init__(self, names: list[str], centroids: np.ndarray, kind: str, temperature: float = ContextConfig.temperature,
                 floors: list[float] | None = None):
        self.names, self.kind, self.temperature = list(names), kind, temperature
        self.centroids = _normalize(np.asarray(centroids, dtype=np.float32))
        #: per context, the lowest similarity still "in context" (None: not fitted; NaN: no training reference)
        self.floors = None if floors is None else np.asarray(floors, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.names)

    def membership(self, emb: np.ndarray, declared=None) -> np.ndarray:
        """(N, K) soft membership of normalised embeddings; a known declared name gives a one-hot row."""
        logits = self.temperature * (_normalize(emb) @ self.centroids.T)
        logits -= logits.max(axis=1, keepdims=True)
        member = np.exp(logits)
        member /= member.sum(axis=1, keepdims=True)
        if declared is not None:
            position = {n: i for i, n in enumerate(self.names)}
            for row, name in enumerate(declared):
                if name in position:
                    member[row] = 0.0
                    member[row, position[name]] = 1.0
        return member

    def assign(self, emb: np.ndarray, declared=None) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[self.membership(emb, declared).argmax(axis=1)]

    def similarity(self, emb: np.ndarray, membership: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the routed context (index: the largest ``membership``, by default the soft one) and
        the cosine similarity of the embedding to that context's centroid."""
        membership = self.membership(emb) if membership is None else membership
        routed = membership.argmax(axis=1)
        return routed, np.take_along_axis(self.centroid_similarity(emb), routed[:, None], axis=1)[:, 0]

    def centroid_similarity(self, emb: np.ndarray) -> np.ndarray:
        """(N, K) cosine similarity of each embedding to each context's centroid."""
        return (_normalize(np.asarray(emb, dtype=np.float32)) @ self.centroids.T).astype(np.float64)

    def fit_floors(self, ref_emb: np.ndarray, membership: np.ndarray | None = None, percentile: float = FLOOR_PERCENTILE) -> Contexts:
        """Per context, the ``percentile`` of the similarities of its training references (one row each)."""
        routed, sim = self.similarity(ref_emb, membership)
        self.floors = np.array([np.percentile(sim[routed == k], percentile) if (routed == k).any() else np.nan
                                for k in range(len(self))])
        return self

    def out_of_context(self, routed: np.ndarray, sim: np.ndarray) -> np.ndarray | None:
        """True where a similarity is below its routed context's floor (None when no floors were fitted;
        a context without training references has no floor and flags nothing)."""
        if self.floors is None:
            return None
        floor = self.floors[routed]
        return np.where(np.isnan(floor), False, sim < floor)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"names": self.names, "kind": self.kind, "temperature": self.temperature, "centroids": self.centroids.tolist()}
        if self.floors is not None:
            meta["floors"] = [None if np.isnan(f) else float(f) for f in self.floors]
        (folder / "contexts.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path) -> Contexts:
        meta = json.loads((Path(folder) / "contexts.json").read_text())
        centroids = np.asarray(meta["centroids"], dtype=np.float32)
        floors = meta.get("floors")  # absent in runs trained before out-of-context floors
        floors = None if floors is None else [np.nan if f is None else f for f in floors]
        contexts = cls(meta["names"], centroids, meta["kind"], meta["temperature"], floors)
        contexts.centroids = centroids  # saved normalised: normalising again would move them by rounding
        return contexts


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def declared_contexts(ref_emb: np.ndarray, ref_names, cfg: ContextConfig = ContextConfig()) -> Contexts:
    """One centroid per declared context name: the mean embedding of its reference images."""
    ref_names = np.asarray(ref_names, dtype=object)
    names = sorted(set(ref_names.tolist()))
    centroids = np.stack([_normalize(ref_emb)[ref_names == n].mean(axis=0) for n in names])
    return Contexts(names, centroids, "declared", cfg.temperature)


def discover_contexts(ref_emb: np.ndarray, triplets_per_ref: np.ndarray, cfg: ContextConfig = ContextConfig()) -> Contexts:
    """Cluster the reference embeddings; merge clusters with fewer than ``cfg.min_triplets`` triplets."""
    emb = _normalize(ref_emb)
    labels = _cluster(emb, cfg)
    counts = np.asarray(triplets_per_ref)
    while True:
        ids = np.unique(labels)
        if len(ids) <= 1:
            break
        load = {i: counts[labels == i].sum() for i in ids}
        small = min(ids, key=lambda i: load[i])
        if load[small] >= cfg.min_triplets:
            break
        centroids = {i: _normalize(emb[labels == i].mean(axis=0)) for i in ids}
        nearest = max((i for i in ids if i != small), key=lambda i: float(centroids[i] @ centroids[small]))
        log.info("context cluster %d has %d triplets (< %d): merged into %d", small, load[small], cfg.min_triplets, nearest)
        labels[labels == small] = nearest
    ids = np.unique(labels)
    centroids = np.stack([emb[labels == i].mean(axis=0) for i in ids])
    return Contexts([f"c{j}" for j in range(len(ids))], centroids, "discovered", cfg.temperature)


def _cluster(emb: np.ndarray, cfg: ContextConfig) -> np.ndarray:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    n = len(emb)
    candidates = [cfg.k] if cfg.k else list(range(cfg.k_min, min(cfg.k_max, n - 1) + 1))
    if not candidates or n < 3:
        return np.zeros(n, dtype=int)
    best, best_score = None, -np.inf
    for k in candidates:
        if cfg.method == "gmm":
            model = GaussianMixture(k, covariance_type="diag", random_state=cfg.seed).fit(emb)
            labels, score = model.predict(emb), -model.bic(emb)
        else:
            labels = KMeans(k, n_init=10, random_state=cfg.seed).fit_predict(emb)
            score = silhouette_score(emb, labels) if len(np.unique(labels)) > 1 else -1.0
        log.debug("contexts: k=%d score=%.4f", k, score)
        if score > best_score:
            best, best_score = labels, score
    return best


def fit_contexts(ref_emb: np.ndarray, declared, triplets_per_ref: np.ndarray, cfg: ContextConfig) -> Contexts:
    """Declared or discovered contexts for the unique reference images, per ``cfg.mode``."""
    use_declared = cfg.mode == "declared" or (cfg.mode == "auto" and declared is not None)
    if use_declared:
        if declared is None:
            raise ValueError("contexts.mode = 'declared' needs a context column in the triplets")
        return declared_contexts(ref_emb, declared, cfg)
    return discover_contexts(ref_emb, triplets_per_ref, cfg)

