import itertools
import math
import statistics
from collections import Counter

import numpy as np
import polars as pl
import pytest

from ctxsim.cli import main
from ctxsim.errors import InputError
from ctxsim.labeling.plan import PLAN_COLUMNS, balanced_quotas, disagreement, disagreement_split, make_plan, triplet_id
from ctxsim.labeling.pool import group_of, triplet_key
from ctxsim.data.triplets import validate

from .helpers import make_image_tree, write_plan_csv


class FakeComparator:
    """Members whose distances are |v(x) - v(y)| over fixed per-image numbers; routes references
    with a low first-member value to context ``dark``, the others to ``light``."""

    def __init__(self, values: dict[str, dict[str, float]], dark_below: float = 0.0):
        self.values, self.dark_below = values, dark_below

    @property
    def member_names(self):
        return list(self.values)

    def margin(self, member, ref, a, b):
        v = self.values[member]
        return abs(v[ref] - v[b]) - abs(v[ref] - v[a])

    def context(self, ref):
        return "dark" if self.values[self.member_names[0]][ref] < self.dark_below else "light"

    def score(self, df, images=None, *, margins=False):
        rows = df.select("ref", "a", "b").rows()
        m = {k: [self.margin(k, *r) for r in rows] for k in self.member_names}
        mean = np.mean([m[k] for k in self.member_names], axis=0) if rows else np.zeros(0)
        out = df.with_columns(
            pl.Series("context", [self.context(r[0]) for r in rows], pl.String),
            pl.Series("p_a", 1 / (1 + np.exp(-10 * mean)), pl.Float64),
        )
        return out.with_columns(pl.Series(f"margin_{k}", v, pl.Float64) for k, v in m.items()) if margins else out


def fake(images, members=("m1",), seed=0, **kw):
    rng = np.random.default_rng(seed)
    return FakeComparator({k: {p: float(rng.random()) for p in images} for k in members}, **kw)


def all_triplets(images):
    """Every (ref, a, b) with a < b within one group."""
    return [(r, a, b) for r in images for a, b in itertools.combinations([p for p in images if p != r], 2)
            if group_of(r) == group_of(a) == group_of(b)]


def keys(df):
    return {triplet_key(*r) for r in df.select("ref", "a", "b").rows()}


def test_random_plan_is_valid_reproducible_and_within_groups(image_root, tmp_path):
    df = make_plan(image_root, 12, seed=0)
    assert df.columns == list(PLAN_COLUMNS) and df.height == 12
    assert df.rows() == make_plan(image_root, 12, seed=0).rows()
    assert df.rows() != make_plan(image_root, 12, seed=1).rows()
    for ref, a, b, context, tid in df.rows():
        assert len({ref, a, b}) == 3 and group_of(ref) == group_of(a) == group_of(b) == context
        assert tid == triplet_id(ref, a, b)
    assert len(keys(df)) == 12 and df["id"].n_unique() == 12
    out = image_root / "plan.csv"
    df.write_csv(out)
    report = validate(out)
    assert report.ok and not report.warnings and report.n_rows == 12


def test_plan_of_images_in_the_root_has_no_context(tmp_path):
    make_image_tree(tmp_path, {}, flat=4)
    df = make_plan(tmp_path, 5)
    assert df.height == 5 and df["context"].null_count() == 5


def test_plan_larger_than_possible_gives_every_triplet_once(tmp_path, caplog):
    make_image_tree(tmp_path, {"s": 4})  # 4 references x 3 pairs = 12 triplets
    df = make_plan(tmp_path, 50)
    assert df.height == 12 and len(keys(df)) == 12
    assert "only 12 new distinct triplets" in caplog.text


def test_too_few_images_is_refused(tmp_path):
    make_image_tree(tmp_path, {"s": 2, "m": 2})
    with pytest.raises(InputError, match="three or more readable images"):
        make_plan(tmp_path, 3)


def test_uncertain_keeps_the_triplets_with_p_a_closest_to_half(tmp_path):
    images = make_image_tree(tmp_path, {"s": 6})  # 60 possible triplets: a pool of 12 x 5 holds them all
    model = fake(images)
    df = make_plan(tmp_path, 5, strategy="uncertain", comparator=model, pool_factor=12)

    def closeness(t):
        return abs(1 / (1 + math.exp(-10 * model.margin("m1", *t))) - 0.5)

    expected = sorted(all_triplets(images), key=closeness)[:5]
    assert keys(df) == {triplet_key(*t) for t in expected}
    assert set(df["context"]) == {"light"}  # the model's routing, not the folder


def test_disagreement_ranks_by_vote_split_then_standardised_spread(tmp_path):
    images = make_image_tree(tmp_path, {"s": 6})
    model = fake(images, members=("m1", "m2", "m3"), seed=3)
    df = make_plan(tmp_path, 6, strategy="disagreement", comparator=model, pool_factor=10)

    every = all_triplets(images)
    margins = {k: [model.margin(k, *t) for t in every] for k in model.member_names}
    rms = {k: math.sqrt(sum(x * x for x in v) / len(v)) for k, v in margins.items()}

    def rank(i):
        ms = [margins[k][i] for k in model.member_names]
        for_a = sum(m > 0 for m in ms)
        split = min(for_a, 3 - for_a) / 3
        return (-split, -statistics.pstdev([margins[k][i] / rms[k] for k in model.member_names]))

    expected = [every[i] for i in sorted(range(len(every)), key=rank)[:6]]
    assert keys(df) == {triplet_key(*t) for t in expected}
    split = disagreement_split(np.array([[model.margin(k, *t) for k in model.member_names] for t in expected]))
    assert (split > 0).all()  # all chosen triplets split the members


