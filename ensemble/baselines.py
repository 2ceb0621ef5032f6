"""The paper's ensembles and the simple references, as combiners over :class:`EnsembleInputs`.

Every combiner has ``fit(x, y, sample_weight)`` (y = 1 when A is closer) and ``predict_proba(x)``
returning P(A closer) per triplet, and is symmetric: swapping A and B gives ``1 - p``.
"""
from __future__ import annotations

import numpy as np

from ctxsim.ensemble.inputs import EnsembleInputs


def _votes(margins: np.ndarray) -> np.ndarray:
    """+1 / -1 / 0 per member and triplet."""
    return np.sign(margins)


def _weighted_vote(margins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """P(A) = 1/2 + 1/2 x (weighted mean vote); equal weights when a row's weights are all zero."""
    weights = np.where(weights.sum(axis=1, keepdims=True) > 0, weights, 1.0)
    return 0.5 + 0.5 * (weights * _votes(margins)).sum(axis=1) / weights.sum(axis=1)


def vote_contributions(margins: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each member's share of :func:`_weighted_vote` (its weight x vote, in units of P(A)) and the bias 1/2:
    they sum exactly to the combiner's vote share."""
    weights = np.where(weights.sum(axis=1, keepdims=True) > 0, weights, 1.0)
    return 0.5 * weights * _votes(margins) / weights.sum(axis=1, keepdims=True), np.full(len(margins), 0.5)


def fit_scale(margin: np.ndarray, y: np.ndarray, sample_weight=None) -> float:
    """Platt scaling with no intercept (keeps the A/B symmetry): P(A) = sigmoid(s x margin)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 1.0
    lr = LogisticRegression(fit_intercept=False, C=100.0).fit(margin.reshape(-1, 1), y, sample_weight=sample_weight)
    return float(lr.coef_[0, 0])


class MajorityVote:
    """Each member votes for the candidate it finds closer; P(A) is the share of votes for A."""

    name = "majority_vote"
    needs_embeddings = False
    calibrate = True  # a vote share is not a probability until scaled

    def fit(self, x: EnsembleInputs, y, sample_weight=None):
        return self

    unit = "vote share"

    def vote_weights(self, x: EnsembleInputs) -> np.ndarray:
        return np.ones_like(x.margins)

    def predict_proba(self, x: EnsembleInputs) -> np.ndarray:
        return _weighted_vote(x.margins, self.vote_weights(x))

    def contributions(self, x: EnsembleInputs) -> tuple[np.ndarray, np.ndarray]:
        return vote_contributions(x.margins, self.vote_weights(x))

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


class SingleMember:
    """One member alone, its margin turned into a probability by Platt scaling."""

    needs_embeddings = False
    calibrate = False  # Platt-scaled already

    def __init__(self, member: str | None = None, name: str | None = None):
        self.member, self.name, self.scale_ = member, name or f"member:{member}", 1.0
        self.choose_best = member is None

    def fit(self, x: EnsembleInputs, y, sample_weight=None):
        if self.choose_best:  # the best single member by (out-of-fold) accuracy
            acc = [np.average(_votes(x.margins[:, j]) == 2 * y - 1, weights=sample_weight) for j in range(len(x.member_names))]
            self.member = x.member_names[int(np.argmax(acc))]
        self.scale_ = fit_scale(x.margins[:, x.member_names.index(self.member)], y, sample_weight)
        return self

    unit = "log-odds"

    def predict_proba(self, x: EnsembleInputs) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.scale_ * x.margins[:, x.member_names.index(self.member)]))

    def contributions(self, x: EnsembleInputs) -> tuple[np.ndarray, np.ndarray]:
        """All of the log-odds ``scale x margin`` is the one member's."""
        out = np.zeros_like(x.margins)
        j = x.member_names.index(self.member)
        out[:, j] = self.scale_ * x.margins[:, j]
        return out, np.zeros(len(x))

    def state(self) -> dict:
        return {"member": self.member, "scale": self.scale_}

    def load_state(self, state: dict) -> None:
        self.member, self.scale_ = state["member"], state["scale"]


class PCACredibility:
    """Liao & Chen's credibility map: reference embeddings in 2-D PCA, each member's accuracy on a
    grid (Gaussian-smoothed, count-weighted); members below ``threshold`` where a triplet's reference
    lies get no vote, the others vote weighted by ``credibility - 1/2``."""

    name = "pca_credibility"
    needs_embeddings = True
    calibrate = True

    def __init__(self, grid: int = 16, sigma: float = 1.5, threshold: float = 0.55, prior: float = 5.0):
        self.grid, self.sigma, self.threshold, self.prior = grid, sigma, threshold, prior

    def _cells(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy = (emb - self.mean_) @ self.components_.T
        cells = [np.clip(np.searchsorted(self.edges_[d], xy[:, d]) - 1, 0, self.grid - 1) for d in range(2)]
        return cells[0], cells[1]

    def fit(self, x: EnsembleInputs, y, sample_weight=None):
        from scipy.ndimage import gaussian_filter
        from sklearn.decomposition import PCA

        # The plane of the reference images, one point each (as in MLPWeighted): an SVD over a few hundred
        # references rather than over every triplet.
        _, first = np.unique(x.ref_id if x.ref_id is not None else np.arange(len(y)), return_index=True)
        pca = PCA(2).fit(x.ref_emb[first])
        self.mean_, self.components_ = pca.mean_, pca.components_
        xy = pca.transform(x.ref_emb)
        self.edges_ = np.stack([np.linspace(xy[:, d].min(), xy[:, d].max(), self.grid + 1) for d in range(2)])
        i, j = self._cells(x.ref_emb)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        correct = (_votes(x.margins) == (2 * np.asarray(y)[:, None] - 1)).astype(float)
        count = np.zeros((self.grid, self.grid))
        np.add.at(count, (i, j), w)
        count = gaussian_filter(count, self.sigma)
        maps = []
        for m in range(correct.shape[1]):
            hits = np.zeros((self.grid, self.grid))
            np.add.at(hits, (i, j), w * correct[:, m])
            overall = np.average(correct[:, m], weights=w)
            # Cells with little data shrink towards the member's overall accuracy.
            maps.append((gaussian_filter(hits, self.sigma) + self.prior * overall) / (count + self.prior))
        self.maps_ = np.stack(maps)  # (M, grid, grid)
        return self

    unit = "vote share"

    def vote_weights(self, x: EnsembleInputs) -> np.ndarray:
        i, j = self._cells(x.ref_emb)
        cred = self.maps_[:, i, j].T  # (n, M)
        return np.where(cred >= self.threshold, cred - 0.5, 0.0)

    def predict_proba(self, x: EnsembleInputs) -> np.ndarray:
        return _weighted_vote(x.margins, self.vote_weights(x))

    def contributions(self, x: EnsembleInputs) -> tuple[np.ndarray, np.ndarray]:
        return vote_contributions(x.margins, self.vote_weights(x))

    def state(self) -> dict:
        return {"mean": self.mean_, "components": self.components_, "edges": self.edges_, "maps": self.maps_}

    def load_state(self, state: dict) -> None:
        self.mean_, self.components_, self.edges_, self.maps_ = (np.asarray(state[k]) for k in ("mean", "components", "edges", "maps"))


class MLPWeighted:
    """Per-member MLP regressors predict, from the reference embedding, how likely the member is to be
    right; members vote weighted by ``predicted accuracy - 1/2`` (clipped at 0)."""

    name = "mlp_weighted"
    needs_embeddings = True
    calibrate = True

    def __init__(self, hidden: int = 32, pca_dims: int = 16, max_iter: int = 2000, seed: int = 0):
        self.hidden, self.pca_dims, self.max_iter, self.seed = hidden, pca_dims, max_iter, seed

    def fit(self, x: EnsembleInputs, y, sample_weight=None):
        from sklearn.decomposition import PCA
        from sklearn.neural_network import MLPRegressor

        correct = (_votes(x.margins) == (2 * np.asarray(y)[:, None] - 1)).astype(float)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        # One training row per reference image: its embedding and each member's accuracy on it
        # (weighted by how many triplets it has), not one per triplet.
        ref_id = x.ref_id if x.ref_id is not None else np.arange(len(y))
        refs, first, inverse = np.unique(ref_id, return_index=True, return_inverse=True)
        count = np.bincount(inverse, weights=w, minlength=len(refs))
        target = np.stack([np.bincount(inverse, weights=w * correct[:, m], minlength=len(refs)) for m in range(correct.shape[1])], axis=1)
        keep = count > 0
        emb, target, count = x.ref_emb[first][keep], target[keep] / count[keep, None], count[keep]
        pca = PCA(min(self.pca_dims, emb.shape[1], max(1, len(emb) - 1))).fit(emb)
        self.mean_, self.components_ = pca.mean_, pca.components_
        z = self._project(emb)
        self.layers_ = []
        for m in range(target.shape[1]):
            mlp = MLPRegressor(hidden_layer_sizes=(self.hidden,), alpha=1e-2, max_iter=self.max_iter, random_state=self.seed)
            mlp.fit(z, target[:, m], sample_weight=count)
            self.layers_.append([(w, b) for w, b in zip(mlp.coefs_, mlp.intercepts_)])
        return self

    def _project(self, emb):
        return (emb - self.mean_) @ self.components_.T

    def _accuracy(self, z: np.ndarray) -> np.ndarray:
        out = []
        for layers in self.layers_:
            h = z
            for k, (w, b) in enumerate(layers):
                h = h @ w + b
                if k < len(layers) - 1:
                    h = np.maximum(h, 0.0)  # MLPRegressor's default ReLU
            out.append(h[:, 0])
        return np.stack(out, axis=1)

    unit = "vote share"

    def vote_weights(self, x: EnsembleInputs) -> np.ndarray:
        return np.clip(self._accuracy(self._project(x.ref_emb)) - 0.5, 0.0, None)

    def predict_proba(self, x: EnsembleInputs) -> np.ndarray:
        return _weighted_vote(x.margins, self.vote_weights(x))

    def contributions(self, x: EnsembleInputs) -> tuple[np.ndarray, np.ndarray]:
        return vote_contributions(x.margins, self.vote_weights(x))

    def state(self) -> dict:
        flat = {"mean": self.mean_, "components": self.components_}
        for m, layers in enumerate(self.layers_):
            for k, (w, b) in enumerate(layers):
                flat[f"m{m}.w{k}"], flat[f"m{m}.b{k}"] = w, b
        return flat

    def load_state(self, state: dict) -> None:
        self.mean_, self.components_ = np.asarray(state["mean"]), np.asarray(state["components"])
        n_members = 1 + max(int(k.split(".")[0][1:]) for k in state if k.startswith("m") and "." in k)
        n_layers = 1 + max(int(k.split(".w")[1]) for k in state if ".w" in k)
        self.layers_ = [[(np.asarray(state[f"m{m}.w{k}"]), np.asarray(state[f"m{m}.b{k}"])) for k in range(n_layers)] for m in range(n_members)]
