"""Member training: triplet tables, the image-held-out validation split, Gram-matrix margins and
early stopping that keeps the best epoch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctxsim.embedding.distances import margins
from ctxsim.members.config import MemberConfig
from ctxsim.members.training import Triplets, _margins, accuracy, fit, split_by_images

DIM = 6


def random_triplets(n_images: int, n_rows: int, seed: int = 0) -> Triplets:
    rng = np.random.default_rng(seed)
    rows = np.stack([rng.choice(n_images, 3, replace=False) for _ in range(n_rows)])
    return Triplets(rows[:, 0], rows[:, 1], rows[:, 2], rng.choice([-1.0, 1.0], n_rows), rng.random(n_rows))


def test_triplets_subset_images_and_touches():
    t = Triplets(np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([6, 7, 0]), np.array([1.0, -1.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    assert len(t) == 3
    np.testing.assert_array_equal(t.images(), np.arange(8))
    np.testing.assert_array_equal(t.touches(np.array([0])), [True, False, True])
    np.testing.assert_array_equal(t.touches(np.array([4, 7])), [False, True, False])
    s = t.subset(np.array([False, True, True]))
    np.testing.assert_array_equal(s.ref, [1, 2])
    np.testing.assert_array_equal(s.weight, [2.0, 3.0])
    assert Triplets(t.ref, t.a, t.b, t.y).subset(np.array([True, False, False])).weight is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_by_images_keeps_validation_images_out_of_training(seed):
    t = random_triplets(30, 400, seed)
    train, val = split_by_images(t, 0.2, np.random.default_rng(seed))
    assert len(train) + len(val) == len(t) and len(train) > 0 and len(val) > 0
    held = np.setdiff1d(t.images(), train.images())
    assert len(held) >= 6  # 20 % of 30 images were held out (others may only be missing by chance)
    # no training triplet names a held-out image; every validation triplet names at least one
    assert not train.touches(held).any()
    assert val.touches(held).all()
    # together they are exactly the input rows
    key = lambda x: sorted(zip(x.ref.tolist(), x.a.tolist(), x.b.tolist(), x.y.tolist()))  # noqa: E731
    assert sorted(key(train) + key(val)) == key(t)


def test_split_by_images_is_seeded():
    t = random_triplets(30, 200)
    a = split_by_images(t, 0.25, np.random.default_rng(7))[1]
    b = split_by_images(t, 0.25, np.random.default_rng(7))[1]
    np.testing.assert_array_equal(a.ref, b.ref)


def test_accuracy():
    assert accuracy(np.array([0.1, -0.2, 0.3, 0.0]), np.array([1.0, -1.0, -1.0, 1.0])) == 0.5
    assert accuracy(np.array([0.1, -0.2]), np.array([1.0, 1.0]), np.array([3.0, 1.0])) == 0.75
    assert np.isnan(accuracy(np.array([]), np.array([])))


def test_gram_margins_equal_row_by_row_margins():
    torch.manual_seed(0)
    table = F.normalize(torch.randn(20, DIM), dim=-1)
    t = random_triplets(20, 50)
    idx = np.arange(10, 40)
    calls = []

    def embed(images):
        calls.append(images)
        return table[images]

    got = _margins(embed, t, idx).numpy()
    want = margins(table.numpy(), t.ref[idx], t.a[idx], t.b[idx])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # each unique image of the batch is embedded once
    assert len(calls) == 1 and len(calls[0]) == len(np.unique(np.r_[t.ref[idx], t.a[idx], t.b[idx]]))


class _Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(DIM))


def test_early_stopping_keeps_the_best_epoch():
    """Validation accuracy follows a script; fit must stop after ``patience`` epochs without a gain and
    hand back the parameters of the best epoch."""
    script = [0.5, 0.7, 0.9, 0.8, 0.9, 0.6, 1.0, 1.0]  # best: epoch 2; epochs 3, 4, 5 do not beat it
    n_val = 10
    val_rows = np.arange(3 * n_val).reshape(n_val, 3) + 100  # images 100..129, three per row
    val = Triplets(val_rows[:, 0], val_rows[:, 1], val_rows[:, 2], np.ones(n_val))
    train = random_triplets(20, 64, seed=3)
    base = F.normalize(torch.randn(20, DIM, generator=torch.Generator().manual_seed(1)), dim=-1)
    probe = _Probe()
    snapshots = []

    def embed(images):
        if torch.is_grad_enabled():  # a training step: a real function of the parameters
            return F.normalize(base[images] + probe.w, dim=-1)
        # validation: the first round(acc * n_val) rows are right, the rest wrong
        snapshots.append(probe.w.detach().clone())
        right = round(script[len(snapshots) - 1] * n_val)
        out = torch.zeros(len(images), 2)
        for i, image in enumerate(images.tolist()):
            row, role = divmod(image - 100, 3)
            close = role == 0 or (role == 1) == (row < right)  # ref, and the candidate judged closer
            out[i] = torch.tensor([1.0, 0.0]) if close else torch.tensor([0.0, 1.0])
        return out

    cfg = MemberConfig(epochs=len(script) - 1, patience=3, batch_size=16, lr=0.05)
    history = fit(probe, embed, train, val, cfg, progress=False)
    assert history["val_accuracy"] == script[:6]  # stopped after epoch 5
    assert history["best_epoch"] == 2 and history["best_val_accuracy"] == 0.9
    assert len(history["train_loss"]) == 5
    # the parameters moved every epoch, and the module is back at epoch 2's
    assert all(not torch.equal(snapshots[i], snapshots[i + 1]) for i in range(5))
    assert torch.equal(probe.w.detach(), snapshots[2])


def test_no_gain_keeps_the_untrained_parameters():
    """Training labels contradict validation labels: the best epoch is 0, the initial parameters."""
    rng = np.random.default_rng(0)
    base = torch.as_tensor(rng.normal(size=(30, DIM)), dtype=torch.float32)
    t = random_triplets(30, 300, seed=4)
    with torch.no_grad():
        y = np.sign(margins(F.normalize(base, dim=-1).numpy(), t.ref, t.a, t.b))
    val = Triplets(t.ref, t.a, t.b, y)  # the untrained embedding is perfect on validation
    train = Triplets(t.ref, t.a, t.b, -y)  # training pulls the other way
    probe = nn.Linear(DIM, DIM)
    with torch.no_grad():
        probe.weight.copy_(torch.eye(DIM))
        probe.bias.zero_()
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    history = fit(probe, lambda idx: F.normalize(probe(base[idx]), dim=-1), train, val,
                  MemberConfig(epochs=6, patience=2, lr=0.05), progress=False)
    assert history["val_accuracy"][0] == 1.0 and history["best_epoch"] == 0
    assert min(history["val_accuracy"][1:]) < 1.0  # training did move the embedding
    assert all(torch.equal(v, before[k]) for k, v in probe.state_dict().items())


def test_fit_learns_a_learnable_task():
    """Human judgements follow the first two feature dimensions; the rest is noise that misleads the
    zero-shot cosine. A linear map on the features trained on some images gets better on others."""
    rng = np.random.default_rng(0)
    signal, noise = rng.normal(size=(60, 2)), rng.normal(size=(60, 10))
    feats = torch.as_tensor(np.hstack([signal, noise]), dtype=torch.float32)
    t = random_triplets(60, 3000, seed=1)
    truth = F.normalize(torch.as_tensor(signal, dtype=torch.float32), dim=-1).numpy()
    t.y = np.sign(margins(truth, t.ref, t.a, t.b))
    train, val = split_by_images(t, 0.3, np.random.default_rng(0))
    probe = nn.Linear(12, 12)
    with torch.no_grad():
        probe.weight.copy_(torch.eye(12))
        probe.bias.zero_()
    history = fit(probe, lambda idx: F.normalize(probe(feats[idx]), dim=-1), train, val,
                  MemberConfig(epochs=15, lr=0.02, batch_size=512, max_steps_per_epoch=5), progress=False)
    assert history["best_epoch"] > 0
    assert history["best_val_accuracy"] > history["val_accuracy"][0] + 0.1, history["val_accuracy"]
    assert history["train_loss"][-1] < history["train_loss"][0]
