import itertools
from pathlib import Path

import polars as pl
import pytest

from ctxsim.cli import main
from ctxsim.labeling.export import EXPORT_COLUMNS, QualityRule, export_votes
from ctxsim.labeling.store import StoredTriplet, Vote, VoteStore
from ctxsim.data.triplets import validate

ROOT = Path("/data/images")
PLAN = [StoredTriplet(f"t{i}", f"s/r{i}.png", f"s/a{i}.png", f"s/b{i}.png", "shoes" if i % 2 else None, i - 1) for i in range(1, 7)]
# first answers (presentation 0): annotator -> {triplet: answer}
FIRST = {
    "a1": {"t1": "A", "t2": "B", "t3": "A", "t4": "A", "t5": "B"},
    "a2": {"t1": "A", "t2": "B", "t3": "A", "t4": "B"},
    "a3": {"t1": "A", "t2": "B", "t3": "A", "t4": "skip"},
    "bad": {"t1": "B", "t2": "A", "t3": "B"},
}
# control repeats (presentation 1): a1 is consistent on t1, not on t2
REPEAT = {"a1": {"t1": "A", "t2": "A"}}
#: Judges an annotator after 3 comparisons (the default waits for 5).
RULE = QualityRule(min_checks=3)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "votes.sqlite"
    store = VoteStore(path)
    store.load_plan(PLAN, ROOT, "plan.csv")
    store.add_annotators({name: f"{name}-token-0123456789abcdef" for name in FIRST})
    ids = itertools.count()
    for presentation, answers in ((0, FIRST), (1, REPEAT)):
        for name, votes in answers.items():
            for tid, answer in votes.items():
                store.record_vote(Vote(f"vote-{next(ids):05d}", name, tid, presentation, answer, False, 1500 + 1000 * presentation))
    store.close()
    return path


def rows(result):
    return {r["id"]: (r["label"], r["votes_a"], r["votes_b"]) for r in result.triplets.iter_rows(named=True)}


def test_majority_labels_without_the_low_quality_annotator(db, tmp_path):
    out = tmp_path / "labelled.csv"
    result = export_votes(db, out, rule=RULE)
    # bad is dropped; repeats and skips are not votes; t4 ties 1:1 and is dropped; t6 has no votes
    assert rows(result) == {"t1": ("A", 3, 0), "t2": ("B", 0, 3), "t3": ("A", 3, 0), "t5": ("B", 0, 1)}
    assert result.counts == {"annotators_dropped": 1, "planned": 6, "with_votes": 5, "below_min_votes": 0, "ties_dropped": 1, "exported": 4}
    written = pl.read_csv(out, infer_schema=False)
    assert written.columns == list(EXPORT_COLUMNS)
    assert written.row(0) == ("s/r1.png", "s/a1.png", "s/b1.png", "A", "3", "0", "shoes", "t1")
    assert written["context"].to_list() == ["shoes", None, "shoes", "shoes"]
    assert validate(out, ROOT, require_label=True, check_images=False).ok


def test_annotator_quality_by_hand(db, tmp_path):
    result = export_votes(db, tmp_path / "out.csv", rule=RULE, report=tmp_path / "annotators.csv")
    q = {r["annotator"]: r for r in result.annotators.iter_rows(named=True)}
    # agreement with the other annotators' majority: a1 and a2 lose t4 (the other one voted the opposite)
    assert (q["a1"]["agreement"], q["a1"]["agreement_checks"]) == (0.75, 4)
    assert (q["a2"]["agreement"], q["a2"]["agreement_checks"]) == (0.75, 4)
    assert (q["a3"]["agreement"], q["a3"]["agreement_checks"], q["a3"]["skips"]) == (1.0, 3, 1)
    assert (q["bad"]["agreement"], q["bad"]["agreement_checks"]) == (0.0, 3)
    assert (q["a1"]["consistency"], q["a1"]["controls"], q["a1"]["votes"]) == (0.5, 2, 5)
    assert q["a2"]["consistency"] is None and q["a2"]["controls"] == 0
    assert q["a1"]["median_seconds"] == 1.5
    assert [q[n]["status"] for n in ("a1", "a2", "a3", "bad")] == ["ok", "ok", "ok", "dropped"]
    assert q["bad"]["reason"] == "agreement 0.00 < 0.6 over 3 triplets"
    assert pl.read_csv(tmp_path / "annotators.csv")["status"].to_list() == ["ok", "ok", "ok", "dropped"]


def test_flagged_annotators_keep_their_votes_and_consistency_counts_too(db, tmp_path):
    result = export_votes(db, tmp_path / "out.csv", rule=QualityRule(min_checks=2, action="flag"))
    status = dict(result.annotators.select("annotator", "status").rows())
    assert status == {"a1": "flagged", "a2": "ok", "a3": "ok", "bad": "flagged"}
    assert "consistency 0.50 < 0.7 over 2 controls" in result.annotators.filter(pl.col("annotator") == "a1")["reason"][0]
    assert rows(result)["t1"] == ("A", 3, 1) and result.counts["annotators_dropped"] == 0


def test_too_few_checks_means_nobody_is_judged(db, tmp_path):
    result = export_votes(db, tmp_path / "out.csv")  # the default rule waits for 5 comparisons
    assert set(result.annotators["status"]) == {"ok"}
    assert rows(result)["t2"] == ("B", 1, 3)


def test_min_votes_ties_and_absolute_paths(db, tmp_path):
    result = export_votes(db, tmp_path / "out.csv", rule=RULE, min_votes=2)
    assert set(rows(result)) == {"t1", "t2", "t3"} and result.counts["below_min_votes"] == 1
    kept = export_votes(db, tmp_path / "out.csv", rule=RULE, ties="keep", absolute=True)
    label, a, b = rows(kept)["t4"]
    assert (a, b) == (1, 1) and label in ("A", "B") and kept.counts["ties_kept"] == 1
    assert kept.triplets.filter(pl.col("id") == "t1")["ref"][0] == "/data/images/s/r1.png"
    again = export_votes(db, tmp_path / "out2.csv", rule=RULE, ties="keep")
    assert rows(again)["t4"] == rows(kept)["t4"]  # the tie coin is seeded per triplet


def test_cli_export_prints_the_annotators_and_refuses_a_missing_database(db, tmp_path, capsys):
    out = tmp_path / "labelled.csv"
    assert main(["label", "export", "--db", str(db), "--out", str(out), "--min-checks", "3"]) == 0
    printed = capsys.readouterr().out
    assert "dropped" in printed and "exported 4" in printed and out.is_file()
    assert main(["label", "export", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "vote database not found" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "nope.sqlite").exists()
    assert main(["label", "export", "--db", str(db), "--out", str(out), "--min-votes", "0"]) == 2
