"""A member's memory: per-image offsets for its training images, looked up by content digest."""
from __future__ import annotations

import numpy as np
import torch

from ctxsim.members.config import CE_HINGE, HINGE, MemberConfig
from ctxsim.members.memory import memory_state, train_memory
from ctxsim.members.offsets import DIGESTS, OFFSETS, Memory, split_memory
from ctxsim.members.training import Triplets

D0, D1, D2 = (f"{i:064x}" for i in (1, 2, 3))


def test_memory_moves_only_known_images_by_their_offset():
    memory = Memory(memory_state(torch.tensor([[0.0, 1.0], [0.0, -2.0]]), [D0, D1]))
    assert len(memory) == 2
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    out = memory.apply(emb, [D1, D2, D0])  # digests of the rows, in any order
    s = np.sqrt(0.5)
    np.testing.assert_allclose(out, [[1 / np.sqrt(5), -2 / np.sqrt(5)], [1.0, 0.0], [s, s]], atol=1e-6)
    np.testing.assert_array_equal(emb, [[1.0, 0.0]] * 3)  # the input stays as it was
    assert memory.apply(emb, [D2, D2, D2]) is emb  # no known image: nothing to do


def test_memory_state_keeps_digests_as_raw_bytes_beside_the_head():
    state = {"fc1.weight": torch.zeros(2, 2)} | memory_state(torch.ones(1, 2), [D2])
    assert state[DIGESTS].dtype == torch.uint8 and state[DIGESTS].shape == (1, 32) and state[DIGESTS][0, -1] == 3
    head, memory = split_memory(state)
    assert list(head) == ["fc1.weight"] and set(memory) == {OFFSETS, DIGESTS}
    assert Memory(memory).index == {D2: 0}


def test_offsets_learn_the_training_triplets_and_leave_other_images_at_zero():
    # Image 1 is closer to image 0 than image 2 is, but people said B (image 2): the frozen embedding is wrong.
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.7, 0.7, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    n = 40
    rows = Triplets(np.zeros(n, int), np.ones(n, int), np.full(n, 2), -np.ones(n))
    before = float((emb[0] @ emb[1]) - (emb[0] @ emb[2]))
    assert before > 0  # A looks closer
    cfg = MemberConfig(lr=0.05, epochs=30, patience=30, memory_l2=1e-4, min_val_triplets=1)
    offsets, images, history = train_memory(emb, rows, cfg, progress=False)
    assert images.tolist() == [0, 1, 2] and offsets.shape == (3, 3)  # image 3 was in no triplet: no offset
    moved = torch.nn.functional.normalize(emb[:3] + offsets, dim=-1)
    assert float(moved[0] @ moved[1] - moved[0] @ moved[2]) < 0  # now B is closer, as people said
    assert history["best_val_accuracy"] == 1.0
    # a strong penalty keeps the offsets small: the memory is regularised
    strong, _, _ = train_memory(emb, rows, MemberConfig(lr=0.05, epochs=30, patience=30, memory_l2=10.0, min_val_triplets=1), progress=False)
    assert strong.norm() < 0.1 * offsets.norm()


def test_offsets_train_with_memory_loss_not_the_members_loss():
    # People said A, and the frozen embedding already agrees by more than the hinge's margin (0.05): under a hinge
    # the rows cost nothing and give the offsets no gradient; cross-entropy still costs (and pulls) on every row.
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.45], [0.3, 0.95]]), dim=-1)
    n = 40
    rows = Triplets(np.zeros(n, int), np.ones(n, int), np.full(n, 2), np.ones(n))
    assert float(emb[0] @ emb[1] - emb[0] @ emb[2]) > 0.05
    base = dict(loss=HINGE, lr=0.05, epochs=3, patience=3, min_val_triplets=1)
    offsets, _, hinge = train_memory(emb, rows, MemberConfig(**base), progress=False)
    assert hinge["train_loss"] == [0.0] * 3 and torch.count_nonzero(offsets) == 0
    _, _, ce = train_memory(emb, rows, MemberConfig(**base, memory_loss=CE_HINGE), progress=False)
    assert min(ce["train_loss"]) > 0


def test_held_validation_chooses_epochs_on_rows_the_second_head_never_saw_then_trains_on_all():
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.7, 0.7, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    n = 40
    rows = Triplets(np.zeros(n, int), np.ones(n, int), np.full(n, 2), -np.ones(n))  # people said B: emb is wrong
    seen = []

    def emb_without(train_rows):
        seen.append(len(train_rows))
        return emb

    cfg = MemberConfig(lr=0.05, epochs=30, patience=30, memory_l2=1e-4, min_val_triplets=1, val_fraction=0.25)
    offsets, images, history = train_memory(emb, rows, cfg, progress=False, emb_without=emb_without)
    assert len(seen) == 1 and 0 < seen[0] < n  # the second head trains without the held rows
    assert history["best_epoch"] > 0 and history["refit"]["triplets"] == n  # then every row, for the chosen epochs
    assert len(history["refit"]["train_loss"]) == history["best_epoch"]
    moved = torch.nn.functional.normalize(emb[images] + offsets, dim=-1)
    assert images.tolist() == [0, 1, 2] and float(moved[0] @ moved[1] - moved[0] @ moved[2]) < 0

    # held rows that the offsets cannot improve: zero epochs chosen, and the offsets stay zero
    right = Triplets(rows.ref, rows.a, rows.b, np.ones(n))
    offsets, _, history = train_memory(emb, right, cfg, progress=False, emb_without=lambda train_rows: emb)
    assert history["best_epoch"] == 0 and torch.count_nonzero(offsets) == 0
