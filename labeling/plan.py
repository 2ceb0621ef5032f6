"""Plan which triplets people should judge next.

Strategies (``make_plan(..., strategy=...)``):
- ``random``: triplets drawn uniformly (reference uniform, candidates from its group).
- ``uncertain``: a random candidate pool of ``pool_factor x n`` triplets is scored by the model;
  the ``n`` whose ``p_a`` lies closest to 0.5 are kept.
- ``disagreement``: the same pool, ranked by how much the model's members disagree: first by the
  vote split (the share of members on the minority side of A vs B), then by the spread of the
  members' margins, each member's margins divided by their root mean square over the pool so
  that members on different scales count alike. Needs a model with two or more members.
- ``out-of-context``: the same pool, references that fit no context first: ascending similarity of the
  reference to its routed context's centroid (``context_similarity``; needs a trained run).
- ``abstained``: the same pool, the triplets the model would abstain on first: ascending confidence
  ``max(p_a, 1 - p_a)`` (the log says how many of them fall below the run's threshold for the default
  target accuracy).
- ``balanced``: the same number of triplets for every context, or, when labelled triplets are
  given with ``exclude``, as many as evens out the labelled counts (sparse contexts first).
  Contexts are those of the ``context`` column below (the model's routing, else the folders).

The plan's ``context`` column is the model's routed context of the reference when a model is
given and routes it anywhere but the catch-all ``all`` (a zero-shot model routes nowhere), else
the reference's top-level folder (empty for images directly in the root).
Triplet ids are derived from the image paths, so the same triplet keeps its id across plans.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.data.triplets import read_triplets, relative_to, write_triplets
from ctxsim.errors import InputError, Problem
from ctxsim.labeling.pool import (
    ROOT_GROUP,
    ImagePool,
    Triplet,
    group_of,
    list_images,
    triplet_key,
)
from ctxsim.schema import CONTEXT_SIMILARITY, DEFAULT_CONTEXT, OUT_OF_CONTEXT, PATH, margin_column

log = logging.getLogger(__name__)

STRATEGIES = ("random", "uncertain", "disagreement", "balanced", "out-of-context", "abstained")
MODEL_STRATEGIES = ("uncertain", "disagreement", "out-of-context", "abstained")
#: Strategies that need what only a trained run gives (context centroids, a selective-answer calibration).
RUN_STRATEGIES = ("out-of-context", "abstained")
#: Target accuracy whose threshold ``abstained`` reports against.
ABSTAINED_TARGET = 0.95
#: Candidate pool size, as a multiple of the plan size, for the model-ranked strategies.
DEFAULT_POOL_FACTOR = 10
DEFAULT_SEED = 0
#: Hex digits of the content hash in a triplet id (48 bits: collisions are negligible for plans).
ID_HEX_DIGITS = 12
PLAN_COLUMNS = ("ref", "a", "b", "context", "id")
#: Smallest per-member margin scale used when standardising margins (guards all-zero members).
_MIN_SPREAD = 1e-12


def triplet_id(ref: str, a: str, b: str) -> str:
    digest = hashlib.blake2b("\0".join((ref, a, b)).encode(), digest_size=ID_HEX_DIGITS // 2).hexdigest()
    return f"t{digest}"


def make_plan(
    images: str | os.PathLike,
    n: int,
    *,
    strategy: str = "random",
    comparator=None,
    pool_factor: int = DEFAULT_POOL_FACTOR,
    seed: int = DEFAULT_SEED,
    exclude: Sequence[str | os.PathLike] = (),
) -> pl.DataFrame:
    """``n`` triplets over the images under ``images`` (columns ``ref, a, b, context, id``).

    ``comparator`` is a loaded model (``ctxsim.load``); ``exclude`` names triplet CSVs (paths
    relative to ``images``) whose triplets are not planned again.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if n < 1:
        raise InputError([Problem("--n", f"expected a plan size of at least 1, got {n}")])
    if strategy in MODEL_STRATEGIES and comparator is None:
        raise InputError([Problem("--model", f"--strategy {strategy} ranks triplets with a model; pass --model")])
    if strategy == "disagreement" and len(comparator.member_names) < 2:
        members = ", ".join(comparator.member_names)
        raise InputError([Problem("--model", f"the model has one member ({members}); --strategy disagreement needs two or more "
                                  "(a trained run), or use --strategy uncertain")])
    if strategy in RUN_STRATEGIES and not hasattr(comparator, "set_target"):
        raise InputError([Problem("--model", f"--strategy {strategy} needs a trained run (context centroids and held-out "
                                  "confidences); a zero-shot backbone has neither")])
    if pool_factor < 1:
        raise InputError([Problem("--pool-factor", f"expected at least 1, got {pool_factor}")])
    root = Path(images).resolve()
    labelled = _read_exclude(exclude, root)
    pool = ImagePool(list_images(root), {triplet_key(*t) for t in labelled})
    if not pool.usable_refs(pool.images):
        raise InputError([Problem(str(root), "no folder holds three or more readable images: no triplet can be formed")])
    rng = random.Random(seed)
    log.info("planning %d %s triplets over %d images in %s", n, strategy, len(pool.images), root)

    if strategy == "random":
        chosen = pool.sample(n, rng)
    elif strategy == "balanced":
        chosen = _balanced(pool, n, rng, labelled, _image_contexts(pool, comparator, root))
    else:
        candidates = _frame(pool.sample(n * pool_factor, rng))
        scored = comparator.score(candidates, images=root, margins=True)
        if strategy == "uncertain":
            key = uncertainty(scored)
        elif strategy == "disagreement":
            key = disagreement(scored, comparator.member_names)
        elif strategy == "out-of-context":
            key = out_of_context_rank(scored)
        else:
            key = abstention_rank(scored, comparator, n)
        ranked = scored.with_columns(pl.Series("_rank", key)).sort("_rank", maintain_order=True)
        chosen = [tuple(r) for r in ranked.head(n).select("ref", "a", "b").rows()]
    if len(chosen) < n:
        log.warning("only %d new distinct triplets can be formed from these images; the plan has %d, not %d", len(chosen), len(chosen), n)
    return _with_context(_frame(chosen), comparator, root)


