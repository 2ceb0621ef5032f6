import math
import random

import pytest

from .helpers import make_image_tree
from ctxsim.errors import InputError
from ctxsim.labeling.pool import ROOT_GROUP, ImagePool, group_of, list_images, triplet_key


def test_list_images_recurses_sorts_and_leaves_out_hidden_non_images_and_corrupt(tmp_path):
    made = make_image_tree(tmp_path, {"shoes": 3}, flat=2)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes((tmp_path / made[0]).read_bytes())
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.png").write_bytes((tmp_path / made[0]).read_bytes())
    (tmp_path / "shoes" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")

    assert list_images(tmp_path) == made
    assert "shoes/broken.jpg" in list_images(tmp_path, check=False)


def test_list_images_of_a_missing_folder_names_it(tmp_path):
    with pytest.raises(InputError, match="image folder not found"):
        list_images(tmp_path / "nope")


def test_groups_are_top_level_folders():
    assert group_of("shoes/a.jpg") == "shoes"
    assert group_of("shoes/sub/a.jpg") == "shoes"
    assert group_of("a.jpg") == ROOT_GROUP


def test_capacity_counts_distinct_triplets_per_reference():
    pool = ImagePool([f"s/{i}.jpg" for i in range(6)] + [f"m/{i}.jpg" for i in range(5)] + ["x/0.jpg", "x/1.jpg"])
    # each reference: choose 2 of the other images of its group; group x (2 images) forms none
    assert pool.capacity(pool.images) == 6 * math.comb(5, 2) + 5 * math.comb(4, 2)
    assert pool.usable_refs(["x/0.jpg", "s/0.jpg"]) == ["s/0.jpg"]


@pytest.mark.parametrize("n", [10, 90, 200])  # rejection sampling, listing near capacity, beyond capacity
def test_sample_draws_distinct_valid_triplets_within_the_reference_group(n):
    pool = ImagePool([f"s/{i}.jpg" for i in range(6)] + [f"m/{i}.jpg" for i in range(5)])
    got = pool.sample(n, random.Random(1))
    assert len(got) == min(n, 6 * 10 + 5 * 6)
    assert len({triplet_key(*t) for t in got}) == len(got)
    for ref, a, b in got:
        assert len({ref, a, b}) == 3
        assert group_of(ref) == group_of(a) == group_of(b)


def test_sample_never_draws_excluded_or_taken_triplets_and_is_reproducible():
    images = [f"s/{i}.jpg" for i in range(5)]
    everything = ImagePool(images).sample(1000, random.Random(0))
    excluded = {triplet_key(*t) for t in everything[:10]}
    taken = {triplet_key(*t) for t in everything[10:20]}
    pool = ImagePool(images, set(excluded))
    got = pool.sample(1000, random.Random(0), taken=set(taken))
    assert len(got) == len(everything) - 20
    assert not ({triplet_key(*t) for t in got} & (excluded | taken))
    assert pool.sample(5, random.Random(3)) == pool.sample(5, random.Random(3))


def test_sample_only_uses_the_given_references():
    pool = ImagePool([f"s/{i}.jpg" for i in range(6)])
    got = pool.sample(50, random.Random(0), refs=["s/0.jpg"])
    assert len(got) == math.comb(5, 2)  # no more exist with this reference
    assert {t[0] for t in got} == {"s/0.jpg"}
