"""The ensemble of a run: the stacker and every baseline combiner, and the one chosen to answer.

All combiners are fitted on out-of-fold member margins. The combiner that answers is chosen by
image-grouped cross-validation (folds grouped by the reference image's fold), because a learned
stacker must beat plain majority vote on *new images*, not only the best member; when the stacker
does not win, the run says so. Vote-share combiners are calibrated by Platt scaling of their
cross-validated output (no intercept, so swapping A and B still gives ``1 - p``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ctxsim.ensemble.baselines import (
    MajorityVote,
    MLPWeighted,
    PCACredibility,
    SingleMember,
    fit_scale,
)
from ctxsim.ensemble.compiled import FastBooster
from ctxsim.ensemble.config import EnsembleConfig
from ctxsim.ensemble.explain import Explanation
from ctxsim.ensemble.features import (
    feature_groups,
    feature_names,
    n_signed,
    stacking_features,
    swap_pairs,
)
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.symmetric import LinearModel, SymmetricModel
from ctxsim.row_blocks import in_blocks
from ctxsim.schema import DECISION_THRESHOLD, GLOBAL, ZEROSHOT, margin_column

log = logging.getLogger(__name__)

STACKER = "stacker"
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class StackerCombiner:
    """A :class:`SymmetricStacker` over :func:`stacking_features`."""

    name = STACKER
    needs_embeddings = False
    calibrate = False
    unit = "log-odds"

    def __init__(self, estimator="lightgbm", val_accuracy: np.ndarray | None = None, monotone: bool = True, seed: int = 0):
        self.estimator, self.val_accuracy, self.monotone, self.seed = estimator, val_accuracy, monotone, seed

    def fit(self, x: EnsembleInputs, y, sample_weight=None):
        # scikit-learn (and LightGBM's training side) only when fitting: a compare loads runs without them
        from ctxsim.ensemble.stackers import SymmetricStacker

        n_margins = n_signed(x.margins.shape[1], x.membership.shape[1])
        self.regime_ = x.seen is not None  # seen_ref/seen_a/seen_b features (ensemble/regime.py)
        X = stacking_features(x, self.val_accuracy, self.regime_)
        self.model_ = SymmetricStacker(self.estimator, n_margins=n_margins, monotone=self.monotone, random_state=self.seed,
                                       swap_pairs=swap_pairs(X.shape[1], self.regime_))
        self.model_.fit(X, y, sample_weight)
        return self

    def predict_proba(self, x: EnsembleInputs) -> np.ndarray:
        fast = getattr(self.model_.estimator_, "fast_", None)
        if fast is not None:
            fast.prepare(len(x))  # compile once for a large input, before it is cut into blocks
        # Row blocks, in threads: features and both stacker passes of a block stay in the CPU cache.
        return in_blocks(len(x), lambda rows: self.model_.predict_proba(stacking_features(x.subset(rows), self.val_accuracy, self.regime_))[:, 1])

    def contributions(self, x: EnsembleInputs, columns: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per stacking feature, in log-odds (see :meth:`SymmetricStacker.contributions`), in row blocks in
        threads; with ``columns`` (each feature's output column, then the bias's) summed into those columns."""
        if not len(x):
            n_features = len(feature_names(x.member_names, [None] * x.membership.shape[1], self.regime_))
            width = n_features if columns is None else max(columns)
            return np.zeros((0, width)), np.zeros(0)
        fast = getattr(self.model_.estimator_, "fast_", None)
        if fast is not None:
            fast.prepare_explanations(len(x))  # the cell tables, once, before the input is cut into blocks

        def block(rows):
            return self.model_.half_contributions(stacking_features(x.subset(rows), self.val_accuracy, self.regime_), columns)

        both = in_blocks(len(x), block)
        return both[:, :-1], both[:, -1]

    def predict_and_contributions(self, x: EnsembleInputs, columns: tuple[int, ...] | None = None):
        """(:meth:`predict_proba`, :meth:`contributions`) from one pass over row blocks: each block's
        stacking features are built once for both."""
        if not len(x):
            return self.predict_proba(x), self.contributions(x, columns)
        fast = getattr(self.model_.estimator_, "fast_", None)
        if fast is not None:
            fast.prepare(len(x))
            fast.prepare_explanations(len(x))

        def block(rows):
            X = stacking_features(x.subset(rows), self.val_accuracy, self.regime_)
            return np.column_stack([self.model_.predict_proba(X)[:, 1], self.model_.half_contributions(X, columns)])

        both = in_blocks(len(x), block)
        return both[:, 0], (both[:, 1:-1], both[:, -1])

    def raw_score(self, x: EnsembleInputs) -> np.ndarray:
        return self.model_.raw_score(stacking_features(x, self.val_accuracy, self.regime_))

    def state(self) -> dict:
        est = self.model_.estimator_
        if hasattr(est, "booster_"):
            return {"format": "lightgbm", "model": est.booster_.model_to_string(), "n_margins": self.model_.n_margins, "regime": self.regime_}
        if hasattr(est, "coef_"):
            return {"format": "linear", "coef": est.coef_, "intercept": est.intercept_, "n_margins": self.model_.n_margins,
                    "regime": self.regime_}
        raise TypeError(f"cannot save a {type(est).__name__} stacker without pickling; use lightgbm or logistic")

    def load_state(self, state: dict) -> None:
        self.regime_ = bool(state.get("regime", False))
        if state["format"] == "lightgbm":
            estimator = _BoosterClassifier(str(state["model"]))
            n_features = estimator.fast_.n_features
        else:
            estimator = LinearModel(state["coef"], state["intercept"])
            n_features = estimator.coef_.shape[1]
        self.model_ = SymmetricModel.fitted(estimator, int(state["n_margins"]), swap_pairs(n_features, self.regime_))