def uncertainty(scored: pl.DataFrame) -> np.ndarray:
    """Sort key (lower first): how far ``p_a`` lies from 0.5."""
    return np.abs(scored["p_a"].to_numpy() - 0.5)


def out_of_context_rank(scored: pl.DataFrame) -> np.ndarray:
    """Sort key (lower first): out-of-context references first, then lower similarity to the routed context."""
    flagged = scored[OUT_OF_CONTEXT].fill_null(False).to_numpy().astype(float)
    return scored[CONTEXT_SIMILARITY].to_numpy() - 10.0 * flagged  # similarities are cosines in [-1, 1]


def abstention_rank(scored: pl.DataFrame, comparator, n: int) -> np.ndarray:
    """Sort key (lower first): confidence; logs how many of the ``n`` lowest the run would abstain on."""
    conf = np.maximum(scored["p_a"].to_numpy(), 1 - scored["p_a"].to_numpy())
    selection = comparator.with_options(target_accuracy=ABSTAINED_TARGET).selection if comparator.calibration is not None else None
    if selection is not None:
        below = int((np.sort(conf)[:n] < selection.threshold).sum())
        log.info("abstained: %d of the %d least confident triplets fall below the threshold for accuracy %.2f", below,
                 min(n, len(conf)), ABSTAINED_TARGET)
    return conf


def disagreement(scored: pl.DataFrame, members: Sequence[str]) -> np.ndarray:
    """Sort key (lower first): larger vote split first, then larger spread of standardised margins."""
    m = scored.select(margin_column(k) for k in members).to_numpy().astype(np.float64)
    scale = np.sqrt((m**2).mean(axis=0))  # root mean square: does not depend on which side A is on
    spread = (m / np.maximum(scale, _MIN_SPREAD)).std(axis=1)
    order = np.lexsort((-spread, -disagreement_split(m)))  # the last key is the primary one
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def disagreement_split(margins: np.ndarray) -> np.ndarray:
    """Per row, the share of members on the minority side (0: all agree, 0.5: an even split)."""
    for_a = (margins > 0).sum(axis=1)
    return np.minimum(for_a, margins.shape[1] - for_a) / margins.shape[1]


