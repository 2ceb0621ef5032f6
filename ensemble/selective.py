"""Selective answers with a guarantee: abstain below a confidence threshold chosen so that accuracy on
the answered rows is at least a target with probability ``1 - delta``.

Learn-then-Test with fixed-sequence testing (Angelopoulos et al., 2021): the candidate thresholds are the
calibration rows' confidences, strictest first. For threshold ``t`` the null hypothesis is "accuracy on
rows with confidence >= t is below the target"; it is rejected when the one-sided Clopper-Pearson lower
bound (level ``1 - delta``) of that accuracy is >= target. Hypotheses are tested in order, each at level
``delta``, and the scan stops at the first one not rejected; the most lenient rejected threshold is
chosen. Fixed-sequence testing controls the family-wise error at ``delta``, so the chosen threshold has
accuracy >= target with probability >= 1 - delta, provided calibration rows and the rows answered later
are exchangeable (drawn from the same distribution).

Thresholds where even a perfect record could not pass (fewer than ``ln delta / ln target`` rows
answered) are left out of the sequence: that depends on the confidences only, never on correctness.
Confidence is ``max(p_a, 1 - p_a)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The threshold of "abstain on everything" (no confidence reaches it).
ABSTAIN_ALL = math.inf


def confidence(p_a: np.ndarray) -> np.ndarray:
    p_a = np.asarray(p_a, dtype=np.float64)
    return np.maximum(p_a, 1.0 - p_a)


def clopper_pearson_lower(k: np.ndarray, n: np.ndarray, delta: float) -> np.ndarray:
    """One-sided lower confidence bound (level 1 - delta) of a binomial proportion: k successes of n."""
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = beta.ppf(delta, k, n - k + 1)
    return np.where(k > 0, low, 0.0)


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
    """A chosen threshold and what it gives on the calibration rows."""

    target: float
    delta: float
    threshold: float  # answer when confidence >= threshold (ABSTAIN_ALL: never)
    coverage: float  # share of calibration rows answered
    accuracy: float | None  # accuracy on the answered calibration rows
    lower_bound: float | None  # its Clopper-Pearson lower bound
    n_calibration: int

    @property
    def feasible(self) -> bool:
        return math.isfinite(self.threshold)

    def answered(self, p_a: np.ndarray) -> np.ndarray:
        return confidence(p_a) >= self.threshold

    def as_dict(self) -> dict:
        return {"target": self.target, "delta": self.delta, "threshold": self.threshold if self.feasible else None,
                "coverage": self.coverage, "accuracy": self.accuracy, "lower_bound": self.lower_bound,
                "n_calibration": self.n_calibration}


class SelectiveCalibration:
    """Calibration rows, kept compactly: confidences sorted from most to least confident, and whether each
    row's raw answer was right. Any (target, delta) is chosen from them in one vectorised pass."""

    def __init__(self, confidences: np.ndarray, correct: np.ndarray):
        conf = np.asarray(confidences, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        order = np.argsort(-conf, kind="stable")
        self.confidences, self.correct = conf[order], correct[order]

    @classmethod
    def from_predictions(cls, p_a: np.ndarray, y_a: np.ndarray, weight: np.ndarray | None = None) -> SelectiveCalibration:
        """From P(A closer) and the truth (1/True: A closer); rows of weight 0 (tied votes) are left out."""
        p_a, y_a = np.asarray(p_a, dtype=np.float64), np.asarray(y_a).astype(bool)
        keep = np.isfinite(p_a) if weight is None else np.isfinite(p_a) & (np.asarray(weight) > 0)
        return cls(confidence(p_a[keep]), (p_a[keep] >= 0.5) == y_a[keep])

    def __len__(self) -> int:
        return len(self.confidences)

    def select(self, target: float, delta: float) -> Selection:
        n_rows = len(self)
        # candidate thresholds: each distinct confidence, strictest first; a threshold answers all rows at or above it
        last = np.flatnonzero(np.r_[self.confidences[1:] != self.confidences[:-1], True]) if n_rows else np.zeros(0, int)
        n = last + 1
        k = np.cumsum(self.correct)[last] if n_rows else np.zeros(0)
        possible = n >= (math.log(delta) / math.log(target) if target < 1.0 else math.inf)
        n, k, last = n[possible], k[possible], last[possible]
        low = clopper_pearson_lower(k, n, delta)
        failed = np.flatnonzero(low < target)
        passed = len(low) if not len(failed) else failed[0]  # the sequence stops at its first failure
        if passed == 0:
            return Selection(target, delta, ABSTAIN_ALL, 0.0, None, None, n_rows)
        j = passed - 1
        return Selection(target, delta, float(self.confidences[last[j]]), float(n[j] / n_rows), float(k[j] / n[j]),
                         float(low[j]), n_rows)

    def risk_coverage(self) -> tuple[np.ndarray, np.ndarray]:
        """(coverage, accuracy on answered rows) at every distinct threshold, strictest first."""
        if not len(self):
            return np.zeros(0), np.zeros(0)
        last = np.flatnonzero(np.r_[self.confidences[1:] != self.confidences[:-1], True])
        return (last + 1) / len(self), np.cumsum(self.correct)[last] / (last + 1)

    # -- storage: two arrays, in the file format the caller chooses (the run folder uses safetensors) --------
    def arrays(self) -> dict[str, np.ndarray]:
        return {"confidence": self.confidences.astype(np.float64), "correct": self.correct.astype(np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SelectiveCalibration:
        return cls(np.asarray(arrays["confidence"]), np.asarray(arrays["correct"]).astype(bool))
