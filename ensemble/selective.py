"""Selective answers with a guarantee: abstain below a confidence threshold chosen so that accuracy on
the answered rows is at least a target with probability ``1 - delta``.

Learn-then-Test with fixed-sequence testing (Angelopoulos et al., 2021): the candidate thresholds are the
calibration rows' confidences at every ``1 / GRID`` of coverage (and at every distinct confidence when
there are fewer rows), strictest first. A coarse grid keeps the sequence from stopping on the first few
rows: one early mistake among the forty most confident would fail a 0.95 test there and end the scan.
For threshold ``t`` the null hypothesis is "accuracy on rows with confidence >= t is below the target"; it is rejected when the one-sided Clopper-Pearson lower
bound (level ``1 - delta``) of that accuracy is >= target. Hypotheses are tested in order, each at level
``delta``, and the scan stops at the first one not rejected; the most lenient rejected threshold is
chosen. Fixed-sequence testing controls the family-wise error at ``delta``, so the chosen threshold has
accuracy >= target with probability >= 1 - delta, provided calibration rows and the rows answered later
are exchangeable (drawn from the same distribution).

Rows are rarely independent: triplets that share a reference image are right or wrong together (a
reference the model misreads fails most of its rows). When the calibration rows carry *groups* (the
run's: each row's reference image), the bound counts effective rows instead of rows, Korn and Graubard's
(1998) Clopper-Pearson interval for clustered samples: ``n_eff = p (1 - p) / v`` with ``v`` the
cluster-robust (sandwich) variance of the answered accuracy ``p``, shrunk by ``(z / t_{G-1})^2`` for the
``G`` groups answered, at most ``n``; the bound is Clopper-Pearson's at ``k = p n_eff`` of ``n_eff``. With
every group of one row it is the plain bound (up to the small-sample ``t`` factor).

A run is surer of triplets over images it trained on than of new ones at the same confidence, so a
calibration may carry each row's *regime* (:data:`REGIMES`: none of its images seen in training, or some)
and then chooses one threshold per regime on that regime's rows (Mondrian selection), each at level
``delta / regimes`` so that all hold together: any mix of answered rows keeps the target.

Thresholds where even a perfect record could not pass (fewer than ``ln delta / ln target`` effective rows
answered), or that answer rows of fewer than ``MIN_GROUPS`` groups, are left out of the sequence: that
depends on the confidences and groups only, never on correctness, so the guarantee stands.
Confidence is ``max(p_a, 1 - p_a)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The threshold of "abstain on everything" (no confidence reaches it).
ABSTAIN_ALL = math.inf
#: Candidate thresholds: one per 1/GRID of the calibration rows (0.5% coverage steps).
GRID = 200
#: Fewest groups (references) a tested threshold answers: the clustered variance needs that many to be
#: trusted, and a few very confident references must not end the scan before it starts.
MIN_GROUPS = 30


def confidence(p_a: np.ndarray) -> np.ndarray:
    p_a = np.asarray(p_a, dtype=np.float64)
    return np.maximum(p_a, 1.0 - p_a)


def clopper_pearson_lower(k: np.ndarray, n: np.ndarray, delta: float) -> np.ndarray:
    """One-sided lower confidence bound (level 1 - delta) of a binomial proportion: k successes of n."""
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = beta.ppf(delta, k, n - k + 1)
    return np.where(k > 0, np.nan_to_num(low, nan=0.0), 0.0)


def effective_counts(correct: np.ndarray, groups: np.ndarray, delta: float) -> tuple[np.ndarray, ...]:
    """Korn-Graubard's effective counts of every prefix of ``correct`` (rows in answering order; the
    prefix of ``j + 1`` rows answers them all) for the clusters ``groups``: ``(k_eff, n_eff, n_perfect,
    n_groups)``, ``n_perfect`` being what ``n_eff`` would be with every row right (it depends on the groups
    only) and ``n_groups`` the groups the prefix spans."""
    from scipy.stats import norm, t

    c = np.asarray(correct, dtype=np.float64)
    g = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n = np.arange(1, len(c) + 1, dtype=np.float64)
    # each row's group counts (rows, right rows) before the row joins it, by a stable sort on the group
    order = np.argsort(g, kind="stable")
    starts = np.r_[True, g[order][1:] != g[order][:-1]] if len(g) else np.zeros(0, bool)
    run = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    right = np.r_[0.0, np.cumsum(c[order])]
    n_before, k_before = np.empty(len(c)), np.empty(len(c))
    n_before[order] = np.arange(len(c)) - first[run]
    k_before[order] = right[:-1] - right[first][run]
    # running sums over the groups of k_g^2, k_g n_g and n_g^2 as each row joins its group
    s_kk = np.cumsum(2 * k_before * c + c * c)
    s_kn = np.cumsum(k_before + c * n_before + c)
    s_nn = np.cumsum(2 * n_before + 1)
    n_groups = np.cumsum(n_before == 0)
    p = np.cumsum(c) / n
    spread = np.maximum(s_kk - 2 * p * s_kn + p * p * s_nn, 0.0)  # sum over groups of (k_g - p n_g)^2
    variance = spread / (n * n) * n_groups / np.maximum(n_groups - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(variance > 0, np.minimum(p * (1 - p) / variance, n), n)
    # few groups: Student's t with G - 1 degrees of freedom in place of the normal quantile
    small = (norm.ppf(1 - delta) / t.ppf(1 - delta, np.maximum(n_groups - 1, 1))) ** 2
    return p * n_eff * small, n_eff * small, n * small, n_groups


def check_target(target: float, delta: float) -> list[str]:
    """What is wrong with a (target, delta) pair, as messages (empty when both are usable)."""
    problems = []
    if not (isinstance(target, (int, float)) and 0.0 < target <= 1.0):
        problems.append(f"target accuracy must be in (0, 1], got {target}")
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        problems.append(f"delta must be in (0, 1), got {delta}")
    return problems


@dataclass(frozen=True)
class Selection:
    """A chosen threshold and what it gives on the calibration rows. A calibration with regimes chooses one
    threshold per regime (``by_regime``); ``threshold`` is then the strictest of them, used for rows whose
    regime is not given."""

    target: float
    delta: float
    threshold: float  # answer when confidence >= threshold (ABSTAIN_ALL: never)
    coverage: float  # share of calibration rows answered
    accuracy: float | None  # accuracy on the answered calibration rows
    lower_bound: float | None  # its Clopper-Pearson lower bound (the weakest regime's)
    n_calibration: int
    effective_rows: float | None = None  # the answered rows counted as independent ones (grouped calibration)
    by_regime: dict[str, Selection] | None = None

    @property
    def feasible(self) -> bool:
        """Does any row get answered (in some regime)?"""
        if self.by_regime:
            return any(s.feasible for s in self.by_regime.values())
        return math.isfinite(self.threshold)

    def thresholds(self, regime: np.ndarray | None) -> np.ndarray | float:
        """The threshold of each row of ``regime`` (indices into :data:`REGIMES`), or the overall one."""
        if regime is None or not self.by_regime:
            return self.threshold
        return _per_regime(self.by_regime)[np.asarray(regime, dtype=np.int64)]

    def answered(self, p_a: np.ndarray, regime: np.ndarray | None = None) -> np.ndarray:
        return confidence(p_a) >= self.thresholds(regime)

    def as_dict(self) -> dict:
        out = {"target": self.target, "delta": self.delta, "threshold": self.threshold if math.isfinite(self.threshold) else None,
               "coverage": self.coverage, "accuracy": self.accuracy, "lower_bound": self.lower_bound,
               "n_calibration": self.n_calibration, "effective_rows": self.effective_rows}
        if self.by_regime:
            out["regimes"] = {name: s.as_dict() for name, s in self.by_regime.items()}
        return out


#: Regimes of a row for selective answers: none of its three images was in training, or some were. Each
#: gets its own threshold, chosen on calibration rows of that regime (Mondrian selection): a run is
#: surer of triplets over images it trained on, and a threshold of the mixture would over-answer new ones.
REGIMES = ("new", "known")


def regime_of(seen: np.ndarray) -> np.ndarray:
    """Each row's regime (index into :data:`REGIMES`) from its ``seen_ref, seen_a, seen_b`` flags."""
    return (np.asarray(seen).reshape(len(seen), -1) > 0).any(axis=1).astype(np.int64)


