"""A LightGBM binary model evaluated from its text in numpy: the same probabilities as ``Booster.predict``.

Why by hand: importing LightGBM costs more than a second here (it imports scikit-learn, scipy and
pandas), and lleaves (the compiled path, :mod:`ctxsim.ensemble.compiled`) costs half a second of import
before it predicts anything. A warm ``compare`` of a few thousand rows must answer well within that, so
small inputs walk the trees in numpy, all trees at once, level by level. It follows LightGBM's
numerical decision rule (``NumericalDecision`` in ``tree.h``): missing values by their missing type,
``|x| <= kZeroThreshold`` read as zero, ``x <= threshold`` goes left; trees are summed in order in float64
and the sigmoid uses libm's ``exp`` — so the answers are bit-for-bit those of the booster
(tests/ensemble/test_trees.py checks it on every split threshold). Categorical splits and linear trees
are not supported: the stacker uses neither (:class:`TextModelError` if a model does).
"""
from __future__ import annotations

import math

import numpy as np

#: LightGBM's ``kZeroThreshold`` (the float 1e-35): inputs no larger in magnitude are read as 0.0.
ZERO_THRESHOLD = float(np.float32(1e-35))
_CATEGORICAL, _DEFAULT_LEFT = 1, 2  # decision_type bits
_MISSING_ZERO, _MISSING_NAN = 1, 2  # decision_type bits 2-3
_exp = np.frompyfunc(math.exp, 1, 1)  # libm's exp, as LightGBM's std::exp (numpy's own may differ by an ulp)


class TextModelError(ValueError):
    """The model text is not a LightGBM binary model of numerical splits."""


def _numbers(text: str, dtype) -> np.ndarray:
    return np.array(text.split(), dtype=dtype) if text.strip() else np.zeros(0, dtype=dtype)


class TreeModel:
    """``predict(X)``: P(class 1) of a LightGBM binary model, from ``Booster.model_to_string()``."""

    def __init__(self, model_str: str):
        header, _, body = model_str.partition("\nTree=")
        fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
        objective = fields.get("objective", "").split()
        if not objective or objective[0] != "binary":
            raise TextModelError(f"expected a binary objective, got {fields.get('objective')!r}")
        self.sigmoid = float(next((o.split(":")[1] for o in objective if o.startswith("sigmoid:")), 1.0))
        self.n_features = int(fields["max_feature_idx"]) + 1
        trees = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                 for block in ("Tree=" + body).split("\nTree=") if block.strip() and "num_leaves" in block]
        if not trees:
            raise TextModelError("no trees")
        # All trees in flat arrays: internal nodes of tree t start at node_offset[t], leaves at leaf_offset[t];
        # a child is an internal node index (>= 0) or ~leaf index (< 0), as in the text, made global here.
        feature, threshold, decision, left, right, leaf = [], [], [], [], [], []
        self.root = np.zeros(len(trees), dtype=np.int64)
        self.node_offset = np.zeros(len(trees) + 1, dtype=np.int64)  # tree t's internal nodes: [offset[t], offset[t + 1])
        n_nodes = n_leaves = 0
        for t, tree in enumerate(trees):
            if tree.get("is_linear", "0") != "0" or int(tree.get("num_cat", "0")):
                raise TextModelError("linear or categorical trees are not supported")
            values = _numbers(tree["leaf_value"], np.float64)
            if int(tree["num_leaves"]) == 1:  # a stump: the root is the leaf
                self.root[t] = ~n_leaves
            else:
                self.root[t] = n_nodes
                kids = [_numbers(tree[k], np.int64) for k in ("left_child", "right_child")]
                for kid, out in zip(kids, (left, right)):
                    out.append(np.where(kid >= 0, kid + n_nodes, ~(~kid + n_leaves)))
                feature.append(_numbers(tree["split_feature"], np.int64))
                threshold.append(_numbers(tree["threshold"], np.float64))
                decision.append(_numbers(tree["decision_type"], np.int64))
                n_nodes += len(feature[-1])
            leaf.append(values)
            n_leaves += len(values)
            self.node_offset[t + 1] = n_nodes
        join = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
        self.feature, self.threshold = join(feature, np.int64), join(threshold, np.float64)
        self.decision, self.left, self.right = join(decision, np.int64), join(left, np.int64), join(right, np.int64)
        self.leaf = join(leaf, np.float64)
        if (self.decision & _CATEGORICAL).any():
            raise TextModelError("categorical splits are not supported")
        self.default_left = (self.decision & _DEFAULT_LEFT) != 0
        self.missing = (self.decision >> 2) & 3

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {X.shape}")
        X = np.where(np.abs(X) <= ZERO_THRESHOLD, 0.0, X)  # LightGBM's dense rows drop (near) zeros
        rows = np.arange(len(X))[:, None]
        node = np.broadcast_to(self.root, (len(X), len(self.root))).copy()  # (rows, trees)
        while True:
            inner = node >= 0
            if not inner.any():
                break
            at = node[inner]
            value = X[np.broadcast_to(rows, node.shape)[inner], self.feature[at]]
            missing = self.missing[at]
            nan = np.isnan(value)
            value = np.where(nan & (missing != _MISSING_NAN), 0.0, value)
            to_default = ((missing == _MISSING_ZERO) & (value == 0.0)) | ((missing == _MISSING_NAN) & nan)
            go_left = np.where(to_default, self.default_left[at], value <= self.threshold[at])
            node[inner] = np.where(go_left, self.left[at], self.right[at])
        values = self.leaf[~node]
        raw = np.zeros(len(X))
        for t in range(values.shape[1]):  # in the booster's order, one tree at a time (float64 rounding)
            raw += values[:, t]
        return raw

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = self.raw_score(X)
        return 1.0 / (1.0 + _exp(-self.sigmoid * raw).astype(np.float64))
