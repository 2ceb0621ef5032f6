"""What ``train`` stores for trust: the held-out confidences behind selective answers, the thresholds of the
common targets, and each context's out-of-context floor."""
from __future__ import annotations

import numpy as np

from ctxsim.contexts.membership import FLOOR_PERCENTILE, Contexts
from ctxsim.ensemble.selective import Selection, SelectiveCalibration, regime_of
from ctxsim.schema import COMMON_TARGETS, DEFAULT_DELTA


def selective_calibration(p_a: np.ndarray, y: np.ndarray, weight: np.ndarray, ref: np.ndarray,
                          seen: np.ndarray) -> tuple[SelectiveCalibration, list[Selection]]:
    """From the chosen combiner's out-of-fold (image-grouped) predictions: the calibration data and the
    selection of every common target at the default delta. ``y`` is +1 where A is closer; rows of one
    reference ``ref`` are counted as correlated (they are right or wrong together); ``seen`` (which of
    each row's images the copy that scored it trained on) puts each row in its regime."""
    calibration = SelectiveCalibration.from_predictions(p_a, y > 0, weight, groups=ref, regimes=regime_of(seen))
    return calibration, [calibration.select(t, DEFAULT_DELTA) for t in COMMON_TARGETS]


def fit_context_floors(contexts: Contexts, zeroshot: np.ndarray, ref_idx: np.ndarray, membership: np.ndarray) -> None:
    """Each context's floor from its training references (one row per unique reference image)."""
    _, first = np.unique(ref_idx, return_index=True)
    contexts.fit_floors(zeroshot[ref_idx[first]], membership[first])


def trust_metrics(selections: list[Selection], contexts: Contexts) -> dict:
    return {
        "selective": {"validation": "out-of-fold predictions of the chosen combiner (image-grouped)",
                      "targets": [s.as_dict() for s in selections]},
        "out_of_context": {"percentile": FLOOR_PERCENTILE,
                           "floors": {c: (None if np.isnan(f) else float(f)) for c, f in zip(contexts.names, contexts.floors)}},
    }
