"""Selective answers: the threshold Learn-then-Test picks, checked against Clopper-Pearson bounds computed
here independently with scipy.stats.beta."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from ctxsim.ensemble.selective import (
    ABSTAIN_ALL,
    SelectiveCalibration,
    check_target,
    clopper_pearson_lower,
    confidence,
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
