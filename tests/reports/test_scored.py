"""Reading a scored CSV back: which models it holds, and bad input named by file, row and column."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ctxsim.errors import InputError
from ctxsim.reports.scored import BASELINE, ENSEMBLE, MEMBER, models_of, prepare, read_scored
from ctxsim.schema import PATH


def test_models_are_listed_ensemble_then_baselines_then_members():
    cols = ["ref", "a", "b", "margin_zeroshot", "p_a", "p_a_majority_vote", "margin_context-red", "p_a_mlp_weighted", "pred"]
    assert [(m.name, m.kind, m.column) for m in models_of(cols)] == [
        ("ensemble", ENSEMBLE, "p_a"),
        ("majority_vote", BASELINE, "p_a_majority_vote"),
        ("mlp_weighted", BASELINE, "p_a_mlp_weighted"),
        ("zeroshot", MEMBER, "margin_zeroshot"),
        ("context-red", MEMBER, "margin_context-red"),
    ]


def test_text_from_a_csv_and_typed_frames_give_the_same_result(scored_dir: Path, scored):
    from_csv, models = prepare(read_scored(scored_dir / "scored.csv"))
    typed, _ = prepare(scored, images_root=scored_dir)
    columns = ["id", "context", "label", "pred", "p_a", "votes_a", "margin_context-red", "p_a_majority_vote", *PATH.values()]
    assert from_csv.select(columns).equals(typed.select(columns))
    assert from_csv["p_a"].dtype == pl.Float64 and from_csv["votes_a"].dtype == pl.Int64
    # relative image paths resolve against the scored CSV's folder (TripletFile.of's rule)
    assert from_csv[PATH["ref"]][0] == (scored_dir / "images" / "r1.png").resolve().as_posix()
    assert len(models) == 4


def test_missing_context_id_and_pred_are_filled_in(scored):
    frame, _ = prepare(scored.drop("context", "id", "pred", "correct"))
    assert frame["context"].unique().to_list() == ["all"]
    assert frame["id"].to_list() == [str(i) for i in range(1, 9)]
    assert frame["pred"].to_list() == ["A", "A", "B", "B", "A", "B", "A", "B"]


def _problems(csv: Path) -> set[tuple[int | None, str | None]]:
    with pytest.raises(InputError) as err:
        prepare(read_scored(csv))
    assert all(p.file == str(csv) for p in err.value.problems)
    return {(p.row, p.column) for p in err.value.problems}


def _edit(scored_dir: Path, **columns) -> Path:
    """scored.csv with some cells replaced: column -> {row (1-based): text}."""
    df = pl.read_csv(scored_dir / "scored.csv", infer_schema=False)
    for column, cells in columns.items():
        df = df.with_columns(pl.Series(column, [cells.get(i + 1, v) for i, v in enumerate(df[column].to_list())]))
    out = scored_dir / "bad.csv"
    df.write_csv(out)
    return out


def test_bad_cells_are_all_reported_with_row_and_column(scored_dir: Path):
    bad = _edit(
        scored_dir,
        p_a={2: "1.5", 5: "high"},
        **{"margin_zeroshot": {3: "nan"}, "p_a_majority_vote": {4: ""}, "label": {6: "C"}, "votes_b": {7: "-1"}},
    )
    assert _problems(bad) == {(2, "p_a"), (5, "p_a"), (3, "margin_zeroshot"), (4, "p_a_majority_vote"), (6, "label"), (7, "votes_b")}


def test_pred_and_correct_must_agree_with_p_a_and_label(scored_dir: Path):
    assert _problems(_edit(scored_dir, pred={1: "B"}, correct={1: "false"})) == {(1, "pred")}
    assert _problems(_edit(scored_dir, correct={2: "true", 3: "maybe"})) == {(3, "correct")}
    assert _problems(_edit(scored_dir, correct={2: "true"})) == {(2, "correct")}


def test_missing_required_columns_are_named(scored_dir: Path, scored):
    out = scored_dir / "no_p.csv"
    scored.drop("p_a").write_csv(out)
    assert _problems(out) == {(None, "p_a")}
    with pytest.raises(InputError) as err:
        prepare(scored.drop("ref", "p_a"), source="frame")
    assert {(p.file, p.column) for p in err.value.problems} == {("frame", "ref"), ("frame", "p_a")}


def test_triplet_columns_are_checked_by_the_triplet_validator(scored_dir: Path):
    bad = _edit(scored_dir, a={2: "images/r1.png"})  # same image as ref
    assert _problems(bad) == {(2, "a")}
    with pytest.raises(InputError) as err:
        read_scored(scored_dir / "nowhere.csv")
    assert "not found" in str(err.value)
