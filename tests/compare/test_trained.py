"""A run folder as a comparator: contexts route references, members score, the ensemble combines.

The run folder is put together here from its parts (contexts, head members, a fitted ensemble) on the
tiny ``test_tiny`` backbone, so these tests do not depend on the training driver."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from ctxsim.compare.model_uri import load_comparator
from ctxsim.compare.trained import RunComparator
from ctxsim.contexts.membership import declared_contexts
from ctxsim.embedding.cache import EmbeddingCache
from ctxsim.embedding.distances import margins
from ctxsim.ensemble.config import EnsembleConfig
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.selection import Ensemble
from ctxsim.errors import InputError
from ctxsim.members.heads import ResidualHead
from ctxsim.members.inference import MemberSet, MemberSpec, save_members
from ctxsim.members.member import head_state
from ctxsim.run_folder import RunFolder, RunManifest
from ctxsim.schema import GLOBAL, ZEROSHOT
from tests.synthetic import triplet_rows, write_images

MEMBERS = [ZEROSHOT, GLOBAL, "context-blue", "context-red"]
COMBINERS = ["stacker", "majority_vote", "pca_credibility", "mlp_weighted", "best_member", "global", "zeroshot"]


def perturbed_head(dim: int, seed: int) -> ResidualHead:
    torch.manual_seed(seed)
    head = ResidualHead(dim, 16)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return head


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    images = write_images(root, per_group=8)
    rows = triplet_rows(images, pairs_per_ref=10, seed=0)
    df = pl.DataFrame(rows, schema=["ref", "a", "b", "label", "context"], orient="row")
    df.write_csv(root / "train.csv")
    paths = sorted({p for g in images.values() for p in g})
    index = {p: i for i, p in enumerate(paths)}
    ref, a, b = (np.array([index[p] for p in df[c]]) for c in ("ref", "a", "b"))

    run = root / "run"
    specs = [MemberSpec(ZEROSHOT, "zeroshot")] + [MemberSpec(n, "head", None if n == GLOBAL else n[8:], hidden=16) for n in MEMBERS[1:]]
    folder = RunFolder(run)
    weights = {n: head_state(perturbed_head(256, k)) for k, n in enumerate(MEMBERS[1:])}
    save_members(folder.members_dir, specs, weights)
    emb = MemberSet(folder.members_dir, "test_tiny").embed([str(root / p) for p in paths], EmbeddingCache(), progress=False)

    refs = np.unique(ref)
    contexts = declared_contexts(emb[ZEROSHOT][refs], [p.split("/")[1].rstrip("0123456789.png") for p in np.array(paths)[refs]])
    membership = contexts.membership(emb[ZEROSHOT][ref], df["context"].to_list())
    x = EnsembleInputs(np.column_stack([margins(emb[m], ref, a, b) for m in MEMBERS]), membership, MEMBERS, emb[ZEROSHOT][ref], ref)
    y = (df["label"] == "A").to_numpy().astype(int)
    acc = np.full((len(MEMBERS), 2), 0.7)
    ensemble, _ = Ensemble.fit(x, y, np.ones(len(y)), ref % 3, acc, contexts.names, EnsembleConfig(folds=3))
    folder.save_model(contexts, specs, weights, ensemble, RunManifest(backbone="test_tiny", members=MEMBERS, contexts=contexts.names))
    return root, run, emb, paths


@pytest.fixture
def comparator(run_dir):
    return RunComparator(run_dir[1], baselines=True, cache=EmbeddingCache(), progress=False)


def test_loads_a_run_folder(run_dir, comparator):
    _, run, _, _ = run_dir
    assert comparator.member_names == MEMBERS and comparator.contexts.names == ["blue", "red"]
    assert comparator.extra_columns == [f"p_a_{c}" for c in COMBINERS] + ["context_similarity", "out_of_context"]
    assert isinstance(load_comparator(str(run), progress=False), RunComparator)
    assert RunComparator(run, progress=False).extra_columns == ["context_similarity", "out_of_context"]


def test_not_a_run_folder(tmp_path):
    with pytest.raises(InputError, match="not a ctxsim run folder"):
        RunComparator(tmp_path)


def test_score_is_symmetric_under_an_a_b_swap(run_dir, comparator):
    root = run_dir[0]
    df = pl.read_csv(root / "train.csv").drop("context")
    p = comparator.score(df, images=root, margins=True)
    q = comparator.score(df.rename({"a": "b", "b": "a"}), images=root, margins=True)
    np.testing.assert_allclose(q["p_a"].to_numpy(), 1 - p["p_a"].to_numpy(), rtol=0, atol=1e-12)
    for c in COMBINERS:
        np.testing.assert_allclose(q[f"p_a_{c}"].to_numpy(), 1 - p[f"p_a_{c}"].to_numpy(), rtol=0, atol=1e-12, err_msg=c)
    for m in MEMBERS:
        np.testing.assert_allclose(q[f"margin_{m}"].to_numpy(), -p[f"margin_{m}"].to_numpy(), atol=1e-6)
    assert (q["pred"] != p["pred"]).sum() >= (p["p_a"] != 0.5).sum()
    # the members are distinct models, so the ensemble has something to combine
    assert (p["margin_global"] - p["margin_zeroshot"]).abs().max() > 1e-3


def test_contexts_are_routed_and_declared_ones_win(run_dir, comparator):
    root = run_dir[0]
    df = pl.DataFrame({"ref": ["images/red0.png", "images/blue0.png", "images/red1.png", "images/red2.png"],
                       "a": ["images/red3.png", "images/blue3.png", "images/red4.png", "images/red5.png"],
                       "b": ["images/red6.png", "images/blue6.png", "images/red7.png", "images/red6.png"]})
    routed = comparator.score(df, images=root)
    assert routed["context"].to_list() == ["red", "blue", "red", "red"]
    declared = comparator.score(df.with_columns(pl.Series("context", ["blue", None, "green", "red"])), images=root)
    # a known declared context wins; a missing or unknown one is routed
    assert declared["context"].to_list() == ["blue", "blue", "red", "red"]
    np.testing.assert_array_equal(declared["p_a"].to_numpy()[1:], comparator.score(df, images=root)["p_a"].to_numpy()[1:])


def test_compare_and_embed(run_dir, comparator):
    root, run, emb, paths = run_dir
    # a fresh comparator embeds images it has never seen
    fresh = RunComparator(run, cache=EmbeddingCache(), progress=False)
    np.testing.assert_allclose(fresh.embed([root / paths[5]], member=GLOBAL), emb[GLOBAL][[5]], rtol=1e-5, atol=1e-6)
    row = pl.DataFrame({"ref": ["images/red0.png"], "a": ["images/red3.png"], "b": ["images/red6.png"]})
    p = comparator.compare(root / "images/red0.png", root / "images/red3.png", root / "images/red6.png")
    assert p == pytest.approx(comparator.score(row, images=root)["p_a"][0], abs=1e-12)
    for member in MEMBERS:
        got = comparator.embed([root / paths[0], root / paths[3]], member=member)
        np.testing.assert_allclose(got, emb[member][[0, 3]], rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="unknown member 'nope'"):
        comparator.embed([root / paths[0]], member="nope")
