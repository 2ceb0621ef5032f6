"""Settings of context fitting (torch-free: ``ctxsim.config`` imports it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ContextConfig:
    mode: str = "auto"  # "declared", "discovered", or "auto": declared when the CSVs have a context column
    k: int | None = None  # number of discovered contexts; None: chosen over [k_min, k_max]
    k_min: int = 2
    k_max: int = 6
    method: str = "kmeans"  # "kmeans" (K by silhouette) or "gmm" (K by BIC)
    min_triplets: int = 200  # a context with fewer training triplets is merged into its nearest neighbour
    temperature: float = 20.0  # softmax sharpness of membership over cosine similarities to centroids
    seed: int = 0
