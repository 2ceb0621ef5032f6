"""Streaming accuracy counts, Wilson intervals and vote agreement, against hand-computed numbers."""
from __future__ import annotations

import math

import polars as pl
import pytest

from ctxsim.schema import OVERALL
from ctxsim.metrics import AccuracyTally, wilson_interval

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_by_hand(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(8, 10), (0, 5), (5, 5), (731, 1000)])
def test_wilson_interval(k, n):
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)


def test_wilson_interval_known_values_and_empty():
    assert wilson_interval(8, 10) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def scored() -> pl.DataFrame:
    """Six scored rows in two contexts, with labels and votes."""
    return pl.DataFrame(
        {
            "context": ["x", "x", "x", "y", "y", "y"],
            "pred": ["A", "B", "A", "B", "A", "A"],
            "label": ["A", "A", "A", "B", "B", "A"],
            "votes_a": [3, 2, 1, 0, 1, 2],
            "votes_b": [1, 2, 3, 4, 3, 2],
        }
    ).with_columns((pl.col("pred") == pl.col("label")).alias("correct"))


def test_accuracy_per_context_and_overall():
    tally = AccuracyTally()
    tally.update(scored())
    x, y, overall = tally.summary()
    assert [r["context"] for r in (x, y, overall)] == ["x", "y", OVERALL]
    # x: rows 1..3 correct, wrong, correct -> 2/3; y: correct, wrong, correct -> 2/3; all 4/6
    assert (x["rows"], x["labelled"], x["accuracy"]) == (3, 3, pytest.approx(2 / 3))
    assert (y["rows"], y["accuracy"]) == (3, pytest.approx(2 / 3))
    assert (overall["rows"], overall["labelled"], overall["accuracy"]) == (6, 6, pytest.approx(4 / 6))
    assert (overall["ci_low"], overall["ci_high"]) == pytest.approx(wilson_by_hand(4, 6))


def test_vote_agreement_majority_accuracy_and_ceiling():
    tally = AccuracyTally()
    tally.update(scored())
    x, y, overall = tally.summary()
    # x: votes (3,1) pred A -> 3 agree; (2,2) pred B -> 2; (1,3) pred A -> 1. 6 of 12 votes agree.
    #    clear-majority rows: 1 (majority A, pred A: right) and 3 (majority B, pred A: wrong) -> 1/2
    #    ceiling: 3 + 2 + 3 = 8 of 12
    assert x["vote_agreement"] == pytest.approx(6 / 12)
    assert x["majority_accuracy"] == pytest.approx(1 / 2)
    assert x["vote_ceiling"] == pytest.approx(8 / 12)
    # y: (0,4) pred B -> 4; (1,3) pred A -> 1; (2,2) pred A -> 2: 7 of 12; clear rows 4 (right), 5 (wrong)
    assert y["vote_agreement"] == pytest.approx(7 / 12)
    assert y["majority_accuracy"] == pytest.approx(1 / 2)
    assert y["vote_ceiling"] == pytest.approx((4 + 3 + 2) / 12)
    assert overall["vote_agreement"] == pytest.approx(13 / 24)
    assert overall["majority_accuracy"] == pytest.approx(2 / 4)
    assert overall["vote_ceiling"] == pytest.approx(17 / 24)


def test_chunks_add_up_to_the_whole():
    whole, chunked = AccuracyTally(), AccuracyTally()
    whole.update(scored())
    for chunk in scored().iter_slices(2):
        chunked.update(chunk)
    assert chunked.counts == whole.counts
    assert chunked.summary() == whole.summary()


def test_unlabelled_and_voteless_rows():
    tally = AccuracyTally()
    tally.update(pl.DataFrame({"context": ["x", "x"], "pred": ["A", "B"]}))
    (x, overall) = tally.summary()
    assert x == {"context": "x", "rows": 2} and overall == {"context": OVERALL, "rows": 2}
    # a row with no label (null correct) counts as a row but not as a labelled one
    tally = AccuracyTally()
    tally.update(pl.DataFrame({"context": ["x", "x", "x"], "pred": ["A", "B", "A"], "correct": [True, None, False]}))
    (x, _) = tally.summary()
    assert (x["rows"], x["labelled"], x["accuracy"]) == (3, 2, 0.5)


def test_all_ties_give_no_majority_accuracy():
    tally = AccuracyTally()
    tally.update(pl.DataFrame({"context": ["x"], "pred": ["A"], "votes_a": [2], "votes_b": [2]}))
    (x, _) = tally.summary()
    assert math.isnan(x["majority_accuracy"]) and x["vote_agreement"] == 0.5 and x["vote_ceiling"] == 0.5


def test_empty_tally():
    assert AccuracyTally().summary() == []


def test_tally_reports_answered_share_and_accuracy_on_answered_rows():
    chunk = pl.DataFrame({"context": ["x", "x", "x", "y"], "pred": ["A", "abstain", "abstain", "B"],
                          "pred_raw": ["A", "B", "A", "B"], "answered": [True, False, False, True],
                          "correct": [True, True, False, False], "votes_a": [3, 0, 1, 2], "votes_b": [1, 2, 1, 0]})
    tally = AccuracyTally()
    tally.update(chunk)
    rows = {r["context"]: r for r in tally.summary()}
    assert rows["x"]["answered"] == pytest.approx(1 / 3) and rows["x"]["answered_accuracy"] == 1.0
    assert rows["y"]["answered"] == 1.0 and rows["y"]["answered_accuracy"] == 0.0
    assert rows["(all)"]["answered"] == 0.5 and rows["(all)"]["answered_accuracy"] == 0.5
    assert rows["(all)"]["accuracy"] == 0.5  # every row counts in accuracy, judged on pred_raw
    # votes side with pred_raw, not with "abstain": x has 3 + 2 + 1 of 8 votes, y 0 of 2
    assert rows["x"]["vote_agreement"] == pytest.approx(6 / 8) and rows["y"]["vote_agreement"] == 0.0


@pytest.mark.parametrize("k, n, confidence", [(0, 1, 0.95), (3, 7, 0.95), (950, 1000, 0.99), (1000, 1000, 0.9), (41, 97, 0.8)] + [(n, n, 0.95) for n in range(1, 200)] + [(0, n, 0.95) for n in range(1, 50)])
def test_wilson_interval_is_scipys(k, n, confidence):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson_interval(k, n, confidence)
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0  # exactly: a report draws accuracy - low and high - accuracy as error bars
