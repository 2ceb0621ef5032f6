"""Members: head and LoRA training, saving, and evaluating every member of a run together
(heads as one stacked product, LoRA members as merged backbones) on the tiny ``test_tiny`` backbone."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctxsim.data.images import load_image
from ctxsim.embedding.cache import EmbeddingCache, embed_images
from ctxsim.embedding.distances import l2_normalize, margins
from ctxsim.members.backbones import create_backbone
from ctxsim.members.config import MemberConfig
from ctxsim.members.heads import ResidualHead
from ctxsim.members.inference import MemberSet, MemberSpec, save_members
from ctxsim.members.member import _split, head_state, lora_state, train_head, train_lora
from ctxsim.members.training import Triplets
from ctxsim.schema import GLOBAL, ZEROSHOT, context_member_name

N_IMAGES = 10


def all_triplets(n: int, y_of) -> Triplets:
    rows = np.array([(r, a, b) for r in range(n) for a in range(n) for b in range(a + 1, n) if r not in (a, b)])
    ref, a, b = rows.T
    return Triplets(ref, a, b, y_of(ref, a, b))


@pytest.fixture
def images(make_images):
    return [str(p) for p in make_images(N_IMAGES, size=(40, 40))]


@pytest.fixture
def tiny():
    return create_backbone("test_tiny")


def test_context_member_name():
    assert context_member_name("shoes") == "context-shoes" and (ZEROSHOT, GLOBAL) == ("zeroshot", "global")


def test_split_holds_out_images_and_falls_back_when_validation_is_too_small():
    t = all_triplets(12, lambda r, a, b: np.ones(len(r)))
    train, val = _split(t, MemberConfig(val_fraction=0.25, min_val_triplets=20), seed=0)
    held = np.setdiff1d(t.images(), train.images())
    assert len(held) == 3 and not train.touches(held).any() and val.touches(held).all()
    assert len(train) + len(val) == len(t)
    # too few validation triplets: early stopping watches the training triplets themselves
    train, val = _split(t, MemberConfig(val_fraction=0.25, min_val_triplets=len(t)), seed=0)
    assert train is t and val is t


def signal_in_noise(n: int = 40) -> tuple[torch.Tensor, Triplets, MemberConfig]:
    """Judgements follow the first two of twelve feature dimensions; a fifth of all triplets."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(n, 2))
    feats = torch.as_tensor(np.hstack([signal, 1.5 * rng.normal(size=(n, 10))]), dtype=torch.float32)
    truth = l2_normalize(signal)
    t = all_triplets(n, lambda r, a, b: np.sign(margins(truth, r, a, b)))
    t = t.subset(np.random.default_rng(1).random(len(t)) < 0.2)
    cfg = MemberConfig(hidden=32, epochs=25, lr=1e-2, batch_size=1024, max_steps_per_epoch=4, val_fraction=0.25, patience=5)
    return feats, t, cfg


def test_train_head_learns_on_held_out_images():
    """Judgements follow the first two feature dimensions; ten noise dimensions mislead the zero-shot
    cosine. The head's validation accuracy (triplets naming held-out images) must rise clearly."""
    feats, t, cfg = signal_in_noise()
    head, history = train_head(feats, t, cfg, seed=0, progress=False)
    assert isinstance(head, ResidualHead) and head.fc1.out_features == 32
    assert history["best_val_accuracy"] >= history["val_accuracy"][0] + 0.1, history["val_accuracy"]
    with torch.no_grad():
        trained = margins(head(feats).numpy(), t.ref, t.a, t.b)
    zero_shot = margins(l2_normalize(feats.numpy()), t.ref, t.a, t.b)
    assert np.mean(np.sign(trained) == t.y) > np.mean(np.sign(zero_shot) == t.y) + 0.1


