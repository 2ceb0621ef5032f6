"""Accuracy, Wilson intervals, vote agreement and counts compared to numbers worked out by hand."""
from __future__ import annotations

import math

import pytest

from ctxsim.reports.accuracy import context_counts, model_accuracy
from ctxsim.schema import OVERALL
from ctxsim.metrics import wilson_interval
from ctxsim.reports.scored import prepare

Z95 = 1.959963984540054


def wilson_by_hand(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_wilson_interval_matches_the_formula_and_a_textbook_value():
    assert wilson_interval(7, 10) == pytest.approx(wilson_by_hand(7, 10))
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert wilson_interval(0, 5)[0] == pytest.approx(0.0, abs=1e-12)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


@pytest.fixture
def accuracy(scored) -> dict[tuple[str, str], dict]:
    frame, models = prepare(scored)
    return {(r["model"], r["context"]): r for r in model_accuracy(frame, models)}


@pytest.mark.parametrize(
    ("model", "context", "correct", "n"),
    [
        ("ensemble", "red", 2, 4), ("ensemble", "blue", 4, 4), ("ensemble", OVERALL, 6, 8),
        # a baseline says A at p >= 0.5: row 3 (0.5, label A) right, row 6 (0.55, label B) wrong
        ("majority_vote", "red", 4, 4), ("majority_vote", "blue", 3, 4), ("majority_vote", OVERALL, 7, 8),
        # a member says A only when its margin is > 0: row 3 (margin 0.0, label A) is wrong
        ("zeroshot", "red", 4, 4), ("zeroshot", "blue", 2, 4), ("zeroshot", OVERALL, 6, 8),
        ("context-red", "red", 3, 4), ("context-red", "blue", 3, 4), ("context-red", OVERALL, 6, 8),
    ],
)
def test_accuracy_per_model_and_context(accuracy, model, context, correct, n):
    row = accuracy[(model, context)]
    assert row["labelled"] == n
    assert row["accuracy"] == pytest.approx(correct / n)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_by_hand(correct, n))


def test_vote_agreement_ceiling_and_majority_accuracy(accuracy):
    red, blue, both = (accuracy[("ensemble", c)] for c in ("red", "blue", OVERALL))
    # red: votes 4+3+4+4; the prediction (A, A, B, B) collects 3+1+2+4; the majority 3+2+2+4
    assert red["vote_agreement"] == pytest.approx(10 / 15)
    assert red["vote_ceiling"] == pytest.approx(11 / 15)
    assert red["majority_accuracy"] == pytest.approx(2 / 3)  # row 3 is tied; row 2 goes against the majority
    assert blue["vote_agreement"] == pytest.approx(9 / 13)
    assert blue["vote_ceiling"] == pytest.approx(9 / 13)
    assert blue["majority_accuracy"] == pytest.approx(1.0)
    assert both["vote_agreement"] == pytest.approx(19 / 28)
    assert both["majority_accuracy"] == pytest.approx(5 / 6)


def test_brier_per_context(accuracy):
    assert accuracy[("ensemble", "red")]["brier"] == pytest.approx((0.01 + 0.64 + 0.49 + 0.01) / 4)
    assert accuracy[("ensemble", "blue")]["brier"] == pytest.approx((0.16 + 0.2025 + 0.09 + 0.04) / 4)
    assert accuracy[("ensemble", OVERALL)]["brier"] == pytest.approx(1.6425 / 8)
    assert "brier" not in accuracy[("zeroshot", OVERALL)]  # margins are not probabilities


def test_context_counts_count_distinct_references_and_images(scored):
    frame, _ = prepare(scored)
    counts = {r["context"]: r for r in context_counts(frame)}
    assert counts["red"] == {"context": "red", "triplets": 4, "labelled": 4, "references": 2, "images": 6}
    assert counts["blue"] == {"context": "blue", "triplets": 4, "labelled": 4, "references": 3, "images": 7}
    assert counts[OVERALL] == {"context": OVERALL, "triplets": 8, "labelled": 8, "references": 5, "images": 12}


def test_unlabelled_rows_get_counts_and_vote_agreement_but_no_accuracy(scored):
    frame, models = prepare(scored.drop("label", "correct"))
    rows = model_accuracy(frame, models)
    assert all("accuracy" not in r and "brier" not in r for r in rows)
    ens = next(r for r in rows if r["model"] == "ensemble" and r["context"] == OVERALL)
    assert ens["vote_agreement"] == pytest.approx(19 / 28)
    assert {r["context"]: r["labelled"] for r in context_counts(frame)} == {"blue": 0, "red": 0, OVERALL: 0}
