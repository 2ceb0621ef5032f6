"""The comparator base: image index, margins by index, the decision threshold and the public API,
on a comparator whose embeddings are written by hand (no backbone)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ctxsim.compare.comparator import Comparator, sigmoid
from ctxsim.schema import DECISION_THRESHOLD, DEFAULT_CONTEXT, margin_column

VECTORS = {"r": [1.0, 0.0], "near": [0.8, 0.6], "far": [0.0, 1.0], "opposite": [-1.0, 0.0]}


class HandMade(Comparator):
    """One member, ``m``, whose embedding of an image is looked up by its file name."""

    def __init__(self):
        super().__init__(cache=object(), progress=False)
        self.embedded: list[str] = []

    @property
    def member_names(self):
        return ["m"]

    def _image_data(self, paths):
        self.embedded += paths
        return {"m": np.array([VECTORS[p.rsplit("/", 1)[-1]] for p in paths], dtype=np.float32)}

    def _combine(self, margins, codes, chunk):
        return sigmoid(margins["m"]), pl.Series([DEFAULT_CONTEXT] * chunk.height), {}


def frame(*rows, label=None):
    df = pl.DataFrame({"ref": [r[0] for r in rows], "a": [r[1] for r in rows], "b": [r[2] for r in rows]})
    return df if label is None else df.with_columns(pl.Series("label", label))


def test_margins_are_cosine_distance_differences():
    scored = HandMade().score(frame(("r", "near", "far"), ("r", "far", "opposite")), margins=True)
    # d = 1 - cos: d(r, near) = 0.2, d(r, far) = 1, d(r, opposite) = 2
    assert scored[margin_column("m")].to_list() == pytest.approx([1 - 0.2, 2 - 1], abs=1e-6)
    assert scored["p_a"].to_list() == pytest.approx([sigmoid(np.float64(0.8)), sigmoid(np.float64(1.0))], abs=1e-6)
    assert scored["pred"].to_list() == ["A", "A"]


def test_swapping_candidates_mirrors_the_answer_and_labels_give_correct():
    df = frame(("r", "near", "far"), ("r", "far", "near"), label=["A", "A"])
    scored = HandMade().score(df)
    assert scored["p_a"][0] == pytest.approx(1 - scored["p_a"][1])
    assert scored["pred"].to_list() == ["A", "B"] and scored["correct"].to_list() == [True, False]
    assert (scored["p_a"] >= DECISION_THRESHOLD).to_list() == [True, False]


def test_each_image_is_embedded_once_however_many_rows_name_it():
    comparator = HandMade()
    comparator.score(frame(*[("r", "near", "far")] * 50, ("far", "r", "near")))
    assert sorted(p.rsplit("/", 1)[-1] for p in comparator.embedded) == ["far", "near", "r"]
    comparator.compare("r", "far", "near")  # known images: nothing new to embed
    assert len(comparator.embedded) == 3


def test_embed_and_unknown_members():
    comparator = HandMade()
    assert comparator.embed(["far", "r"]).tolist() == [VECTORS["far"], VECTORS["r"]]
    assert comparator.embed([]).shape == (0, 0)
    with pytest.raises(KeyError, match="unknown member 'x'"):
        comparator.embed(["r"], member="x")


def test_fingerprint_names_the_model():
    assert HandMade().fingerprint() == HandMade().fingerprint()
    assert len(HandMade().fingerprint()) == 64


def test_past_the_table_limit_margins_come_from_packed_embeddings(monkeypatch):
    """More unique images than MAX_TABLE_IMAGES: the same margins without tables, to float16 rounding (the
    packed matrix holds each value to 11 significant bits), and the members' arrays become views of it."""
    from ctxsim.embedding import distances

    rows = [("r", "near", "far"), ("r", "far", "opposite"), ("near", "opposite", "r"), ("far", "far", "near")] * 3
    expected = HandMade().score(frame(*rows), margins=True)[margin_column("m")].to_numpy()
    monkeypatch.setattr(distances, "MAX_TABLE_IMAGES", 2)
    comparator = HandMade()
    got = comparator.score(frame(*rows), margins=True)[margin_column("m")].to_numpy()
    np.testing.assert_allclose(got, expected, atol=2 * 2.0 ** -11)
    assert not np.array_equal(got, expected)  # the float16 path, not the tables
    assert not comparator._tables and np.shares_memory(comparator._data["m"], comparator._packed.matrix)
    assert comparator._packed.matrix.dtype == np.float16
    embedded = comparator.embed(["far", "near"], member="m")
    assert embedded.dtype == np.float32
    np.testing.assert_allclose(embedded, [VECTORS["far"], VECTORS["near"]], atol=2.0 ** -11)