def test_refit_trains_a_fresh_head_on_every_triplet_for_the_chosen_epochs():
    """The refit sees the validation images' triplets too: it must order them better than the early-stopped
    head that never trained on them, after exactly as many epochs as early stopping chose."""
    feats, t, cfg = signal_in_noise()
    stopped, history = train_head(feats, t, cfg, seed=0, progress=False)
    refitted, refit_history = train_head(feats, t, cfg, seed=0, progress=False, refit=True)
    assert "refit" not in history and history["best_epoch"] > 0
    assert len(refit_history["refit"]["train_loss"]) == refit_history["best_epoch"] == history["best_epoch"]
    assert refit_history["refit"]["triplets"] == len(t)
    _, val = _split(t, cfg, seed=0)
    with torch.no_grad():
        on_val = [np.mean(np.sign(margins(h(feats).numpy(), val.ref, val.a, val.b)) == val.y) for h in (stopped, refitted)]
    assert on_val[1] > on_val[0], on_val


def test_head_members_save_and_evaluate_together(tmp_path, images, tiny):
    cache = EmbeddingCache()
    feats = embed_images(images, tiny, cache, progress=False)
    heads = {}
    for k, name in enumerate([GLOBAL, context_member_name("a")]):
        torch.manual_seed(k)
        heads[name] = ResidualHead(tiny.feature_dim, 16)
        with torch.no_grad():
            for p in heads[name].parameters():
                p.add_(0.2 * torch.randn_like(p))
    specs = [MemberSpec(ZEROSHOT, "zeroshot"), MemberSpec(GLOBAL, "head", hidden=16),
             MemberSpec(context_member_name("a"), "head", "a", hidden=16)]
    save_members(tmp_path, specs, {n: head_state(h) for n, h in heads.items()})
    assert json.loads((tmp_path / "members.json").read_text()) == [asdict(s) for s in specs]
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["context-a.safetensors", "global.safetensors"]

    members = MemberSet(tmp_path, "test_tiny")
    assert members.names == [ZEROSHOT, GLOBAL, "context-a"] and members.head_names == [GLOBAL, "context-a"]
    out = members.embed(images, cache, progress=False)
    assert list(out) == members.names
    np.testing.assert_allclose(out[ZEROSHOT], l2_normalize(feats), rtol=1e-6)
    for name, head in heads.items():
        with torch.no_grad():
            np.testing.assert_allclose(out[name], head(torch.as_tensor(feats)).numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(out[GLOBAL] - out["context-a"]).max() > 1e-2


def pixel_table(paths, backbone) -> torch.Tensor:
    transform = backbone.preprocess.transform()
    return torch.stack([transform(load_image(p)) for p in paths])


def test_lora_member_trains_saves_and_reloads_merged(tmp_path, images, tiny):
    pixels = pixel_table(images, tiny)
    with torch.no_grad():
        zero = F.normalize(tiny(pixels), dim=-1).numpy()
    # labels that contradict the zero-shot ordering on every other row: there is something to learn
    t = all_triplets(N_IMAGES, lambda r, a, b: np.sign(margins(zero, r, a, b)) * np.where(np.arange(len(r)) % 2, 1, -1))
    cfg = MemberConfig(kind="lora", lora_rank=4, lora_alpha=8, epochs=4, lr=2e-2, batch_size=512, patience=4,
                       min_val_triplets=10_000)  # too few images to hold any out: validate on the training rows
    model, history = train_lora("test_tiny", pixels, t, cfg, seed=0, progress=False)
    assert history["best_epoch"] > 0 and history["best_val_accuracy"] > history["val_accuracy"][0]

    state = lora_state(model)
    # adapters sit on the targeted convolutions only, and training moved them away from the identity
    assert state and all("conv_pwl" in k and "lora_" in k for k in state)
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in state.items())
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    with torch.no_grad():
        trained = F.normalize(model(pixels), dim=-1).numpy()
    assert np.abs(trained - zero).max() > 1e-3

    # a second, different LoRA member: merged backbones must not share cached embeddings
    other, _ = train_lora("test_tiny", pixels, t.subset(np.arange(len(t)) % 3 == 0), cfg, seed=1, progress=False)
    lora = dict(lora_rank=4, lora_alpha=8, lora_targets=["conv_pwl"])
    specs = [MemberSpec(ZEROSHOT, "zeroshot"), MemberSpec(GLOBAL, "lora", **lora), MemberSpec("context-x", "lora", "x", **lora)]
    save_members(tmp_path, specs, {GLOBAL: state, "context-x": lora_state(other)})
    members = MemberSet(tmp_path, "test_tiny")
    assert members.head_names == [] and sorted(members.lora_backbones) == ["context-x", GLOBAL]
    cache = EmbeddingCache()
    out = members.embed(images, cache, progress=False)
    np.testing.assert_allclose(out[ZEROSHOT], zero, atol=1e-5)
    np.testing.assert_allclose(out[GLOBAL], trained, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(out["context-x"], F.normalize(other(pixels), dim=-1).numpy(), atol=1e-5)
    # merged: plain timm modules, no adapters left; a second call answers from the cache identically
    assert not any("lora_" in n for n, _ in members.lora_backbones[GLOBAL].named_modules())
    again = MemberSet(tmp_path, "test_tiny").embed(images, cache, progress=False)
    assert all(np.array_equal(again[n], out[n]) for n in members.names)


def test_mixed_head_and_lora_members(tmp_path, images, tiny):
    """A run may mix kinds: every member comes back in spec order with its own embeddings."""
    pixels = pixel_table(images, tiny)
    t = all_triplets(N_IMAGES, lambda r, a, b: np.where((r + a + b) % 2, 1.0, -1.0))
    lcfg = MemberConfig(kind="lora", lora_rank=2, lora_alpha=4, epochs=1, lr=1e-2, min_val_triplets=10_000)
    model, _ = train_lora("test_tiny", pixels, t, lcfg, progress=False)
    cache = EmbeddingCache()
    feats = torch.as_tensor(embed_images(images, tiny, cache, progress=False))
    head, _ = train_head(feats, t, MemberConfig(hidden=8, epochs=2, lr=1e-2, min_val_triplets=10_000), progress=False)
    specs = [MemberSpec("lora-m", "lora", lora_rank=2, lora_alpha=4, lora_targets=["conv_pwl"]),
             MemberSpec(ZEROSHOT, "zeroshot"), MemberSpec("head-m", "head", hidden=8)]
    save_members(tmp_path, specs, {"lora-m": lora_state(model), "head-m": head_state(head)})
    out = MemberSet(tmp_path, "test_tiny").embed(images, cache, progress=False)
    assert list(out) == ["lora-m", ZEROSHOT, "head-m"]
    with torch.no_grad():
        np.testing.assert_allclose(out["lora-m"], F.normalize(model(pixels), dim=-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(out["head-m"], head(feats).numpy(), rtol=1e-5, atol=1e-6)


def test_a_member_with_no_triplets_stays_the_zero_shot_backbone():
    """An out-of-fold copy of a small context's member may be left with no triplet at all."""
    none = np.array([], dtype=int)
    feats = torch.randn(5, 8)
    head, history = train_head(feats, Triplets(none, none, none, np.array([])), MemberConfig(hidden=4), progress=False)
    assert history["best_epoch"] == 0 and history["train_loss"] == []
    with torch.no_grad():
        torch.testing.assert_close(head(feats), F.normalize(feats, dim=-1))


def test_a_pull_keeps_a_head_near_its_starting_weights():
    """Fine-tuning from given weights: the pull toward them (MemberConfig.pull) keeps the head closer."""
    torch.manual_seed(0)
    features = torch.randn(40, 16)
    rng = np.random.default_rng(0)
    ref, a, b = (rng.integers(0, 40, 400) for _ in range(3))
    triplets = Triplets(ref, a, b, np.where(rng.random(400) < 0.5, 1.0, -1.0))
    start, _ = train_head(features, triplets, MemberConfig(hidden=8, epochs=3, patience=99, min_val_triplets=10**6))
    init = head_state(start)

    def drift(pull: float) -> float:
        cfg = MemberConfig(hidden=8, epochs=5, patience=99, lr=0.01, pull=pull, min_val_triplets=10**6)
        head, _ = train_head(features, triplets, cfg, init=init, seed=1)
        return float(sum(((v - init[k]) ** 2).sum() for k, v in head_state(head).items()))

    assert drift(100.0) < 0.5 * drift(0.0)
