"""Stacking features: every member's margin, each margin weighted by the reference's membership of
each context, the membership itself, and each member's validation accuracy where that reference lives
(membership-weighted), so the stacker learns how far to trust each member where. The weighted margins
let a linear stacker trust a member in one context and not in another (a tree could split on
membership, a linear model cannot)."""
from __future__ import annotations

import numpy as np

from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.regime import SEEN_NAMES
from ctxsim.schema import margin_column


def n_signed(n_members: int, n_contexts: int) -> int:
    """How many leading feature columns are margins (plain and weighted): they change sign when A and B swap."""
    return n_members * (1 + n_contexts)


def stacking_features(x: EnsembleInputs, val_accuracy: np.ndarray, regime: bool = False) -> np.ndarray:
    """(n, M(1 + K) + K + M): margins, margins x membership, membership, expected member accuracy.
    ``val_accuracy`` is (M, K). ``regime``: three more columns, ``seen_ref, seen_a, seen_b``
    (:mod:`ctxsim.ensemble.regime`; all zero when ``x.seen`` is None: every image new)."""
    weighted = (x.margins[:, :, None] * x.membership[:, None, :]).reshape(len(x), -1)  # member-major
    expected = x.membership @ np.nan_to_num(val_accuracy, nan=0.5).T
    parts = [x.margins, weighted, x.membership, expected]
    if regime:
        parts.append(np.zeros((len(x), len(SEEN_NAMES))) if x.seen is None else x.seen)
    return np.hstack(parts).astype(np.float32)


def swap_pairs(n_features: int, regime: bool) -> tuple[tuple[int, int], ...]:
    """Columns that exchange under an A/B swap: ``seen_a`` and ``seen_b``, the last two with ``regime``."""
    return ((n_features - 2, n_features - 1),) if regime else ()


def feature_names(member_names: list[str], context_names: list[str], regime: bool = False) -> list[str]:
    return ([margin_column(m) for m in member_names] + [f"margin_{m}@{c}" for m in member_names for c in context_names]
            + [f"member_{c}" for c in context_names] + [f"acc_{m}" for m in member_names]
            + (list(SEEN_NAMES) if regime else []))


#: Group label of the membership features of context ``c`` in explanations (members keep their own names).
MEMBERSHIP_GROUP = "membership:{}"


#: Group label of the seen-in-training features (``regime``) in explanations.
REGIME_GROUP = "regime"


def feature_groups(member_names: list[str], context_names: list[str], regime: bool = False) -> list[str]:
    """What each of :func:`feature_names` belongs to, in the same order: a member's margins (plain and
    weighted) and its expected accuracy go to the member, a context's membership to ``membership:<context>``,
    the seen-in-training flags to ``regime``."""
    return (list(member_names) + [m for m in member_names for _ in context_names]
            + [MEMBERSHIP_GROUP.format(c) for c in context_names] + list(member_names)
            + ([REGIME_GROUP] * len(SEEN_NAMES) if regime else []))


def group_of_feature(feature: str, context_names) -> str:
    """The group of one name of :func:`feature_names`, given the context names (read back from a scored CSV's
    ``contrib_<feature>`` columns, whose contexts are those of the ``member_<context>`` features)."""
    if feature.startswith("member_") and feature.removeprefix("member_") in context_names:
        return MEMBERSHIP_GROUP.format(feature.removeprefix("member_"))
    if feature.startswith("acc_"):
        return feature.removeprefix("acc_")
    if feature in SEEN_NAMES:
        return REGIME_GROUP
    member = feature.removeprefix(margin_column(""))
    for c in sorted(context_names, key=len, reverse=True):
        if member.endswith(f"@{c}"):
            return member[: -len(c) - 1]
    return member
