"""Selective answers: the threshold Learn-then-Test picks, checked against Clopper-Pearson bounds computed
here independently with scipy.stats.beta."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from ctxsim.ensemble.selective import (
    ABSTAIN_ALL,
    GRID,
    MIN_GROUPS,
    REGIMES,
    SelectiveCalibration,
    check_target,
    clopper_pearson_lower,
    confidence,
    effective_counts,
    regime_of,
)


def lower(k: int, n: int, delta: float) -> float:
    return 0.0 if k == 0 else float(beta.ppf(delta, k, n - k + 1))


def groups(*spec: tuple[float, int, int]) -> SelectiveCalibration:
    """Rows in groups of (confidence, rows, correct rows)."""
    conf = np.concatenate([np.full(n, c) for c, n, _ in spec])
    correct = np.concatenate([np.arange(n) < k for _, n, k in spec])
    return SelectiveCalibration(conf, correct)


# 100 rows at 0.95 all right, 100 at 0.75 with 80 right, 100 at 0.6 with 55 right
CAL = ((0.95, 100, 100), (0.75, 100, 80), (0.6, 100, 55))


@pytest.mark.parametrize("target", [0.80, 0.85, 0.90, 0.97, 0.98])
def test_threshold_is_the_most_lenient_before_the_first_failure(target):
    delta = 0.05
    cal = groups(*CAL)
    bounds = [lower(100, 100, delta), lower(180, 200, delta), lower(235, 300, delta)]
    assert bounds[0] == pytest.approx(delta ** (1 / 100))  # all right: the bound is delta^(1/n)
    passed = 0
    while passed < 3 and bounds[passed] >= target:
        passed += 1
    s = cal.select(target, delta)
    if passed == 0:
        assert s.threshold == ABSTAIN_ALL and s.coverage == 0.0 and not s.feasible
    else:
        assert s.threshold == [0.95, 0.75, 0.6][passed - 1]
        assert s.coverage == pytest.approx(passed / 3)
        assert s.lower_bound == pytest.approx(bounds[passed - 1])
        assert s.accuracy == pytest.approx([1.0, 0.9, 235 / 300][passed - 1])


def test_hand_checked_thresholds():
    cal = groups(*CAL)
    # 180/200 has a 95% lower bound of about 0.858: 0.85 reaches the 0.75 group, 0.90 only the 0.95 group
    assert 0.85 < lower(180, 200, 0.05) < 0.9
    assert cal.select(0.85, 0.05).threshold == 0.75
    assert cal.select(0.90, 0.05).threshold == 0.95
    assert cal.select(0.98, 0.05).threshold == ABSTAIN_ALL  # 0.05^(1/100) = 0.9705 < 0.98


def test_the_sequence_stops_at_its_first_failure():
    """A bad strict group fails first; a later, larger group would pass on its own, but is never tested."""
    cal = groups((0.99, 60, 50), (0.8, 1000, 1000))
    assert lower(50, 60, 0.05) < 0.9 <= lower(1050, 1060, 0.05)
    assert cal.select(0.9, 0.05).threshold == ABSTAIN_ALL


def test_thresholds_no_record_could_pass_are_left_out():
    """10 perfect rows cannot show 0.95 at delta 0.05 (0.05^(1/10) = 0.74); they are skipped, not failed."""
    assert math.log(0.05) / math.log(0.95) > 10
    cal = groups((0.99, 10, 10), (0.9, 200, 200))
    s = cal.select(0.95, 0.05)
    assert s.threshold == 0.9 and s.coverage == 1.0 and s.lower_bound == pytest.approx(lower(210, 210, 0.05))


def test_a_target_of_one_abstains_on_everything():
    cal = groups((0.999, 10_000, 10_000))
    assert cal.select(1.0, 0.05).threshold == ABSTAIN_ALL
    assert not cal.select(1.0, 0.05).answered(np.array([0.0, 1.0, 0.5])).any()


def test_from_predictions_confidence_correctness_and_tied_votes():
    p = np.array([0.9, 0.2, 0.6, 0.45, 0.5])
    y = np.array([1, 1, 1, 0, 0])
    np.testing.assert_allclose(confidence(p), [0.9, 0.8, 0.6, 0.55, 0.5])
    cal = SelectiveCalibration.from_predictions(p, y, weight=np.array([1, 1, 1, 1, 0]))
    assert len(cal) == 4  # the tied-vote row has no right answer
    np.testing.assert_array_equal(cal.confidences, [0.9, 0.8, 0.6, 0.55])
    np.testing.assert_array_equal(cal.correct, [True, False, True, True])  # 0.2 says B, the truth is A
    coverage, accuracy = cal.risk_coverage()
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(accuracy, [1.0, 0.5, 2 / 3, 0.75])
    again = SelectiveCalibration.from_arrays(cal.arrays())
    np.testing.assert_array_equal(again.confidences, cal.confidences)
    np.testing.assert_array_equal(again.correct, cal.correct)


def test_clopper_pearson_lower_and_bad_targets():
    np.testing.assert_allclose(clopper_pearson_lower(np.array([0, 5, 10]), np.array([10, 10, 10]), 0.05),
                               [0.0, lower(5, 10, 0.05), 0.05 ** 0.1])
    assert check_target(0.95, 0.05) == []
    assert len(check_target(1.5, 0.05)) == 1 and len(check_target(0.9, 0.0)) == 1 and len(check_target(0.0, 1.0)) == 2


# -- rows that share a reference: Korn-Graubard's effective counts ---------------------------------------

def direct_effective(correct: np.ndarray, groups: np.ndarray, delta: float) -> tuple[float, float]:
    """(k_eff, n_eff) of all of ``correct``, straight from the formulas: the sandwich variance over groups."""
    from scipy.stats import norm, t

    n, p = len(correct), correct.mean()
    labels = np.unique(groups)
    spread = sum((correct[groups == g].sum() - p * (groups == g).sum()) ** 2 for g in labels)
    variance = spread / n**2 * len(labels) / max(len(labels) - 1, 1)
    n_eff = min(p * (1 - p) / variance, n) if variance > 0 else n
    n_eff *= (norm.ppf(1 - delta) / t.ppf(1 - delta, max(len(labels) - 1, 1))) ** 2
    return p * n_eff, n_eff


def test_effective_counts_of_every_prefix_match_the_formulas():
    rng = np.random.default_rng(3)
    correct, groups = rng.random(400) < 0.8, rng.integers(0, 40, 400)
    k_eff, n_eff, n_perfect, n_groups = effective_counts(correct, groups, 0.05)
    for j in (0, 7, 99, 250, 399):
        k, n = direct_effective(correct[: j + 1].astype(float), groups[: j + 1], 0.05)
        assert n_eff[j] == pytest.approx(n) and k_eff[j] == pytest.approx(k)
        assert n_groups[j] == len(np.unique(groups[: j + 1]))
        assert n_perfect[j] == pytest.approx(direct_effective(np.ones(j + 1), groups[: j + 1], 0.05)[1])


def test_groups_that_are_right_or_wrong_together_count_once():
    """60 references of 20 rows each, every reference all right or all wrong: the sandwich variance is
    p (1 - p) / (G - 1), so the rows count as G - 1 = 59 effective rows (before the t factor), not 1200."""
    from scipy.stats import norm, t

    right = np.repeat(np.arange(60) < 54, 20)  # 54 of 60 references right: p = 0.9
    groups = np.repeat(np.arange(60), 20)
    order = np.random.default_rng(0).permutation(1200)
    k_eff, n_eff, _, _ = effective_counts(right[order], groups[order], 0.05)
    factor = (norm.ppf(0.95) / t.ppf(0.95, 59)) ** 2
    assert n_eff[-1] == pytest.approx(59 * factor) and k_eff[-1] == pytest.approx(0.9 * 59 * factor)


def test_groups_of_one_row_are_the_plain_bound_with_a_t_factor():
    """Every row its own group: the sandwich variance is p (1 - p) / (n - 1), so n - 1 effective rows."""
    from scipy.stats import norm, t

    correct = np.r_[np.ones(90, bool), np.zeros(10, bool)]
    k_eff, n_eff, _, _ = effective_counts(correct, np.arange(100), 0.05)
    factor = (norm.ppf(0.95) / t.ppf(0.95, 99)) ** 2
    assert 0.97 < factor < 1 and n_eff[-1] == pytest.approx(99 * factor) and k_eff[-1] == pytest.approx(0.9 * 99 * factor)


def test_correlated_references_make_the_threshold_stricter():
    """The same rows answer less when they carry their references: the bound counts effective rows."""
    rng = np.random.default_rng(1)
    refs = np.repeat(np.arange(200), 50)
    hard = rng.random(200) < 0.1  # a tenth of the references the model misreads
    correct = np.where(hard[refs], rng.random(10_000) < 0.3, rng.random(10_000) < 0.98)
    conf = np.where(hard[refs], 0.8, 0.9) + rng.random(10_000) * 0.05
    plain, grouped = SelectiveCalibration(conf, correct), SelectiveCalibration(conf, correct, groups=refs)
    p, g = plain.select(0.9, 0.05), grouped.select(0.9, 0.05)
    assert g.feasible and g.effective_rows < 0.5 * g.coverage * 10_000
    assert g.lower_bound < p.lower_bound or g.coverage < p.coverage
    again = SelectiveCalibration.from_arrays(grouped.arrays())
    assert again.select(0.9, 0.05) == g


def test_a_few_references_never_end_the_scan(monkeypatch):
    """Thresholds answering fewer than MIN_GROUPS references are not tested: the misread rows of the five
    most confident references (85 of 100 right, clustered) would fail 0.8 there and end the scan before
    the 5,000 right rows of 500 references that follow."""
    from ctxsim.ensemble import selective

    conf = np.r_[np.full(100, 0.99), np.linspace(0.95, 0.6, 5000)]
    refs = np.r_[np.repeat(np.arange(5), 20), 5 + np.arange(5000) % 500]
    correct = np.r_[np.arange(100) % 20 >= 3, np.ones(5000, bool)]
    s = SelectiveCalibration(conf, correct, groups=refs).select(0.8, 0.05)
    assert MIN_GROUPS > 5 and s.feasible and s.coverage == 1.0
    monkeypatch.setattr(selective, "MIN_GROUPS", 1)
    assert not SelectiveCalibration(conf, correct, groups=refs).select(0.8, 0.05).feasible


def test_candidates_are_a_coverage_grid_moved_to_the_end_of_ties():
    conf = np.r_[np.full(3, 0.9), np.linspace(0.8, 0.5, 997)]
    cal = SelectiveCalibration(conf, np.ones(1000, bool))
    last = cal._candidates()
    assert len(last) == GRID and last[0] == 4 and last[-1] == 999  # 1000 / 200 = 5 rows a step; the 3 ties fit in the first
    tied = SelectiveCalibration(np.r_[np.full(12, 0.9), np.linspace(0.8, 0.5, 988)], np.ones(1000, bool))
    assert tied._candidates()[0] == 11  # the 5-row step lands inside the 12 ties: it answers all of them


# -- one threshold per regime (new images / some known) --------------------------------------------------

def test_each_regime_gets_the_threshold_of_its_own_rows_at_half_the_delta():
    """New-image rows are right less often at the same confidence: their threshold is stricter, and each
    regime's is what its own rows give at delta / 2 (Bonferroni over the two regimes)."""
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.5, 1.0, 20_000)
    regime = (rng.random(20_000) < 0.5).astype(int)  # 0: new, 1: known
    correct = rng.random(20_000) < np.where(regime == 0, conf - 0.08, conf + 0.02)
    refs = rng.integers(0, 400, 20_000)
    cal = SelectiveCalibration(conf, correct, groups=refs, regimes=regime)
    s = cal.select(0.9, 0.05)
    for i, name in enumerate(REGIMES):
        own = SelectiveCalibration(conf[regime == i], correct[regime == i], groups=refs[regime == i]).select(0.9, 0.025)
        assert s.by_regime[name] == own
    assert s.by_regime["new"].threshold > s.by_regime["known"].threshold
    assert s.threshold == s.by_regime["new"].threshold  # rows of no stated regime get the strictest
    p_a = np.array([0.9, 0.9, 0.1])
    np.testing.assert_array_equal(s.answered(p_a, np.array([0, 1, 1])),
                                  [0.9 >= s.by_regime["new"].threshold, 0.9 >= s.by_regime["known"].threshold, True])
    again = SelectiveCalibration.from_arrays(cal.arrays())
    assert again.select(0.9, 0.05) == s
    assert set(s.as_dict()["regimes"]) == set(REGIMES)


def test_regime_of_a_row_is_known_when_any_of_its_images_was_seen():
    np.testing.assert_array_equal(regime_of(np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]])), [0, 1, 1, 1])
