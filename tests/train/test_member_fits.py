"""Member fits: which fits of a member train again on all their triplets (``member.refit``), with which loss."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.config import load_config
from ctxsim.members.inference import MemberSpec
from ctxsim.members.offsets import OFFSETS
from ctxsim.members.training import Triplets
from ctxsim.schema import HEAD_KIND
from ctxsim.train import member_fits
from ctxsim.train.member_fits import FitJob, MemberTrainer

N_IMAGES = 16


def trainer_and_jobs(refit: str) -> tuple[MemberTrainer, list[FitJob]]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(N_IMAGES, 6)).astype(np.float32)
    rows = rng.integers(0, N_IMAGES, size=(400, 3))
    rows = rows[(rows[:, 0] != rows[:, 1]) & (rows[:, 0] != rows[:, 2]) & (rows[:, 1] != rows[:, 2])]
    ref, a, b = rows.T
    triplets = Triplets(ref, a, b, np.where(features[ref, 0] * (features[a, 0] - features[b, 0]) > 0, 1.0, -1.0))
    cfg = load_config(None, ["member.hidden=8", "member.epochs=4", "member.patience=4", "member.min_val_triplets=1",
                             f"member.refit={refit}"])
    spec = MemberSpec("global", HEAD_KIND, hidden=8, view="v")
    trainer = MemberTrainer(cfg, {"v": features}, paths=[], device="cpu", progress=False)
    held = np.arange(4)
    jobs = [FitJob(spec, None, triplets, 0), FitJob(spec, 0, triplets.subset(~triplets.touches(held)), 1)]
    return trainer, jobs


@pytest.mark.parametrize(("refit", "refitted"), [("none", [False, False]), ("run", [True, False]), ("all", [True, True])])
def test_refit_applies_to_the_runs_members_or_to_every_copy(refit, refitted):
    trainer, jobs = trainer_and_jobs(refit)
    histories = [trainer.fit(job)[2] for job in jobs]
    assert ["refit" in h for h in histories] == refitted
    for h in histories:
        if "refit" in h:  # as many epochs as early stopping chose, no validation of its own
            assert len(h["refit"]["train_loss"]) == h["best_epoch"]


def test_a_member_trains_with_the_loss_its_spec_names(monkeypatch):
    trainer, (job, _) = trainer_and_jobs("none")
    seen = []

    def spy(features, triplets, cfg, **kw):
        seen.append(cfg.loss)
        return real(features, triplets, cfg, **kw)

    real = member_fits.train_head
    monkeypatch.setattr(member_fits, "train_head", spy)
    trainer.fit(job)  # the spec names no loss: the config's
    trainer.fit(FitJob(MemberSpec("global@v", HEAD_KIND, hidden=8, view="v", loss="ce_hinge"), None, job.triplets, 0))
    assert seen == ["hinge", "ce_hinge"]
    assert trainer.cfg.member.loss == "hinge"  # the config itself is left as it was


@pytest.mark.parametrize(("validation", "heads"), [("shared", 1), ("held", 2)])
def test_held_memory_validation_trains_a_second_head_without_the_held_rows(monkeypatch, validation, heads):
    trainer, (job, _) = trainer_and_jobs("run")
    trainer.cfg.member.memory_validation = validation
    sizes = []

    def spy(features, triplets, cfg, **kw):
        sizes.append(len(triplets))
        return real(features, triplets, cfg, **kw)

    real = member_fits.train_head
    monkeypatch.setattr(member_fits, "train_head", spy)
    trainer.digests = lambda: [f"{i:064x}" for i in range(N_IMAGES)]
    memory_spec = MemberSpec("global", HEAD_KIND, hidden=8, view="v", memory=True)
    state, _, history = trainer.fit(FitJob(memory_spec, None, job.triplets, 0))
    assert len(sizes) == heads and sizes[0] == len(job.triplets)
    if heads == 2:  # the second head never saw the rows the memory's epochs are chosen on
        assert sizes[1] < len(job.triplets) and history["memory"]["refit"]["triplets"] == len(job.triplets)
    assert OFFSETS in state
