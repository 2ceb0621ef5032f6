"""Is ``p_a`` a calibrated probability? Reliability curve, Brier score and expected calibration error.

The event is "A was judged closer" (``label == 'A'``) and the forecast is P(A closer), so the
reliability curve is scikit-learn's ``calibration_curve`` on (label == A, p_a) with uniform bins,
and ECE is the row-weighted mean gap between each bin's share of A and its mean ``p_a``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

#: Uniform bins over [0, 1] of the reliability diagram and of ECE.
DEFAULT_BINS = 10


@dataclass(frozen=True)
class Calibration:
    """Calibration of one probabilistic model on labelled rows."""

    n: int
    brier: float
    ece: float
    #: One dict per non-empty bin: ``lo``, ``hi``, ``n``, ``mean_p`` (forecast), ``frac_a`` (observed).
    bins: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"n": self.n, "brier": self.brier, "ece": self.ece, "bins": self.bins}


def bin_ids(p: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """The uniform bin of each probability, exactly as ``sklearn.calibration.calibration_curve`` bins."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], p)


def calibration(y_a: np.ndarray, p_a: np.ndarray, n_bins: int = DEFAULT_BINS) -> Calibration | None:
    """Reliability bins, Brier score and ECE of forecasts ``p_a`` for outcomes ``y_a`` (1 = A); None when empty."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y_a, dtype=np.int64)
    p = np.asarray(p_a, dtype=np.float64)
    if y.size == 0:
        return None
    # labels=[0, 1]: a sample with a single outcome is still a binary problem.
    brier = float(brier_score_loss(y, p, labels=[0, 1]))
    frac_a, mean_p = calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=1)
    counts = np.bincount(bin_ids(p, n_bins), minlength=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    filled = np.flatnonzero(counts)
    bins = [
        {"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(counts[i]), "mean_p": float(mp), "frac_a": float(fa)}
        for i, mp, fa in zip(filled, mean_p, frac_a)
    ]
    ece = float(np.sum(counts[filled] / y.size * np.abs(frac_a - mean_p)))
    return Calibration(n=int(y.size), brier=brier, ece=ece, bins=bins)


def brier_by_group(frame: pl.DataFrame, p: str, group: str = "context", label: str = "label") -> dict[str, float]:
    """Brier score of column ``p`` per group of labelled rows."""
    err = (pl.col(p) - (pl.col(label) == "A").cast(pl.Float64)) ** 2
    rows = frame.filter(pl.col(label).is_not_null()).group_by(group).agg(err.mean().alias("brier")).rows()
    return {str(g): float(b) for g, b in rows}
