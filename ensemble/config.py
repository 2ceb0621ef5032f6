"""Settings of the ensemble (torch-free: ``ctxsim.config`` imports it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EnsembleConfig:
    stacker: str = "lightgbm"  # "lightgbm" or "logistic"
    monotone: bool = True  # LightGBM: P(A) never falls as a member's margin for A grows
    folds: int = 5  # image-grouped folds for out-of-fold margins and for choosing the combiner
    select: str = "auto"  # "auto": best by image-grouped validation; or a combiner name to force
