"""Rankings from pairwise preferences: ``pref[i, j]`` = P(candidate i is closer to the query than j).

Borda (soft): the mean preference of i over every other candidate, its expected share of wins.
Copeland: wins minus losses (a preference over 0.5 is a win), ties broken by the Borda score.
"""
from __future__ import annotations

import numpy as np

RANKINGS = ("borda", "copeland")
DEFAULT_RANKING = "borda"


def symmetric_preferences(p_ij: np.ndarray) -> np.ndarray:
    """Average the two orders of each pair: ``(p(i, j) + 1 - p(j, i)) / 2`` (a model need not be exactly
    antisymmetric in A and B); the diagonal is 0."""
    pref = (p_ij + (1.0 - p_ij.T)) / 2.0
    np.fill_diagonal(pref, 0.0)
    return pref


def borda(pref: np.ndarray) -> np.ndarray:
    n = pref.shape[0]
    return pref.sum(axis=1) / max(n - 1, 1)


def copeland(pref: np.ndarray) -> np.ndarray:
    off = ~np.eye(pref.shape[0], dtype=bool)
    return ((pref > 0.5) & off).sum(axis=1) - ((pref < 0.5) & off).sum(axis=1)


def rank_order(pref: np.ndarray, method: str = DEFAULT_RANKING, tiebreak: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(order of candidates, best first; their scores) by ``method``; ties go to ``tiebreak`` (higher first)."""
    if method not in RANKINGS:
        raise ValueError(f"unknown ranking {method!r}; one of {', '.join(RANKINGS)}")
    soft = borda(pref)
    score = soft if method == "borda" else copeland(pref).astype(np.float64)
    keys = [np.zeros(len(score)) if tiebreak is None else -np.asarray(tiebreak, float), -soft, -score]
    order = np.lexsort(keys)  # last key is primary
    return order, score[order]