def test_disagreement_split_and_rank_by_hand():
    m = np.array([[1.0, 2.0, 3.0], [1.0, -1.0, 2.0], [-2.0, 2.0, -2.0], [0.5, -0.5, 0.5]])
    assert disagreement_split(m).tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    scored = pl.DataFrame({f"margin_m{i}": m[:, i] for i in range(3)})
    rank = disagreement(scored, ["m0", "m1", "m2"])
    # rows 1-3 split 2:1; among them row 2 is the most spread out, then row 1, then row 3
    assert rank.tolist() == [3, 1, 0, 2]


def test_model_strategies_need_a_model_and_disagreement_two_members(image_root):
    with pytest.raises(InputError, match="pass --model"):
        make_plan(image_root, 3, strategy="uncertain")
    with pytest.raises(InputError, match="one member .*needs two or more"):
        make_plan(image_root, 3, strategy="disagreement", comparator=fake(["x"]))


def test_balanced_quotas_fill_the_sparsest_context_first():
    assert balanced_quotas({"x": 10, "y": 2, "z": 10}, 9, {"x": 3}) == {"x": 2, "y": 2, "z": 5}
    assert balanced_quotas({"x": 10, "y": 10}, 4) == {"x": 2, "y": 2}
    assert balanced_quotas({"x": 1, "y": 0}, 5) == {"x": 1, "y": 0}


def test_balanced_over_folders_evens_out_labelled_counts(tmp_path):
    images = make_image_tree(tmp_path, {"shoes": 6, "metals": 5, "rare": 3})  # rare: 3 triplets possible
    df = make_plan(tmp_path, 9, strategy="balanced")
    assert Counter(df["context"]) == {"shoes": 3, "metals": 3, "rare": 3}

    shoes = [p for p in images if p.startswith("shoes/")]
    labelled = write_plan_csv(tmp_path / "labelled.csv", [(shoes[0], shoes[1], shoes[2]), (shoes[3], shoes[4], shoes[5])])
    df = make_plan(tmp_path, 7, strategy="balanced", exclude=[labelled])
    # 2 shoes triplets are labelled already: metals and rare catch up first
    assert Counter(df["context"]) == {"metals": 3, "rare": 3, "shoes": 1}
    assert not keys(df) & {triplet_key(shoes[0], shoes[1], shoes[2]), triplet_key(shoes[3], shoes[4], shoes[5])}


def test_balanced_with_a_model_balances_its_routed_contexts(tmp_path):
    images = make_image_tree(tmp_path, {"s": 10})
    model = fake(images, dark_below=0.25)
    dark = sum(model.context(p) == "dark" for p in images)
    assert 0 < dark < 5  # the dark context is the sparse one
    df = make_plan(tmp_path, 8, strategy="balanced", comparator=model)
    assert Counter(df["context"]) == {"dark": 4, "light": 4}
    assert all(model.context(ref) == c for ref, c in df.select("ref", "context").rows())


def test_cli_uncertain_with_the_pixel_model_picks_the_least_sure(tmp_path, capsys):
    images = make_image_tree(tmp_path / "images", {"s": 6})
    out = tmp_path / "plan.csv"
    rc = main(["label", "plan", "--images", str(tmp_path / "images"), "--n", "6", "--out", str(out),
               "--model", "backbone:pixels", "--strategy", "uncertain", "--pool-factor", "10"])
    assert rc == 0 and capsys.readouterr().out.strip() == str(out)
    plan = pl.read_csv(out, infer_schema=False)
    assert plan.height == 6 and set(plan["context"]) == {"s"}  # a zero-shot model routes nowhere: the folder is kept
    assert validate(out, tmp_path / "images").ok

    import ctxsim

    every = pl.DataFrame(all_triplets(images), schema=["ref", "a", "b"], orient="row")
    scored = ctxsim.load("backbone:pixels", progress=False).score(every, images=tmp_path / "images")
    expected = scored.with_columns((pl.col("p_a") - 0.5).abs().alias("d")).sort("d").head(6)
    assert keys(plan) == keys(expected)


def test_cli_refuses_disagreement_with_a_one_member_model(image_root, tmp_path, capsys):
    out = tmp_path / "plan.csv"
    rc = main(["label", "plan", "--images", str(image_root), "--n", "3", "--out", str(out),
               "--model", "backbone:pixels", "--strategy", "disagreement"])
    assert rc == 2 and not out.exists()
    assert "needs two or more" in capsys.readouterr().err


def test_cli_refuses_a_model_strategy_without_a_model(image_root, tmp_path, capsys):
    rc = main(["label", "plan", "--images", str(image_root), "--n", "3", "--out", str(tmp_path / "p.csv"), "--strategy", "uncertain"])
    assert rc == 2 and "pass --model" in capsys.readouterr().err