def _per_regime(by_regime: dict[str, Selection]) -> np.ndarray:
    """The threshold of each of :data:`REGIMES` (a regime without calibration rows never answers)."""
    return np.array([by_regime[name].threshold if name in by_regime else ABSTAIN_ALL for name in REGIMES])


class SelectiveCalibration:
    """Calibration rows, kept compactly: confidences sorted from most to least confident, whether each
    row's raw answer was right and, optionally, its group (reference image) for the clustered bound and
    its regime (:data:`REGIMES`) for one threshold per regime. Any (target, delta) is chosen from them in
    one vectorised pass per regime."""

    def __init__(self, confidences: np.ndarray, correct: np.ndarray, groups: np.ndarray | None = None,
                 regimes: np.ndarray | None = None):
        conf = np.asarray(confidences, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        order = np.argsort(-conf, kind="stable")
        self.confidences, self.correct = conf[order], correct[order]
        self.groups = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()[order]
        self.regimes = None if regimes is None else np.asarray(regimes, dtype=np.int64)[order]

    @classmethod
    def from_predictions(cls, p_a: np.ndarray, y_a: np.ndarray, weight: np.ndarray | None = None,
                         groups: np.ndarray | None = None, regimes: np.ndarray | None = None) -> SelectiveCalibration:
        """From P(A closer) and the truth (1/True: A closer); rows of weight 0 (tied votes) are left out.
        ``groups`` (e.g. each row's reference) makes the bound count rows of one group as correlated;
        ``regimes`` (:func:`regime_of`) gives every regime its own threshold."""
        p_a, y_a = np.asarray(p_a, dtype=np.float64), np.asarray(y_a).astype(bool)
        keep = np.isfinite(p_a) if weight is None else np.isfinite(p_a) & (np.asarray(weight) > 0)
        return cls(confidence(p_a[keep]), (p_a[keep] >= 0.5) == y_a[keep], None if groups is None else np.asarray(groups)[keep],
                   None if regimes is None else np.asarray(regimes)[keep])

    def __len__(self) -> int:
        return len(self.confidences)

    def _rows(self, mask: np.ndarray) -> SelectiveCalibration:
        """The rows of ``mask`` (already sorted), without regimes."""
        part = SelectiveCalibration.__new__(SelectiveCalibration)
        part.confidences, part.correct = self.confidences[mask], self.correct[mask]
        part.groups = None if self.groups is None else self.groups[mask]
        part.regimes = None
        return part

    def select(self, target: float, delta: float) -> Selection:
        """The threshold for ``target`` at level ``delta``; with regimes, one per regime present, each at
        ``delta / regimes`` (Bonferroni: every regime's guarantee holds at once with probability 1 - delta,
        so the accuracy of any mixture of answered rows is at least the target)."""
        if self.regimes is None:
            return self._select(target, delta)
        present = [i for i in range(len(REGIMES)) if (self.regimes == i).any()]
        by_regime = {REGIMES[i]: self._rows(self.regimes == i)._select(target, delta / len(present)) for i in present}
        answered = self.confidences >= _per_regime(by_regime)[self.regimes]
        n = int(answered.sum())
        strictest = max((s.threshold for s in by_regime.values()), default=ABSTAIN_ALL)
        bounds = [s.lower_bound for s in by_regime.values() if s.lower_bound is not None]
        effective = [s.effective_rows for s in by_regime.values() if s.effective_rows is not None]
        return Selection(target, delta, strictest, n / len(self) if len(self) else 0.0,
                         float(self.correct[answered].mean()) if n else None, min(bounds) if bounds else None, len(self),
                         float(sum(effective)) if effective else None, by_regime)

    def _select(self, target: float, delta: float) -> Selection:
        n_rows = len(self)
        last = self._candidates()
        n = last + 1
        k = np.cumsum(self.correct)[last] if n_rows else np.zeros(0)
        if self.groups is None:
            k_eff, n_eff, n_perfect, n_groups = k, n, n, n
        else:
            k_eff, n_eff, n_perfect, n_groups = (a[last] for a in effective_counts(self.correct, self.groups, delta))
        possible = (n_perfect >= (math.log(delta) / math.log(target) if target < 1.0 else math.inf)) & (n_groups >= MIN_GROUPS)
        n, k, last, k_eff, n_eff = n[possible], k[possible], last[possible], k_eff[possible], n_eff[possible]
        low = clopper_pearson_lower(k_eff, n_eff, delta)
        failed = np.flatnonzero(low < target)
        passed = len(low) if not len(failed) else failed[0]  # the sequence stops at its first failure
        if passed == 0:
            return Selection(target, delta, ABSTAIN_ALL, 0.0, None, None, n_rows)
        j = passed - 1
        return Selection(target, delta, float(self.confidences[last[j]]), float(n[j] / n_rows), float(k[j] / n[j]),
                         float(low[j]), n_rows, None if self.groups is None else float(n_eff[j]))

    def _candidates(self) -> np.ndarray:
        """Row index of the last row answered by each candidate threshold, strictest first: the grid's
        coverage steps, each moved to the end of its run of tied confidences (a threshold answers all ties)."""
        n_rows = len(self)
        if not n_rows:
            return np.zeros(0, int)
        block_end = self._tie_ends()
        steps = np.unique(np.ceil(np.arange(1, GRID + 1) * n_rows / GRID).astype(int) - 1)
        return np.unique(block_end[np.searchsorted(block_end, steps)])

    def risk_coverage(self) -> tuple[np.ndarray, np.ndarray]:
        """(coverage, accuracy on answered rows) at every distinct threshold, strictest first."""
        if not len(self):
            return np.zeros(0), np.zeros(0)
        last = self._tie_ends()
        return (last + 1) / len(self), np.cumsum(self.correct)[last] / (last + 1)

    def _tie_ends(self) -> np.ndarray:
        """Index of the last row of each run of equal confidences (every distinct threshold), strictest first."""
        return np.flatnonzero(np.r_[self.confidences[1:] != self.confidences[:-1], True])

    # -- storage: two arrays, in the file format the caller chooses (the run folder uses safetensors) --------
    def arrays(self) -> dict[str, np.ndarray]:
        out = {"confidence": self.confidences.astype(np.float64), "correct": self.correct.astype(np.uint8)}
        if self.groups is not None:
            out["group"] = self.groups.astype(np.int64)
        if self.regimes is not None:
            out["regime"] = self.regimes.astype(np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SelectiveCalibration:
        return cls(np.asarray(arrays["confidence"]), np.asarray(arrays["correct"]).astype(bool), arrays.get("group"),
                   arrays.get("regime"))
