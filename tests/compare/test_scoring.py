"""Zero-shot comparison of triplet CSVs: output columns, margins, streaming in chunks, atomic output."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ctxsim.compare.comparator import ZERO_SHOT_SCALE
from ctxsim.compare.model_uri import load_comparator
from ctxsim.compare.scoring import compare_files
from ctxsim.compare.zero_shot import ZeroShotComparator
from ctxsim.data.images import load_image
from ctxsim.embedding.cache import EmbeddingCache
from ctxsim.errors import InputError
from ctxsim.schema import DEFAULT_CONTEXT
from tests.conftest import write_near

HEADER = ("ref", "a", "b", "label", "context", "votes_a", "votes_b")


@pytest.fixture
def easy_set(tmp_path, make_images, write_csv):
    """Rows whose answer is plain to any backbone: one candidate is a lightly noised copy of the reference."""
    images = make_images(6)
    near = [write_near(tmp_path / "images" / f"near{i}.png", p, seed=i) for i, p in enumerate(images)]
    rows = []
    for i in range(6):
        other = f"images/{images[(i + 2) % 6].name}"
        ref, close = f"images/{images[i].name}", f"images/{near[i].name}"
        ctx = "even" if i % 2 == 0 else "odd"
        rows.append((ref, close, other, "A", ctx, 3, 1))
        rows.append((ref, other, close, "B", ctx, 0, 4))
        rows.append((ref, close, other, "B", ctx, 2, 2))  # a wrong label: the judges tied
    return write_csv(tmp_path / "easy.csv", rows, header=HEADER)


def comparator(name="pixels", cache=None, **kw):
    return load_comparator(f"backbone:{name}", cache=cache if cache is not None else EmbeddingCache(), progress=False, **kw)


def pixel_vector(path: Path) -> np.ndarray:
    from ctxsim.members.backbones import create_backbone

    x = create_backbone("pixels").preprocess.transform()(load_image(path)).numpy().reshape(-1).astype(np.float64)
    return x / np.linalg.norm(x)


def test_compare_writes_input_columns_then_scores(easy_set, tmp_path):
    out = tmp_path / "scored.csv"
    tally = compare_files(comparator(), easy_set, out, margins=True, progress=False)
    df = pl.read_csv(out)
    assert df.columns == ["ref", "a", "b", "label", "votes_a", "votes_b", "id", "context", "p_a", "pred", "correct", "margin_zeroshot"]
    assert df.height == 18
    source = pl.read_csv(easy_set)
    assert df.select(source.columns).equals(source)  # input values pass through unchanged
    # the near copy always wins; the tied rows carry a wrong label
    assert df["pred"].to_list() == ["A", "B", "A"] * 6
    assert df["correct"].to_list() == [True, True, False] * 6
    assert df["correct"].to_list() == (df["pred"] == df["label"]).to_list()
    # margins and p_a by hand: cosine of the normalised 32x32 pixels, p_a = sigmoid(10 * margin)
    root = easy_set.parent
    for row in df.head(3).iter_rows(named=True):
        r, a, b = (pixel_vector(root / row[c]) for c in ("ref", "a", "b"))
        margin = (1 - r @ b) - (1 - r @ a)
        assert row["margin_zeroshot"] == pytest.approx(margin, abs=1e-5)
        assert row["p_a"] == pytest.approx(1 / (1 + math.exp(-ZERO_SHOT_SCALE * margin)), abs=1e-5)
    # accuracy and vote agreement per context and overall
    summary = {r["context"]: r for r in tally.summary()}
    assert sorted(summary) == ["(all)", "even", "odd"]
    assert summary["(all)"]["accuracy"] == pytest.approx(12 / 18)
    assert summary["even"]["rows"] == 9
    # votes: (3,1) pred A: 3; (0,4) pred B: 4; (2,2) pred A: 2 -> 9 of 12; the majority is always right
    assert summary["(all)"]["vote_agreement"] == pytest.approx(9 / 12)
    assert summary["(all)"]["majority_accuracy"] == 1.0


def test_context_defaults_and_unlabelled_input(tmp_path, easy_set, write_csv):
    rows = pl.read_csv(easy_set).select("ref", "a", "b").rows()
    csv = write_csv(tmp_path / "unlabelled.csv", rows, header=("ref", "a", "b"))
    out = tmp_path / "scored.csv"
    tally = compare_files(comparator(), csv, out, progress=False)
    df = pl.read_csv(out)
    assert df.columns == ["ref", "a", "b", "id", "context", "p_a", "pred"]
    assert set(df["context"]) == {DEFAULT_CONTEXT}
    assert tally.summary()[-1] == {"context": "(all)", "rows": 18}


def test_several_csvs_with_different_columns(tmp_path, easy_set, write_csv):
    rows = pl.read_csv(easy_set).select("ref", "a", "b", "label").rows()[:4]
    plain = write_csv(tmp_path / "plain.csv", rows)
    out = tmp_path / "scored.csv"
    compare_files(comparator(), [plain, easy_set], out, progress=False)
    df = pl.read_csv(out)
    assert df.height == 22
    assert df.columns[:6] == ["ref", "a", "b", "label", "id", "votes_a"]
    assert df["votes_a"].head(4).is_null().all() and df["context"].head(4).to_list() == [DEFAULT_CONTEXT] * 4


@pytest.mark.parametrize("margins", [False, True])
def test_small_chunks_give_the_same_file_as_one_chunk(easy_set, tmp_path, margins):
    """pixels arithmetic does not depend on batch composition, so the files are identical byte for byte."""
    outs = []
    for chunk_rows in (18, 5, 1):
        out = tmp_path / f"scored-{chunk_rows}.csv"
        compare_files(comparator(), easy_set, out, chunk_rows=chunk_rows, margins=margins, progress=False)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_small_chunks_with_a_network_backbone(easy_set, tmp_path):
    shared = EmbeddingCache()
    outs = {}
    for key, chunk_rows, cache in (("one", 100, shared), ("small", 4, shared), ("fresh", 4, EmbeddingCache())):
        out = tmp_path / f"{key}.csv"
        compare_files(comparator("test_tiny", cache), easy_set, out, chunk_rows=chunk_rows, margins=True, progress=False)
        outs[key] = out.read_bytes()
    assert outs["small"] == outs["one"]
    # Embedded afresh in other batches, conv arithmetic may differ in the last bits; nothing else does.
    one, fresh = pl.read_csv(io_bytes(outs["one"])), pl.read_csv(io_bytes(outs["fresh"]))
    floats = ["p_a", "margin_zeroshot"]
    assert one.drop(floats).equals(fresh.drop(floats))
    np.testing.assert_allclose(one.select(floats).to_numpy(), fresh.select(floats).to_numpy(), rtol=1e-5, atol=1e-6)


def io_bytes(data: bytes):
    import io

    return io.BytesIO(data)


def test_every_unique_image_is_embedded_once_across_chunks_and_files(easy_set, tmp_path):
    comp = comparator()
    calls = []
    forward = comp.backbone.model.forward
    comp.backbone.model.forward = lambda x: (calls.append(len(x)), forward(x))[1]
    compare_files(comp, [easy_set, easy_set], tmp_path / "out.csv", chunk_rows=2, progress=False)
    assert sum(calls) == 12  # 6 images and their 6 near copies, however many rows name them


def test_invalid_input_writes_nothing(easy_set, tmp_path):
    bad = easy_set.read_text().replace(",A,even,", ",Z,even,", 1)
    easy_set.write_text(bad)
    out = tmp_path / "scored.csv"
    with pytest.raises(InputError) as err:
        compare_files(comparator(), easy_set, out, progress=False)
    assert [(p.row, p.column) for p in err.value.problems] == [(1, "label")]
    assert not out.exists()
    out.write_text("previous\n")
    with pytest.raises(InputError):
        compare_files(comparator(), easy_set, out, progress=False)
    assert out.read_text() == "previous\n"


def test_failure_while_streaming_leaves_no_partial_output(easy_set, tmp_path, monkeypatch):
    """No output file half-written: only the hidden partial file and its progress, for ``--resume``."""
    comp = comparator()
    predict, seen = comp.predict, []

    def failing(chunk, **kw):
        seen.append(chunk.height)
        if len(seen) == 2:
            raise RuntimeError("out of memory")
        return predict(chunk, **kw)

    monkeypatch.setattr(comp, "predict", failing)
    with pytest.raises(RuntimeError):
        compare_files(comp, easy_set, tmp_path / "out" / "scored.csv", chunk_rows=5, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".scored.csv.partial", ".scored.csv.progress.json"]


def test_header_only_input_gives_a_header_only_output(tmp_path, write_csv):
    csv = write_csv(tmp_path / "empty.csv", [])
    out = tmp_path / "scored.csv"
    tally = compare_files(comparator(), csv, out, progress=False)
    assert out.read_text().splitlines() == ["ref,a,b,label,id,context,p_a,pred,correct"]
    assert tally.summary() == []


# -- the comparator's Python API -----------------------------------------------------------------------
def test_compare_score_and_embed(easy_set):
    comp = comparator()
    root = easy_set.parent
    ref, near, other = root / "images" / "img0.png", root / "images" / "near0.png", root / "images" / "img2.png"
    p = comp.compare(str(ref), str(near), str(other))
    assert p > 0.5 and comp.compare(str(ref), str(other), str(near)) == pytest.approx(1 - p, abs=1e-6)

    import pandas as pd

    frame = pd.DataFrame({"ref": ["images/img0.png"], "a": ["images/near0.png"], "b": ["images/img2.png"], "label": ["B"]})
    scored = comp.score(frame, images=root, margins=True)
    assert scored.columns == ["ref", "a", "b", "label", "context", "p_a", "pred", "correct", "margin_zeroshot"]
    assert scored.row(0, named=True)["p_a"] == pytest.approx(p)
    assert scored["correct"].to_list() == [False]

    emb = comp.embed([ref, near])
    assert emb.shape == (2, 3 * 32 * 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb[0], pixel_vector(ref), atol=1e-5)
    with pytest.raises(KeyError, match="unknown member"):
        comp.embed([ref], member="nope")


def test_load_comparator():
    comp = comparator()
    assert isinstance(comp, ZeroShotComparator) and comp.member_names == ["zeroshot"]
    with pytest.raises(FileNotFoundError, match="expected backbone:NAME"):
        load_comparator("no-such-model-dir")
