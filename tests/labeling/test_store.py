import sqlite3
import threading
from pathlib import Path

import pytest

from ctxsim.errors import InputError
from ctxsim.labeling.store import StoredTriplet, Vote, VoteConflict, VoteStore

ROOT = Path("/data/images")
TRIPLETS = [StoredTriplet("t1", "r.png", "a.png", "b.png", "shoes", 0), StoredTriplet("t2", "r.png", "b.png", "c.png", None, 1)]


@pytest.fixture
def store(tmp_path):
    s = VoteStore(tmp_path / "votes.sqlite")
    s.load_plan(TRIPLETS, ROOT, "plan.csv")
    s.add_annotators({"alice": "alice-token-0123456789"})
    yield s
    s.close()


def vote(vote_id="v0000001", triplet="t1", answer="A", presentation=0, annotator="alice"):
    return Vote(vote_id, annotator, triplet, presentation, answer, swapped=False, elapsed_ms=900)


def test_database_is_in_wal_mode_with_the_schema(store, tmp_path):
    db = sqlite3.connect(tmp_path / "votes.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key = 'images_root'").fetchone()[0] == str(ROOT)
    assert store.triplets() == TRIPLETS and store.images_root == ROOT


def test_a_vote_is_stored_once_and_resubmission_is_idempotent(store):
    assert store.record_vote(vote()) is True
    assert store.record_vote(vote()) is False  # the same vote id again
    assert store.record_vote(vote(vote_id="v0000002")) is False  # the same answer under a new id (a second tab)
    assert store.count_votes() == 1
    assert store.votes()[0][:7] == ("v0000001", "alice", "t1", 0, "A", 0, 900)


def test_contradicting_votes_are_refused_and_change_nothing(store):
    store.record_vote(vote())
    with pytest.raises(VoteConflict, match="already answered 'A'"):
        store.record_vote(vote(vote_id="v0000002", answer="B"))
    with pytest.raises(VoteConflict, match="already used for a different vote"):
        store.record_vote(vote(vote_id="v0000001", triplet="t2"))
    assert store.count_votes() == 1


def test_a_control_repeat_needs_a_first_answer(store):
    with pytest.raises(VoteConflict, match="only shown after a first answer"):
        store.record_vote(vote(presentation=1))
    store.record_vote(vote(triplet="t2", answer="skip"))
    with pytest.raises(VoteConflict, match="only shown after a first answer"):
        store.record_vote(vote(vote_id="v0000003", triplet="t2", presentation=1))
    store.record_vote(vote(vote_id="v0000004"))
    assert store.record_vote(vote(vote_id="v0000005", presentation=1, answer="B"))
    assert store.answers_of("alice") == [("t2", 0, "skip"), ("t1", 0, "A"), ("t1", 1, "B")]
    assert store.vote_counts() == {"t1": 1}  # skips and repeats are not votes


def test_unknown_annotators_and_triplets_are_refused_by_the_database(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.record_vote(vote(triplet="nope"))
    with pytest.raises(sqlite3.IntegrityError):
        store.record_vote(vote(annotator="mallory"))
    assert store.count_votes() == 0


def test_reloading_a_plan_is_harmless_but_a_different_triplet_under_an_old_id_is_refused(store):
    assert store.load_plan(TRIPLETS, ROOT, "plan.csv") == 0
    clash = [StoredTriplet("t3", "r.png", "c.png", "d.png", None, 0), StoredTriplet("t1", "x.png", "y.png", "z.png", None, 1)]
    with pytest.raises(InputError, match="'t1' already names a different triplet"):
        store.load_plan(clash, ROOT, "plan2.csv")
    assert [t.id for t in store.triplets()] == ["t1", "t2"]  # all or nothing: t3 was not added
    with pytest.raises(InputError, match="collects votes on images under /data/images"):
        store.load_plan(TRIPLETS, Path("/elsewhere"), "plan.csv")


def test_annotators_tokens_are_checked_and_kept(store):
    names = store.ensure_annotators(3)
    assert names == ["alice", "annotator-2", "annotator-3"]
    assert store.annotator_for("alice-token-0123456789") == "alice"
    generated = [store.token_of(n) for n in names[1:]]
    assert store.token_of("alice") is None  # a token given by hand: only its owner has it
    assert [store.annotator_for(t) for t in generated] == names[1:] and len(set(generated)) == 2
    assert store.annotator_for("not-a-real-token-000000") is None and store.annotator_for("short") is None
    assert store.ensure_annotators(2) == names  # enough exist already
    store.add_annotators({"alice": "alice-token-0123456789"})  # the same pair again is fine
    with pytest.raises(InputError, match="already has another token"):
        store.add_annotators({"alice": "another-token-0123456789"})
    with pytest.raises(InputError, match="already belongs to 'alice'"):
        store.add_annotators({"bob": "alice-token-0123456789"})
    with pytest.raises(InputError, match="16-128 letters"):
        store.add_annotators({"bob": "short"})
    assert store.annotators() == names


def test_a_missing_or_foreign_database_is_refused(tmp_path):
    with pytest.raises(InputError, match="vote database not found"):
        VoteStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(InputError, match="not a usable SQLite vote database"):
        VoteStore(junk, create=False)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(InputError, match="not a ctxsim vote database"):
        VoteStore(other, create=False)


def test_concurrent_writers_lose_nothing(tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    many = [StoredTriplet(f"t{i}", f"r{i}.png", "a.png", "b.png", None, i) for i in range(50)]
    store.load_plan(many, ROOT, "plan.csv")
    store.add_annotators({f"u{k}": f"token-of-user-{k:04d}-xx" for k in range(8)})

    def work(k):
        for i in range(50):
            store.record_vote(Vote(f"u{k}-vote-{i:03d}", f"u{k}", f"t{i}", 0, "AB"[i % 2], False))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_votes() == 8 * 50
    store.close()
