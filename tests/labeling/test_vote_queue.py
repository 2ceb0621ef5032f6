import itertools
from pathlib import Path

import pytest

from ctxsim.labeling.vote_queue import Queue, QueueSettings, answer_for, is_control, is_swapped, unit_hash
from ctxsim.labeling.store import StoredTriplet, Vote, VoteStore

_vote_ids = itertools.count()
PLAN = [StoredTriplet(f"t{i}", f"r{i}.png", f"a{i}.png", f"b{i}.png", None, i) for i in range(6)]


@pytest.fixture
def store(tmp_path):
    s = VoteStore(tmp_path / "votes.sqlite")
    s.load_plan(PLAN, Path("/root"), "plan.csv")
    s.add_annotators({"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"})
    yield s
    s.close()


def answer(store, queue, who, choice="left"):
    """Answer whatever ``who`` is shown next; returns the item."""
    item = queue.next_item(who)
    store.record_vote(Vote(f"vote-{next(_vote_ids):06d}", who, item.triplet.id, item.presentation,
                           answer_for(choice, item.swapped), item.swapped))
    return item


def test_answer_maps_the_clicked_side_to_the_triplet():
    assert [answer_for(c, False) for c in ("left", "right", "skip")] == ["A", "B", "skip"]
    assert [answer_for(c, True) for c in ("left", "right", "skip")] == ["B", "A", "skip"]


def test_sides_and_controls_are_stable_and_the_repeat_is_swapped():
    assert unit_hash("x", "y") == unit_hash("x", "y") and 0 <= unit_hash("x") < 1
    sides = [is_swapped("alice", f"t{i}", 0) for i in range(200)]
    assert 60 < sum(sides) < 140  # about half the first showings put A on the right
    assert all(is_swapped("alice", f"t{i}", 1) != s for i, s in enumerate(sides))
    controls = sum(is_control("alice", f"t{i}", 0.1) for i in range(2000))
    assert 140 < controls < 260
    assert not any(is_control("alice", f"t{i}", 0.0) for i in range(100))
    assert all(is_control("alice", f"t{i}", 1.0) for i in range(100))


def test_every_triplet_once_then_done_without_controls(store):
    queue = Queue(store, PLAN, QueueSettings(control_rate=0.0))
    assert queue.progress("alice").total == 6
    seen = [answer(store, queue, "alice").triplet.id for _ in range(6)]
    assert sorted(seen) == sorted(t.id for t in PLAN)
    assert queue.next_item("alice") is None
    assert (queue.progress("alice").done, queue.progress("alice").total) == (6, 6)


def test_triplets_with_fewer_votes_come_first(store):
    queue = Queue(store, PLAN, QueueSettings(control_rate=0.0))
    first_of_bob = [answer(store, queue, "bob").triplet.id for _ in range(4)]
    alice = [answer(store, queue, "alice").triplet.id for _ in range(2)]
    assert set(alice) == {t.id for t in PLAN} - set(first_of_bob)


def test_skipped_triplets_are_not_shown_again_and_do_not_count_as_votes(store):
    queue = Queue(store, PLAN, QueueSettings(control_rate=0.0))
    skipped = answer(store, queue, "alice", "skip").triplet.id
    assert store.vote_counts() == {}
    rest = [answer(store, queue, "alice").triplet.id for _ in range(5)]
    assert skipped not in rest and queue.next_item("alice") is None


def test_controls_come_back_swapped_after_the_gap_and_at_the_end(store):
    queue = Queue(store, PLAN, QueueSettings(control_rate=1.0, control_gap=2))
    assert queue.progress("alice").total == 12  # every triplet twice
    shown = [answer(store, queue, "alice") for _ in range(4)]
    assert [i.presentation for i in shown] == [0, 0, 0, 1]
    assert shown[3].triplet == shown[0].triplet and shown[3].swapped != shown[0].swapped
    assert (shown[3].left, shown[3].right) == (shown[0].right, shown[0].left)
    shown += [answer(store, queue, "alice") for _ in range(8)]
    assert [i.presentation for i in shown] == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]  # 2 answers between showings
    assert queue.next_item("alice") is None and queue.progress("alice").done == 12


def test_a_skipped_control_is_not_repeated(store):
    queue = Queue(store, PLAN, QueueSettings(control_rate=1.0, control_gap=0))
    first = answer(store, queue, "alice", "skip")
    assert queue.next_item("alice").presentation == 0
    assert queue.progress("alice").total == 1 + 5 * 2
    later = [answer(store, queue, "alice") for _ in range(10)]
    assert [i.presentation for i in later] == [0, 1] * 5 and first.triplet.id not in {i.triplet.id for i in later}
    assert queue.next_item("alice") is None


def test_max_votes_stops_serving_well_covered_triplets(store):
    queue = Queue(store, PLAN, QueueSettings(control_rate=0.0, max_votes=1))
    bob = {answer(store, queue, "bob").triplet.id for _ in range(4)}
    alice = []
    while (item := queue.next_item("alice")) is not None:
        alice.append(answer(store, queue, "alice").triplet.id)
    assert sorted(alice) == sorted({t.id for t in PLAN} - bob)


@pytest.mark.parametrize("bad", [dict(control_rate=1.5), dict(control_gap=-1), dict(max_votes=0)])
def test_settings_are_checked(bad):
    with pytest.raises(ValueError):
        QueueSettings(**bad)
