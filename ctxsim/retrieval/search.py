"""Top-k retrieval in context: route the query to its context, retrieve candidates from the index with
that context's member(s) and the global member(s) (union), and re-rank the best ``rerank`` of them with
the ensemble itself: P(ci closer than cj) for every ordered pair, scored as triplets (R, ci, cj) by the
comparator, aggregated into a ranking (Borda or Copeland).

The comparator is used through its public methods only (``embed``, ``score``, ``assign`` when it routes,
``fingerprint``, ``member_names``, and ``members.specs`` of a trained run), so this layer sits below
``compare``; ``Comparator.search`` is a thin call into :func:`search`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.data.images import file_digest, load_image
from ctxsim.errors import InputError, Problem
from ctxsim.retrieval.index import CatalogueIndex
from ctxsim.retrieval.ranking import DEFAULT_RANKING, rank_order, symmetric_preferences
from ctxsim.schema import DEFAULT_CONTEXT, TRAINED_KINDS, ZEROSHOT

DEFAULT_K = 20
#: Retrieved candidates re-ranked by the ensemble (pairwise: rerank x (rerank - 1) triplets scored).
DEFAULT_RERANK = 50
RESULT_COLUMNS = ["rank", "path", "score", "similarity", "context", "members"]


def retrieval_members(comparator, context: str) -> list[str]:
    """The members that retrieve for a query routed to ``context``: the members trained on that context
    and those trained on every context (the global member, in each view); a model with no trained members
    (zero-shot) retrieves with what it has."""
    names = list(comparator.member_names)
    specs = getattr(getattr(comparator, "members", None), "specs", None) or []
    own = [s.name for s in specs if getattr(s, "context", None) == context]
    shared = [s.name for s in specs if getattr(s, "context", None) is None and getattr(s, "kind", None) in TRAINED_KINDS]
    chosen = [n for n in dict.fromkeys(own + shared) if n in names]
    return chosen or ([ZEROSHOT] if ZEROSHOT in names else names[:1])


def route(comparator, query: str) -> str:
    assign = getattr(comparator, "assign", None)
    return assign([query])[0] if assign is not None else DEFAULT_CONTEXT


def open_index(index) -> CatalogueIndex:
    if index is None:
        raise InputError([Problem("--index", "no index given; build one with `ctxsim index build`")])
    return index if isinstance(index, CatalogueIndex) else CatalogueIndex.open(index)


def search(comparator, query: str | os.PathLike, k: int = DEFAULT_K, index=None, *, rerank: int = DEFAULT_RERANK,
           ranking: str = DEFAULT_RANKING) -> pl.DataFrame:
    """The ``k`` catalogue images closest to ``query`` in its context, best first: rank, path, score (the
    ranking's score: Borda's mean pairwise preference, or Copeland's wins - losses), similarity (best
    cosine similarity of the retrieving members), context (the query's), members (that retrieved it).
    ``rerank=0`` ranks by retrieval similarity alone."""
    opened = open_index(index)
    try:
        opened.check_model(comparator)
        q = Path(query).resolve().as_posix()
        load_image(q)  # a missing or unreadable query is an ImageError naming the file
        context = route(comparator, q)
        members = [m for m in retrieval_members(comparator, context) if m in opened.members]
        if not members:
            raise InputError([Problem(str(opened.folder), "the index holds no member of this model; build it again")])
        own = file_digest(q)
        want = max(k, rerank)
        hits: dict[str, dict] = {}
        for m in members:
            for digest, path, sim in opened.search(m, comparator.embed([q], member=m), want + 1)[0]:
                if digest == own:  # the query itself, when it is in the catalogue
                    continue
                hit = hits.setdefault(digest, {"path": path, "similarity": sim, "members": []})
                hit["similarity"] = max(hit["similarity"], sim)
                hit["members"].append(m)
    finally:
        if opened is not index:
            opened.close()
    ordered = sorted(hits.values(), key=lambda h: (-h["similarity"], h["path"]))
    pool = ordered[: max(rerank, 0)] if rerank > 1 else []
    rest = ordered[len(pool):]
    rows = []
    if pool:
        pref = pairwise_preferences(comparator, q, [h["path"] for h in pool])
        order, score = rank_order(pref, ranking, tiebreak=np.array([h["similarity"] for h in pool]))
        rows += [(pool[i], float(s)) for i, s in zip(order, score)]
    rows += [(h, None) for h in rest]
    rows = rows[:k]
    return pl.DataFrame({
        "rank": list(range(1, len(rows) + 1)),
        "path": [h["path"] for h, _ in rows],
        "score": [s for _, s in rows],
        "similarity": [h["similarity"] for h, _ in rows],
        "context": [context] * len(rows),
        "members": [",".join(h["members"]) for h, _ in rows],
    }, schema={"rank": pl.Int64, "path": pl.String, "score": pl.Float64, "similarity": pl.Float64,
               "context": pl.String, "members": pl.String})


def pairwise_preferences(comparator, query: str, candidates: list[str]) -> np.ndarray:
    """``pref[i, j]``: P(candidate i closer to ``query`` than j) from the comparator's ensemble, both
    orders of every pair scored as triplets and averaged."""
    n = len(candidates)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    frame = pl.DataFrame({"ref": [query] * len(i), "a": [candidates[x] for x in i], "b": [candidates[x] for x in j]})
    p = np.zeros((n, n))
    p[i, j] = comparator.score(frame)["p_a"].to_numpy()
    return symmetric_preferences(p)
