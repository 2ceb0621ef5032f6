"""Members at compare time without torch: numpy heads equal the torch heads; backbones are built lazily."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxsim.embedding.cache import EmbeddingCache
from ctxsim.errors import InputError
from ctxsim.members.heads import ResidualHead, StackedHeads
from ctxsim.members.inference import (
    HeadStack,
    LazyBackbone,
    MemberSet,
    MemberSpec,
    save_members,
)
from ctxsim.members.member import head_state
from ctxsim.schema import HEAD_KIND, ZEROSHOT_KIND


def trained_heads(dim=16, hidden=8, k=3):
    torch.manual_seed(0)
    heads = [ResidualHead(dim, hidden) for _ in range(k)]
    for head in heads:  # a fresh head is the identity: move its weights so the test means something
        torch.nn.init.normal_(head.fc2.weight, std=0.3)
        torch.nn.init.normal_(head.fc2.bias, std=0.1)
    return heads


@pytest.mark.parametrize("n", [5, 3000])  # element-wise math.erf, and scipy's erf past _SMALL_ERF values
def test_numpy_heads_compute_what_the_torch_heads_compute(n):
    heads = trained_heads()
    x = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
    with torch.inference_mode():
        expected = StackedHeads(heads)(torch.as_tensor(x)).numpy()
    got = HeadStack([head_state(h) for h in heads])(x)
    assert got.shape == expected.shape == (3, n, 16)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)


def test_a_backbone_is_built_on_first_use_and_checked_against_its_key():
    lazy = LazyBackbone("v", "test_tiny@random-seed0", "ctxsim.members.backbones:create_backbone", "test_tiny")
    assert lazy.cache_key == "test_tiny@random-seed0" and not lazy.is_built  # the key alone builds nothing
    assert lazy.feature_dim > 0 and lazy.is_built
    wrong = LazyBackbone("v", "test_tiny@other-weights", "ctxsim.members.backbones:create_backbone", "test_tiny")
    with pytest.raises(InputError, match="trained on"):
        wrong.preprocess  # noqa: B018


def test_member_set_embeds_cached_images_without_building_a_backbone(tmp_path, make_images):
    from ctxsim.members.backbones import create_backbone

    key = create_backbone("test_tiny", pretrained=False).cache_key
    heads = trained_heads(dim=create_backbone("test_tiny", pretrained=False).feature_dim)
    specs = [MemberSpec(ZEROSHOT_KIND, ZEROSHOT_KIND, features_key=key),
             MemberSpec("global", HEAD_KIND, hidden=8, features_key=key)]
    save_members(tmp_path / "members", specs, {"global": head_state(heads[0])})
    paths = [str(p) for p in make_images(4)]
    cache = EmbeddingCache()
    cold = MemberSet(tmp_path / "members", "test_tiny", pretrained=False)
    first = cold.embed(paths, cache, progress=False)
    assert next(iter(cold.views.values())).backbone.is_built  # nothing was cached: it had to embed
    warm = MemberSet(tmp_path / "members", "test_tiny", pretrained=False)
    again = warm.embed(paths, cache, progress=False)
    assert not next(iter(warm.views.values())).backbone.is_built
    for name in ("zeroshot", "global"):
        np.testing.assert_array_equal(again[name], first[name])
    assert not np.allclose(first["global"], first["zeroshot"])


def test_heads_of_inconsistent_or_wrong_shapes_are_refused():
    states = [head_state(h) for h in trained_heads()]
    states[1]["fc2.bias"] = states[1]["fc2.bias"][:-1]
    with pytest.raises(ValueError):
        HeadStack(states)
    heads = HeadStack([head_state(h) for h in trained_heads()])
    with pytest.raises(ValueError, match="16-dimensional"):
        heads(np.zeros((2, 8), np.float32))
