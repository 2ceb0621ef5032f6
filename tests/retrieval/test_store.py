"""The vector stores: Milvus Lite (embedded, a local file, no server) answers like exact brute force."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.embedding.distances import l2_normalize
from ctxsim.retrieval.store import ExactStore, MilvusStore, collection_name


def _data(n=300, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"{i:064x}" for i in range(n)]
    return ids, l2_normalize(rng.normal(size=(n, dim))), [f"/img/{i}.png" for i in range(n)]


def test_collection_names_are_safe_and_distinct():
    a, b = collection_name("ctxsim", "global@lite0"), collection_name("ctxsim", "global_lite0")
    assert a != b and a.replace("_", "").isalnum()


@pytest.mark.parametrize("kind", ["exact", "milvus"])
def test_store_roundtrip(tmp_path, kind):
    store = ExactStore() if kind == "exact" else MilvusStore(str(tmp_path / "m.db"))
    ids, vecs, paths = _data()
    store.create("c", vecs.shape[1])
    store.upsert("c", ids[:200], vecs[:200], paths[:200])
    store.upsert("c", ids[150:], vecs[150:], paths[150:])  # overlapping: an upsert, not a duplicate
    assert store.count("c") == 300
    assert store.existing("c", ids[290:] + [f"{999:064x}"]) == set(ids[290:])
    hits = store.search("c", vecs[[3, 7]], 5)
    exact = np.argsort(-(vecs[[3, 7]] @ vecs.T), axis=1)[:, :5]
    assert [[h[0] for h in row] for row in hits] == [[ids[j] for j in row] for row in exact]
    assert hits[0][0][1] == paths[3] and hits[0][0][2] == pytest.approx(1.0, abs=1e-5)
    store.close()


def test_milvus_lite_persists_across_opens(tmp_path):
    ids, vecs, paths = _data(50)
    store = MilvusStore(str(tmp_path / "m.db"))
    store.create("c", vecs.shape[1])
    store.upsert("c", ids, vecs, paths)
    store.close()
    again = MilvusStore(str(tmp_path / "m.db"))
    assert again.count("c") == 50 and again.existing("c", ids[:3]) == set(ids[:3])
    again.close()


def test_only_digests_reach_a_filter_expression():
    from ctxsim.retrieval.store import _quoted

    with pytest.raises(ValueError, match="not a content digest"):
        _quoted(['x" or id != "'])
