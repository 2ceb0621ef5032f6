"""``build_index``: every image under a folder, every member, keyed by content; incremental; bad images."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.compare.model_uri import load_comparator
from ctxsim.embedding.bad_images import bad_images_file
from ctxsim.errors import InputError
from ctxsim.retrieval.index import CatalogueIndex, build_index, list_images
from tests.synthetic import write_images

MODEL = "backbone:test_tiny"


@pytest.fixture
def comparator():
    return load_comparator(MODEL, progress=False)


def test_build_then_add_only_new_images(tmp_path, comparator):
    write_images(tmp_path / "cat", 4)
    out = tmp_path / "index"
    first = build_index(comparator, tmp_path / "cat", out, model=MODEL, batch_images=3, progress=False)
    assert (first.images, first.added, first.already) == (8, 8, 0)
    write_images(tmp_path / "cat", 2, start=10)  # two new images per group
    (tmp_path / "cat" / "images" / "copy.png").write_bytes((tmp_path / "cat" / "images" / "red0.png").read_bytes())
    second = build_index(comparator, tmp_path / "cat", out, model=MODEL, progress=False)
    assert (second.images, second.added, second.already) == (12, 4, 8)  # a byte-identical copy is the same image
    index = CatalogueIndex.open(out)
    assert index.size() == 12 and index.members == ["zeroshot"]
    paths = list_images(tmp_path / "cat")
    emb = comparator.embed(paths[:1], member="zeroshot")
    top = index.search("zeroshot", emb, 1)[0][0]
    assert top[2] == pytest.approx(1.0, abs=1e-4)
    index.close()


def test_vectors_are_the_comparators_embeddings(tmp_path, comparator):
    write_images(tmp_path / "cat", 3)
    out = tmp_path / "index"
    build_index(comparator, tmp_path / "cat", out, model=MODEL, progress=False)
    index = CatalogueIndex.open(out)
    paths = list_images(tmp_path / "cat")
    hits = index.search("zeroshot", comparator.embed(paths, member="zeroshot"), len(paths))
    emb = comparator.embed(paths, member="zeroshot")
    for i, row in enumerate(hits):
        expected = np.sort(emb @ emb[i])[::-1]
        np.testing.assert_allclose([h[2] for h in row], expected, atol=1e-5)
    index.close()


def test_bad_images_stop_the_build_unless_skipped(tmp_path, comparator):
    write_images(tmp_path / "cat", 2)
    bad = tmp_path / "cat" / "images" / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "index"
    with pytest.raises(InputError) as err:
        build_index(comparator, tmp_path / "cat", out, model=MODEL, progress=False)
    assert [p.file for p in err.value.problems] == [bad.resolve().as_posix()]
    result = build_index(comparator, tmp_path / "cat", out, model=MODEL, skip_bad_images=True, progress=False)
    assert result.added == 4 and len(result.bad) == 1
    listed = bad_images_file(out).read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(bad.resolve().as_posix() + "\t")


def test_another_model_is_refused(tmp_path, comparator):
    write_images(tmp_path / "cat", 1)
    build_index(comparator, tmp_path / "cat", tmp_path / "index", model=MODEL, progress=False)
    other = load_comparator("backbone:pixels", progress=False)
    with pytest.raises(InputError, match="another model"):
        build_index(other, tmp_path / "cat", tmp_path / "index", model="backbone:pixels", progress=False)