def balanced_quotas(capacity: Mapping[str, int], n: int, existing: Mapping[str, int] | None = None) -> dict[str, int]:
    """Split ``n`` over contexts so that ``existing + quota`` is as even as possible, within each
    context's ``capacity`` (water-filling: each triplet goes to the currently sparsest context)."""
    existing = existing or {}
    quota = dict.fromkeys(capacity, 0)
    heap = [(existing.get(c, 0), c) for c, cap in capacity.items() if cap > 0]
    heapq.heapify(heap)
    for _ in range(n):
        if not heap:
            break
        count, c = heapq.heappop(heap)
        quota[c] += 1
        if quota[c] < capacity[c]:
            heapq.heappush(heap, (count + 1, c))
    return quota


def _balanced(pool: ImagePool, n: int, rng: random.Random, labelled: list[Triplet], contexts: dict[str, str]) -> list[Triplet]:
    refs_by_context: dict[str, list[str]] = {}
    for image, c in contexts.items():
        refs_by_context.setdefault(c, []).append(image)
    excluded = Counter(contexts[k[0]] for k in pool.exclude if k[0] in contexts)
    capacity = {c: pool.capacity(refs) - excluded[c] for c, refs in sorted(refs_by_context.items())}
    existing = Counter(contexts[ref] for ref, _, _ in labelled if ref in contexts)
    quotas = balanced_quotas(capacity, n, existing)
    log.info("balanced quotas: %s", ", ".join(f"{c or '(root)'}={q} (+{existing[c]} labelled)" for c, q in quotas.items()))
    taken: set = set()
    chosen = []
    for c, q in quotas.items():
        chosen += pool.sample(q, rng, refs_by_context[c], taken)
    rng.shuffle(chosen)  # serve contexts interleaved, not one block after another
    return chosen


def _image_contexts(pool: ImagePool, comparator, root: Path) -> dict[str, str]:
    """Each usable reference image's context: the model's routing of it, else its folder group."""
    refs = pool.usable_refs(pool.images)
    if comparator is None:
        return {r: group_of(r) for r in refs}
    probes = _frame([(r, *pool.candidates(r)[:2]) for r in refs])
    routed = comparator.score(probes, images=root)["context"].to_list()
    return {r: _context_name(r, c) for r, c in zip(refs, routed)}


def _context_name(ref: str, routed: str | None) -> str:
    """The routed context, or the reference's folder group where the model has none to offer."""

    return group_of(ref) if routed is None or routed == DEFAULT_CONTEXT else routed


def _with_context(df: pl.DataFrame, comparator, root: Path) -> pl.DataFrame:
    routed = comparator.score(df, images=root)["context"].to_list() if comparator is not None and df.height else [None] * df.height
    context = [_context_name(ref, c) for ref, c in zip(df["ref"].to_list(), routed)]
    ids = [triplet_id(*t) for t in df.select("ref", "a", "b").rows()]
    return df.with_columns(
        pl.Series("context", [c if c != ROOT_GROUP else None for c in context], dtype=pl.String),
        pl.Series("id", ids, dtype=pl.String),
    ).select(PLAN_COLUMNS)


def _frame(triplets: list[Triplet]) -> pl.DataFrame:
    return pl.DataFrame(triplets, schema={"ref": pl.String, "a": pl.String, "b": pl.String}, orient="row")


def _read_exclude(csvs: Sequence[str | os.PathLike], root: Path) -> list[Triplet]:
    """Triplets of already labelled CSVs, as root-relative paths."""
    if not csvs:
        return []

    df = read_triplets(list(csvs), root, check_images=False)
    rel = df.select(relative_to(pl.col(PATH[c]), root).alias(c) for c in ("ref", "a", "b"))
    return [tuple(r) for r in rel.rows()]


def write_plan(df: pl.DataFrame, out: str | os.PathLike) -> None:
    write_triplets(df, out)
    log.info("wrote %d triplets to %s", df.height, out)