class _BoosterClassifier:
    """A LightGBM model loaded from its text, with scikit-learn's ``predict_proba``; the booster itself
    (``booster_``, for explanations) is built on first use."""

    def __init__(self, model_str: str):
        self.fast_ = FastBooster(model_str)  # numpy trees for small inputs, compiled trees for large ones

    @property
    def booster_(self):
        return self.fast_.booster

    def predict_proba(self, X):
        p = self.fast_.predict(X)
        return np.column_stack([1 - p, p])


def make_combiners(cfg: EnsembleConfig, val_accuracy: np.ndarray, seed: int = 0) -> dict:
    combiners = [
        StackerCombiner(cfg.stacker, val_accuracy, cfg.monotone, seed),
        MajorityVote(),
        PCACredibility(),
        MLPWeighted(seed=seed),
        SingleMember(name="best_member"),
        SingleMember(GLOBAL, name=GLOBAL),
        SingleMember(ZEROSHOT, name=ZEROSHOT),
    ]
    return {c.name: c for c in combiners}


class Ensemble:
    def __init__(self, combiners: dict, chosen: str, calibration: dict[str, float], member_names, context_names,
                 val_accuracy: np.ndarray, selection: dict):
        self.combiners, self.chosen, self.calibration = combiners, chosen, calibration
        self.member_names, self.context_names = list(member_names), list(context_names)
        self.val_accuracy, self.selection = val_accuracy, selection

    @property
    def regime(self) -> bool:
        """Whether the stacker reads ``seen_*`` features (the run was trained with triplet folds)."""
        return bool(getattr(self.combiners.get(STACKER), "regime_", False))

    @property
    def needs_embeddings(self) -> bool:
        return self.combiners[self.chosen].needs_embeddings

    def _calibrated(self, name: str, p: np.ndarray) -> np.ndarray:
        scale = self.calibration.get(name)
        return p if scale is None else 1.0 / (1.0 + np.exp(-scale * _logit(p)))

    def predict(self, x: EnsembleInputs) -> np.ndarray:
        return self._calibrated(self.chosen, self.combiners[self.chosen].predict_proba(x))

    def predict_all(self, x: EnsembleInputs) -> dict[str, np.ndarray]:
        return {n: self._calibrated(n, c.predict_proba(x)) for n, c in self.combiners.items() if x.ref_emb is not None or not c.needs_embeddings}

    def explained_features(self) -> list[str]:
        """The features :meth:`explain` gives contributions for: the stacker's, or one margin per member."""
        if self.chosen == STACKER:
            return feature_names(self.member_names, self.context_names, self.regime)
        return [margin_column(m) for m in self.member_names]

    def explain(self, x: EnsembleInputs, grouped: bool = False) -> Explanation:
        """Contributions of the chosen combiner's features to its answer (:mod:`ctxsim.ensemble.explain`);
        ``grouped``: only each member's and context's sum (what ``why`` shows), which the stacker adds up as
        it goes, faster than per feature."""
        return self.predict_explained(x, grouped, predict=False)[1]

    def predict_explained(self, x: EnsembleInputs, grouped: bool = False, predict: bool = True) -> tuple[np.ndarray | None, Explanation]:
        """(:meth:`predict`, :meth:`explain`) together; the stacker builds each block's features once for both."""
        combiner = self.combiners[self.chosen]
        if combiner.name != STACKER:
            values, bias = combiner.contributions(x)
            names = list(self.member_names)
            explanation = Explanation(names if grouped else self.explained_features(), names, values, bias, combiner.unit)
            return (self.predict(x) if predict else None), explanation
        groups = feature_groups(self.member_names, self.context_names, self.regime)
        names = list(dict.fromkeys(groups)) if grouped else self.explained_features()
        columns = (*[names.index(g) for g in groups], len(names)) if grouped else None
        if predict:
            p, (values, bias) = combiner.predict_and_contributions(x, columns)
            p = self._calibrated(self.chosen, p)
        else:
            p, (values, bias) = None, combiner.contributions(x, columns)
        return p, Explanation(names, names if grouped else groups, values, bias, combiner.unit)

    @classmethod
    def fit(cls, x: EnsembleInputs, y: np.ndarray, weight: np.ndarray, groups: np.ndarray, val_accuracy: np.ndarray,
            context_names, cfg: EnsembleConfig, seed: int = 0) -> tuple[Ensemble, dict[str, np.ndarray]]:
        """Fit every combiner; return the ensemble and each combiner's image-grouped CV predictions."""
        from sklearn.model_selection import GroupKFold

        names = list(make_combiners(cfg, val_accuracy, seed))
        cv_pred = {n: np.full(len(y), np.nan) for n in names}
        n_folds = min(cfg.folds, len(np.unique(groups)))
        for train, test in GroupKFold(n_folds).split(y, y, groups):
            for name, combiner in make_combiners(cfg, val_accuracy, seed).items():
                combiner.fit(x.subset(train), y[train], weight[train])
                cv_pred[name][test] = combiner.predict_proba(x.subset(test))
        cv_acc = {n: float(np.average((p >= DECISION_THRESHOLD) == (y == 1), weights=weight)) for n, p in cv_pred.items()}
        chosen = cfg.select if cfg.select != "auto" else max(names, key=lambda n: (round(cv_acc[n], 4), n == STACKER))
        vote_shares = [n for n, c in make_combiners(cfg, val_accuracy).items() if c.calibrate]
        calibration = {n: fit_scale(_logit(cv_pred[n]), y, weight) for n in vote_shares}
        combiners = {n: c.fit(x, y, weight) for n, c in make_combiners(cfg, val_accuracy, seed).items()}
        note = (f"the stacker ({cfg.stacker}) was chosen by image-grouped validation" if chosen == STACKER else
                f"{chosen} was chosen: the learned stacker ({cv_acc[STACKER]:.4f}) did not beat it ({cv_acc[chosen]:.4f}) "
                f"in image-grouped validation")
        log.info("ensemble: %s", note)
        selection = {"chosen": chosen, "cv_accuracy": cv_acc, "note": note, "folds": n_folds}
        ensemble = cls(combiners, chosen, calibration, x.member_names, context_names, val_accuracy, selection)
        return ensemble, {n: ensemble._calibrated(n, p) for n, p in cv_pred.items()}

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        meta = {"chosen": self.chosen, "calibration": self.calibration, "member_names": self.member_names,
                "context_names": self.context_names, "val_accuracy": np.asarray(self.val_accuracy).tolist(),
                "selection": self.selection, "feature_names": feature_names(self.member_names, self.context_names, self.regime),
                "combiners": {}}
        for name, combiner in self.combiners.items():
            state = combiner.state()
            arrays = {k: np.ascontiguousarray(v) for k, v in state.items() if isinstance(v, np.ndarray)}
            meta["combiners"][name] = {k: v for k, v in state.items() if k not in arrays}
            if arrays:
                save_file(arrays, str(folder / f"{name}.safetensors"))
        (folder / "ensemble.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> Ensemble:
        from safetensors.numpy import load_file

        meta = json.loads((folder / "ensemble.json").read_text())
        val_accuracy = np.asarray(meta["val_accuracy"], dtype=float)
        combiners = make_combiners(EnsembleConfig(), val_accuracy)
        for name, combiner in combiners.items():
            arrays = folder / f"{name}.safetensors"
            combiner.load_state({**meta["combiners"][name], **(load_file(str(arrays)) if arrays.exists() else {})})
        return cls(combiners, meta["chosen"], meta["calibration"], meta["member_names"], meta["context_names"],
                   val_accuracy, meta["selection"])
