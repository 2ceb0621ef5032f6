"""Contexts: declared centroids, discovered clusters (K by silhouette / BIC, small clusters merged),
soft membership, routing of unseen embeddings, and the save/load round trip."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.contexts.config import ContextConfig
from ctxsim.contexts.membership import Contexts, declared_contexts, discover_contexts, fit_contexts

DIM = 8


def blobs(n_per: list[int], spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clearly separated blobs around the first ``len(n_per)`` basis vectors (unit-norm centres)."""
    rng = np.random.default_rng(seed)
    emb, labels = [], []
    for k, n in enumerate(n_per):
        centre = np.eye(DIM)[k]
        emb.append(centre + spread * rng.normal(size=(n, DIM)))
        labels += [k] * n
    return np.vstack(emb).astype(np.float32), np.asarray(labels)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two labellings split the items the same way (up to renaming the labels)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# -- declared ---------------------------------------------------------------------------------------------
def test_declared_centroids_are_the_mean_of_normalised_references():
    emb = np.array([[3.0, 0.0], [0.0, 2.0], [0.0, 5.0], [1.0, 1.0]], dtype=np.float32)
    names = ["shoes", "metal", "metal", "shoes"]
    ctx = declared_contexts(emb, names)
    assert ctx.names == ["metal", "shoes"] and ctx.kind == "declared" and len(ctx) == 2
    # metal: mean of (0,1) and (0,1) -> (0,1); shoes: mean of (1,0) and (.707,.707), renormalised
    np.testing.assert_allclose(ctx.centroids[0], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(ctx.centroids[1], unit([1 + 2**-0.5, 2**-0.5]), atol=1e-6)


def test_membership_is_a_softmax_of_scaled_cosines():
    ctx = Contexts(["x", "y"], np.array([[1.0, 0.0], [0.0, 1.0]]), "declared", temperature=2.0)
    emb = np.array([[0.6, 0.8], [5.0, 0.0]])
    m = ctx.membership(emb)
    # row 0: cosines 0.6 and 0.8 -> softmax(1.2, 1.6); row 1: cosines 1 and 0 -> softmax(2, 0)
    e = np.exp([[1.2, 1.6], [2.0, 0.0]])
    np.testing.assert_allclose(m, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)


def test_declared_name_gives_one_hot_membership_unknown_names_stay_soft():
    ctx = Contexts(["x", "y"], np.array([[1.0, 0.0], [0.0, 1.0]]), "declared")
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    m = ctx.membership(emb, declared=["y", "nope", None])
    np.testing.assert_array_equal(m[0], [0.0, 1.0])  # declared "y" wins over the embedding
    assert m[1, 0] > 0.99 and m[2, 0] > 0.99  # unknown / missing names: routed by the embedding
    assert list(ctx.assign(emb, declared=["y", "nope", None])) == ["y", "x", "x"]


def test_fit_contexts_declared_and_auto():
    emb, labels = blobs([10, 10])
    names = np.where(labels == 0, "a", "b")
    cfg = ContextConfig(mode="auto")
    assert fit_contexts(emb, names, np.ones(20), cfg).kind == "declared"
    assert fit_contexts(emb, None, np.full(20, 100), ContextConfig(mode="auto", min_triplets=1)).kind == "discovered"
    assert fit_contexts(emb, names, np.full(20, 100), ContextConfig(mode="discovered", min_triplets=1)).kind == "discovered"
    with pytest.raises(ValueError, match="context column"):
        fit_contexts(emb, None, np.ones(20), ContextConfig(mode="declared"))


# -- discovered -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k_true", [2, 3, 4])
def test_discovered_k_is_chosen_by_silhouette_on_separated_blobs(k_true):
    emb, labels = blobs([15] * k_true, seed=k_true)
    ctx = discover_contexts(emb, np.full(len(emb), 50), ContextConfig(k_min=2, k_max=6, min_triplets=1))
    assert ctx.kind == "discovered" and len(ctx) == k_true
    assert ctx.names == [f"c{j}" for j in range(k_true)]
    assert same_partition(ctx.assign(emb), labels)
    # each centroid sits on one blob centre
    np.testing.assert_allclose(np.sort(np.abs(ctx.centroids[:, :k_true]).max(axis=1)), 1.0, atol=0.02)


def test_discovered_gmm_finds_the_blobs():
    emb, labels = blobs([20, 20, 20], spread=0.03, seed=5)
    ctx = discover_contexts(emb, np.full(len(emb), 50), ContextConfig(method="gmm", k_min=2, k_max=4, min_triplets=1))
    assert len(ctx) == 3 and same_partition(ctx.assign(emb), labels)


def test_given_k_is_used():
    emb, _ = blobs([15, 15, 15])
    assert len(discover_contexts(emb, np.full(45, 50), ContextConfig(k=2, min_triplets=1))) == 2


def test_small_clusters_are_merged_into_their_nearest_neighbour():
    # blob 2 lies between 0 and 1 but much closer to 0; its references have few triplets
    rng = np.random.default_rng(1)
    c0, c1, c2 = np.eye(DIM)[0], np.eye(DIM)[1], unit(np.eye(DIM)[0] + 0.5 * np.eye(DIM)[2])
    emb = np.vstack([c + 0.02 * rng.normal(size=(10, DIM)) for c in (c0, c1, c2)]).astype(np.float32)
    counts = np.r_[np.full(10, 30), np.full(10, 30), np.full(10, 1)]  # blob 2: 10 triplets in all
    ctx = discover_contexts(emb, counts, ContextConfig(k=3, min_triplets=100))
    assert len(ctx) == 2
    routed = ctx.assign(emb)
    assert len(set(routed[:10])) == 1 and len(set(routed[10:20])) == 1 and routed[0] != routed[10]
    assert set(routed[20:]) == {routed[0]}  # merged into blob 0, its nearest neighbour
    # with enough triplets everywhere, nothing is merged
    assert len(discover_contexts(emb, np.full(30, 30), ContextConfig(k=3, min_triplets=100))) == 3
    # too few triplets in all: everything ends in one context
    assert len(discover_contexts(emb, np.ones(30), ContextConfig(k=3, min_triplets=1000))) == 1


def test_too_few_references_give_one_context():
    ctx = discover_contexts(np.eye(DIM)[:2].astype(np.float32), np.array([500, 500]), ContextConfig(min_triplets=1))
    assert len(ctx) == 1 and list(ctx.assign(np.eye(DIM)[:3])) == ["c0"] * 3


def test_assign_routes_unseen_embeddings_to_the_right_blob():
    emb, labels = blobs([15, 15, 15])
    ctx = discover_contexts(emb, np.full(45, 50), ContextConfig(min_triplets=1))
    fresh, fresh_labels = blobs([5, 5, 5], seed=99)  # new points drawn around the same centres
    name_of_blob = {k: ctx.assign(emb[labels == k][:1])[0] for k in range(3)}
    assert list(ctx.assign(fresh)) == [name_of_blob[k] for k in fresh_labels]
    m = ctx.membership(fresh)
    assert m.shape == (15, 3) and (m.max(axis=1) > 0.9).all()


def test_save_load_round_trip(tmp_path):
    emb, _ = blobs([15, 15, 15])
    ctx = discover_contexts(emb, np.full(45, 50), ContextConfig(min_triplets=1, temperature=7.5))
    ctx.save(tmp_path)
    back = Contexts.load(tmp_path)
    assert back.names == ctx.names and back.kind == ctx.kind and back.temperature == 7.5
    np.testing.assert_array_equal(back.centroids, ctx.centroids)
    probe, _ = blobs([4, 4, 4], seed=3)
    np.testing.assert_array_equal(back.membership(probe), ctx.membership(probe))
    np.testing.assert_array_equal(back.assign(probe), ctx.assign(probe))


def test_out_of_context_floors_flag_an_image_far_from_every_training_reference(tmp_path):
    rng = np.random.default_rng(0)
    # two contexts along the first two axes; training references scattered close to them
    centroids = np.eye(4)[:2]
    refs = np.vstack([centroids[k] + 0.1 * rng.normal(size=(50, 4)) for k in (0, 1)])
    contexts = Contexts(["x", "y"], centroids, "declared").fit_floors(refs)
    routed, sim = contexts.similarity(refs)
    np.testing.assert_array_equal(routed, np.repeat([0, 1], 50))
    for k in (0, 1):  # the floor is the 1st percentile of the context's own references
        assert contexts.floors[k] == pytest.approx(np.percentile(sim[routed == k], 1.0))
    assert contexts.out_of_context(routed, sim).sum() == 2  # one reference per context lies below its 1st percentile
    far = np.array([[0.0, 0.0, 1.0, 0.0], [0.7, 0.7, 0.1, 0.0]])  # along an axis no reference uses; between both
    routed_far, sim_far = contexts.similarity(far)
    assert sim_far[0] == pytest.approx(0.0, abs=1e-6)
    assert contexts.out_of_context(routed_far, sim_far).tolist() == [True, True]
    contexts.save(tmp_path)
    again = Contexts.load(tmp_path)
    np.testing.assert_allclose(again.floors, contexts.floors)


def test_contexts_saved_without_floors_flag_nothing(tmp_path):
    Contexts(["x"], np.eye(3)[:1], "discovered").save(tmp_path)
    loaded = Contexts.load(tmp_path)
    assert loaded.floors is None and loaded.out_of_context(np.zeros(1, int), np.zeros(1)) is None
