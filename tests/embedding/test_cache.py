"""The embedding cache: keyed by image content and backbone, persisted in SQLite, batched."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctxsim.data.images import load_image
from ctxsim.embedding.cache import EmbeddingCache, default_cache_dir, embed_images
from ctxsim.errors import ImageError
from ctxsim.members.backbones import create_backbone


def counting(backbone):
    """Record the batch sizes the backbone's model is called with."""
    calls: list[int] = []
    forward = backbone.model.forward

    def wrapped(x):
        calls.append(len(x))
        return forward(x)

    backbone.model.forward = wrapped
    return backbone, calls


def direct(backbone, paths) -> np.ndarray:
    transform = backbone.preprocess.transform()
    with torch.inference_mode():
        return backbone(torch.stack([transform(load_image(p)) for p in paths])).numpy()


def test_features_match_a_direct_forward_pass(make_images):
    paths = [str(p) for p in make_images(5)]
    backbone = create_backbone("test_tiny")
    feats = embed_images(paths, backbone, EmbeddingCache(), progress=False)
    assert feats.shape == (5, backbone.feature_dim) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, direct(backbone, paths), rtol=1e-5, atol=1e-6)


def test_each_unique_image_is_embedded_once_in_batches(tmp_path, make_images):
    paths = [str(p) for p in make_images(10)]
    copy = tmp_path / "same-content.png"
    copy.write_bytes(Path(paths[0]).read_bytes())
    backbone, calls = counting(create_backbone("pixels"))
    cache = EmbeddingCache()
    many = paths * 3 + [str(copy)] * 2  # 32 rows naming 10 distinct contents
    feats = embed_images(many, backbone, cache, batch_size=4, progress=False)
    assert calls == [4, 4, 2]
    assert feats.shape == (32, backbone.feature_dim)
    np.testing.assert_array_equal(feats[:10], feats[10:20])
    np.testing.assert_array_equal(feats[30], feats[0])
    # asking again embeds nothing
    again = embed_images(list(reversed(many)), backbone, cache, progress=False)
    assert calls == [4, 4, 2]
    np.testing.assert_array_equal(again, feats[::-1])
    assert len(cache) == 10


def test_new_images_only_are_embedded(make_images):
    paths = [str(p) for p in make_images(6)]
    backbone, calls = counting(create_backbone("pixels"))
    cache = EmbeddingCache()
    embed_images(paths[:4], backbone, cache, progress=False)
    embed_images(paths, backbone, cache, progress=False)
    assert calls == [4, 2]


def test_cache_is_keyed_by_backbone_weights(make_images):
    paths = [str(p) for p in make_images(3)]
    cache = EmbeddingCache()
    seed0 = embed_images(paths, create_backbone("test_tiny", seed=0), cache, progress=False)
    seed1 = embed_images(paths, create_backbone("test_tiny", seed=1), cache, progress=False)
    assert not np.allclose(seed0, seed1)
    assert len(cache) == 6
    np.testing.assert_array_equal(embed_images(paths, create_backbone("test_tiny", seed=0), cache, progress=False), seed0)


def test_cache_persists_in_sqlite_between_instances(tmp_path, make_images):
    paths = [str(p) for p in make_images(4)]
    first = embed_images(paths, create_backbone("pixels"), EmbeddingCache(tmp_path / "cache"), progress=False)
    assert (tmp_path / "cache" / "embeddings.sqlite").is_file()

    reopened = EmbeddingCache(tmp_path / "cache")
    assert len(reopened) == 4
    backbone, calls = counting(create_backbone("pixels"))
    again = embed_images(paths, backbone, reopened, progress=False)
    assert calls == []
    np.testing.assert_array_equal(again, first)


def test_cache_round_trips_vectors():
    cache = EmbeddingCache()
    vectors = {"d1": np.arange(5, dtype=np.float32), "d2": -np.ones(5, dtype=np.float32)}
    cache.put_many("m@w", vectors)
    got = cache.get_many("m@w", ["d2", "d1", "d3", "d1"])
    assert sorted(got) == ["d1", "d2"]
    np.testing.assert_array_equal(got["d1"], vectors["d1"])
    assert cache.get_many("other@w", ["d1"]) == {}


def test_cache_handles_more_digests_than_sqlite_parameters():
    cache = EmbeddingCache()
    cache.put_many("m", {f"d{i}": np.full(2, i, np.float32) for i in range(1200)})
    got = cache.get_many("m", [f"d{i}" for i in range(1200)])
    assert len(got) == 1200 and got["d1199"][0] == 1199


def test_no_paths_give_an_empty_array():
    backbone = create_backbone("pixels")
    assert embed_images([], backbone, progress=False).shape == (0, backbone.feature_dim)


def test_corrupt_image_raises_image_error(tmp_path, make_images):
    (good,) = make_images(1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ImageError, match="bad.png"):
        embed_images([str(good), str(bad)], create_backbone("pixels"), progress=False)


def test_default_cache_dir_follows_ctxsim_cache(monkeypatch, tmp_path):
    # the test session itself never writes to ~/.cache
    assert "CTXSIM_CACHE" in os.environ and Path.home() / ".cache" not in default_cache_dir().parents
    monkeypatch.setenv("CTXSIM_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("CTXSIM_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "ctxsim"


def test_an_interrupted_embedding_resumes_from_its_last_commit(tmp_path, make_images, monkeypatch):
    """Embeddings are committed every COMMIT_EVERY images: after a failure at the 4th batch, a second
    run embeds only the images that were not committed."""
    from ctxsim.embedding import cache as cache_module

    monkeypatch.setattr(cache_module, "COMMIT_EVERY", 4)
    paths = [str(p) for p in make_images(12)]
    backbone, calls = counting(create_backbone("pixels"))
    forward = backbone.model.forward

    def failing(x):
        if len(calls) == 3:
            raise KeyboardInterrupt
        return forward(x)

    backbone.model.forward = failing
    cache = EmbeddingCache(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        embed_images(paths, backbone, cache, batch_size=2, progress=False)
    assert len(cache) == 4  # three batches of two ran: the first four were committed, the next two not yet
    calls.clear()
    backbone.model.forward = forward
    feats = embed_images(paths, backbone, cache, batch_size=2, progress=False)
    assert sum(calls) == 12 - 4 and len(cache) == 12
    np.testing.assert_array_equal(feats, embed_images(paths, backbone, EmbeddingCache(), progress=False))


def test_progress_off_a_terminal_is_a_line_per_stage(make_images, caplog, monkeypatch):
    from ctxsim.embedding import progress as progress_module

    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    paths = [str(p) for p in make_images(3)]
    with caplog.at_level("INFO", logger="ctxsim"):
        embed_images(paths, create_backbone("pixels"), EmbeddingCache(), progress=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "embed pixels: 3 img to do" and lines[-1].startswith("embed pixels: done, 3/3 img, ")
    assert "img/s" in lines[-1]


def test_lookups_of_many_digests_are_chunked():
    cache = EmbeddingCache()
    cache.put_many("m", {f"d{i}": np.full(2, i, np.float32) for i in range(20_000)})
    got = cache.get_many("m", [f"d{i}" for i in range(20_000)] + ["missing"])
    assert len(got) == 20_000 and got["d19999"][0] == 19999
