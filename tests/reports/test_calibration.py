"""Brier score, ECE and reliability bins by hand, and agreement with scikit-learn's binning."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.calibration import calibration_curve

from ctxsim.reports.calibration import bin_ids, brier_by_group, calibration


def test_two_rows_in_one_bin():
    y = np.array([0, 1, 1, 1])
    p = np.array([0.12, 0.18, 0.85, 0.95])
    cal = calibration(y, p)
    assert cal.n == 4
    assert cal.brier == pytest.approx((0.0144 + 0.6724 + 0.0225 + 0.0025) / 4)
    # bin (0.1, 0.2]: mean p 0.15, share A 0.5, half the rows; (0.8, 0.9] and (0.9, 1] one row each
    assert cal.ece == pytest.approx(0.5 * 0.35 + 0.25 * 0.15 + 0.25 * 0.05)
    assert [b["n"] for b in cal.bins] == [2, 1, 1]
    assert [b["mean_p"] for b in cal.bins] == pytest.approx([0.15, 0.85, 0.95])
    assert [b["frac_a"] for b in cal.bins] == pytest.approx([0.5, 1.0, 1.0])
    assert [b["lo"] for b in cal.bins] == pytest.approx([0.1, 0.8, 0.9])
    assert [b["hi"] for b in cal.bins] == pytest.approx([0.2, 0.9, 1.0])


def test_bins_are_sklearns_bins():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=500), np.linspace(0, 1, 11)])  # bin edges included
    y = (rng.uniform(size=p.size) < p).astype(int)
    cal = calibration(y, p, n_bins=7)
    frac_a, mean_p = calibration_curve(y, p, n_bins=7)
    assert [b["frac_a"] for b in cal.bins] == pytest.approx(frac_a)
    assert [b["mean_p"] for b in cal.bins] == pytest.approx(mean_p)
    assert sum(b["n"] for b in cal.bins) == p.size
    for b in cal.bins:  # every bin's mean forecast lies inside the bin
        assert b["lo"] <= b["mean_p"] <= b["hi"]


def test_bin_edges_belong_to_the_lower_bin():
    assert bin_ids(np.array([0.0, 0.1, 0.1001, 0.95, 1.0])).tolist() == [0, 0, 1, 9, 9]


def test_single_outcome_and_empty_input():
    assert calibration(np.array([1, 1]), np.array([0.9, 0.7])).brier == pytest.approx((0.01 + 0.09) / 2)
    assert calibration(np.array([], dtype=int), np.array([])) is None


def test_brier_by_group():
    df = pl.DataFrame({"context": ["x", "x", "y"], "label": ["A", "B", "B"], "p": [0.75, 0.5, 0.0]})
    assert brier_by_group(df, "p") == pytest.approx({"x": (0.0625 + 0.25) / 2, "y": 0.0})
