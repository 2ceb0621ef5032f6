"""What an annotator is shown next, and how far along they are.

- Fresh triplets come first-needed-first: the one with the fewest A/B votes so far (from anyone),
  ties broken by an order of the annotator's own, so annotators working at the same time see
  different triplets and votes spread evenly. Each annotator answers each triplet once.
- Controls measure consistency: a share (``control_rate``) of each annotator's triplets, chosen
  by a hash of (annotator, triplet), is shown a second time with A and B swapped, once at least
  ``control_gap`` other answers have been given since the first showing (or at the end).
- Which side a candidate appears on at the first showing is also drawn per (annotator, triplet),
  so a side preference shows up as inconsistency rather than as a bias in the labels.

Everything is derived from the stored votes and stable hashes, so a restarted server carries on
where it stopped.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ctxsim.labeling.store import StoredTriplet, VoteStore

#: Share of an annotator's triplets that are repeated, swapped, as consistency controls.
DEFAULT_CONTROL_RATE = 0.1
#: Other answers given before a control's repeat is shown (so it is not recognised at once).
DEFAULT_CONTROL_GAP = 3
_HASH_BYTES = 8
_HASH_SCALE = float(1 << (8 * _HASH_BYTES))


@dataclass(frozen=True)
class QueueSettings:
    control_rate: float = DEFAULT_CONTROL_RATE
    control_gap: int = DEFAULT_CONTROL_GAP
    #: Stop showing a triplet to new annotators once it has this many A/B votes (None: no limit).
    max_votes: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.control_rate <= 1.0:
            raise ValueError(f"control_rate must lie in [0, 1], got {self.control_rate}")
        if self.control_gap < 0:
            raise ValueError(f"control_gap must be >= 0, got {self.control_gap}")
        if self.max_votes is not None and self.max_votes < 1:
            raise ValueError(f"max_votes must be >= 1, got {self.max_votes}")


@dataclass(frozen=True)
class Item:
    """One showing: the triplet, which presentation, and whether A is shown on the right."""

    triplet: StoredTriplet
    presentation: int
    swapped: bool

    @property
    def left(self) -> str:
        return self.triplet.b if self.swapped else self.triplet.a

    @property
    def right(self) -> str:
        return self.triplet.a if self.swapped else self.triplet.b


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


def unit_hash(*parts: str) -> float:
    """A stable number in [0, 1) for ``parts``."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=_HASH_BYTES).digest()
    return int.from_bytes(digest, "big") / _HASH_SCALE


def is_control(annotator: str, triplet_id: str, rate: float) -> bool:
    return unit_hash("control", annotator, triplet_id) < rate


def is_swapped(annotator: str, triplet_id: str, presentation: int) -> bool:
    """A shown on the right? Drawn for the first showing; the control repeat is the opposite."""
    first = unit_hash("side", annotator, triplet_id) < 0.5
    return first != (presentation == 1)


def answer_for(choice: str, swapped: bool) -> str:
    """The triplet's ``A``/``B`` (or ``skip``) for a click on the ``left``/``right`` image."""
    if choice == "skip":
        return "skip"
    return "A" if (choice == "left") != swapped else "B"


class Queue:
    """Next item and progress per annotator, over one store and plan."""

    def __init__(self, store: VoteStore, triplets: list[StoredTriplet], settings: QueueSettings = QueueSettings()):
        self.store, self.settings = store, settings
        self.triplets = {t.id: t for t in triplets}

    def _state(self, annotator: str):
        answers = self.store.answers_of(annotator)
        first = {tid: (i, ans) for i, (tid, pres, ans) in enumerate(answers) if pres == 0}
        repeated = {tid for tid, pres, _ in answers if pres == 1}
        pending = [  # controls answered once, waiting for their swapped repeat, oldest first
            (i, tid) for tid, (i, ans) in first.items()
            if ans != "skip" and tid not in repeated and tid in self.triplets and is_control(annotator, tid, self.settings.control_rate)
        ]
        pending.sort()
        return answers, first, pending

    def _fresh(self, annotator: str, first: dict) -> list[str]:
        counts = self.store.vote_counts()
        cap = self.settings.max_votes
        fresh = [tid for tid in self.triplets if tid not in first and (cap is None or counts.get(tid, 0) < cap)]
        fresh.sort(key=lambda tid: (counts.get(tid, 0), unit_hash("order", annotator, tid)))
        return fresh

    def view(self, annotator: str) -> tuple[Item | None, Progress]:
        """The next item to show (None when nothing is left) and the annotator's progress."""
        answers, first, pending = self._state(annotator)
        fresh = self._fresh(annotator, first)
        future_controls = sum(is_control(annotator, tid, self.settings.control_rate) for tid in fresh)
        progress = Progress(done=len(answers), total=len(answers) + len(fresh) + len(pending) + future_controls)
        due = [tid for i, tid in pending if len(answers) - 1 - i >= self.settings.control_gap]
        if due:
            return self._item(annotator, due[0], 1), progress
        if fresh:
            return self._item(annotator, fresh[0], 0), progress
        if pending:  # nothing fresh is left: repeat the waiting controls without the gap
            return self._item(annotator, pending[0][1], 1), progress
        return None, progress

    def next_item(self, annotator: str) -> Item | None:
        return self.view(annotator)[0]

    def progress(self, annotator: str) -> Progress:
        return self.view(annotator)[1]

    def _item(self, annotator: str, triplet_id: str, presentation: int) -> Item:
        return Item(self.triplets[triplet_id], presentation, is_swapped(annotator, triplet_id, presentation))
