"""A run's members at compare time: specs, stacked heads in numpy, and backbones built only when needed.

:class:`MemberSet` evaluates every member of a run on a list of image paths: one backbone pass per view
(cached by image content), the view's head members as one batched numpy product, LoRA members as their
own (merged) backbones. Nothing here imports torch: a backbone is built — torch, timm and its weights
loaded — only when an image is missing from the embedding cache, so a compare over images that are all
cached (a *warm* compare) needs numpy and the cache alone. Each spec records the cache key of the
features it reads (``features_key``); runs saved before it existed build their backbones at load.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ctxsim.data.images import file_digest
from ctxsim.embedding.cache import embed_images
from ctxsim.embedding.distances import l2_normalize
from ctxsim.errors import InputError, Problem
from ctxsim.members.offsets import Memory, split_memory
from ctxsim.members.views import View
from ctxsim.schema import HEAD_KIND, LORA_KIND

#: The members' specs, inside the folder a run gives the members.
SPECS_FILE = "members.json"
#: Where the torch side lives: named, not imported, so that loading a run does not import torch.
_BACKBONES = "ctxsim.members.backbones"
_LORA = "ctxsim.members.member"


@dataclass
class MemberSpec:
    name: str
    kind: str  # "zeroshot", "head" or "lora"
    context: str | None = None  # None: trained on every context (or not trained)
    hidden: int | None = None
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_targets: list[str] | None = None
    view: str | None = None  # View.spec of what the member sees; None: the run's backbone, last layer
    memory: bool = False  # per-image offsets for its training images (members/memory.py)
    loss: str | None = None  # what it was trained with (members/losses.py); None: the config's member.loss
    features_key: str | None = None  # cache key of the backbone features it reads (its view's backbone)


def weights_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.safetensors"


def save_members(folder: Path, specs: list[MemberSpec], weights: dict[str, dict]) -> None:
    # the weights are torch tensors: only training saves, so only training imports torch here
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        if spec.name in weights:
            save_file(weights[spec.name], str(weights_file(folder, spec.name)))
    (folder / SPECS_FILE).write_text(json.dumps([asdict(s) for s in specs], indent=1))


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def build_backbone(name: str, *, pretrained: bool = True):
    """:func:`ctxsim.members.backbones.create_backbone` (torch and the weights), imported when called."""
    return _resolve(f"{_BACKBONES}:create_backbone")(name, pretrained=pretrained)


class LazyBackbone:
    """A backbone known by its cache key, built (``factory(*args)``, a ``"module:function"``) on first use.

    ``embed_images`` reads only ``cache_key`` while every image is cached; anything else it asks for
    (preprocessing, the forward pass) builds the backbone."""

    def __init__(self, name: str, cache_key: str | None, factory: str, *args, **kwargs):
        self.name, self._key = name, cache_key
        self._factory, self._args, self._kwargs = factory, args, kwargs
        self._built = None

    @property
    def built(self):
        if self._built is None:
            self._built = _resolve(self._factory)(*self._args, **self._kwargs)
            if self._key is not None and self._built.cache_key != self._key:  # e.g. another weights package
                raise InputError([Problem(f"backbone {self.name}", f"its weights give cache key {self._built.cache_key!r}, "
                                          f"but the run was trained on {self._key!r}: install those weights or train again")])
        return self._built

    @property
    def is_built(self) -> bool:
        return self._built is not None

    @property
    def cache_key(self) -> str:
        return self._key if self._key is not None else self.built.cache_key

    def __getattr__(self, attr):  # only for attributes not set above: preprocess, feature_dim, to, ...
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.built, attr)

    def __call__(self, x):
        return self.built(x)


#: Up to this many values, GELU's erf is ``math.erf`` element by element (no import); past it, scipy's
#: vectorised erf (its import costs ~0.25 s, more than a warm compare of a few thousand images).
_SMALL_ERF = 1 << 18
_math_erf = np.frompyfunc(math.erf, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    if x.size <= _SMALL_ERF:
        return _math_erf(x).astype(x.dtype)
    from scipy.special import erf

    return erf(x)


class HeadStack:
    """K residual heads (members/heads.py) as numpy arrays: ``(x) -> (K, N, dim)``, the same function as
    :class:`ctxsim.members.heads.StackedHeads` (exact GELU), without torch."""

    def __init__(self, states: list[dict]):
        def stacked(key):
            return np.stack([np.asarray(s[key], dtype=np.float32) for s in states])

        self.w1 = stacked("fc1.weight").transpose(0, 2, 1)  # (K, dim, hidden)
        self.b1 = stacked("fc1.bias")[:, None]  # (K, 1, hidden)
        self.w2 = stacked("fc2.weight").transpose(0, 2, 1)  # (K, hidden, dim)
        self.b2 = stacked("fc2.bias")[:, None]  # (K, 1, dim)
        k, dim, hidden = self.w1.shape
        if self.b1.shape != (k, 1, hidden) or self.w2.shape != (k, hidden, dim) or self.b2.shape != (k, 1, dim):
            raise ValueError(f"head weights of inconsistent shapes: {self.w1.shape}, {self.b1.shape}, {self.w2.shape}, {self.b2.shape}")
        self.dim = dim

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.dim:
            raise ValueError(f"heads expect {self.dim}-dimensional features, got {x.shape[-1]}")
        x = l2_normalize(x)
        pre = x @ self.w1 + self.b1  # (K, N, hidden)
        hidden = 0.5 * pre * (1.0 + _erf(pre * np.float32(1 / math.sqrt(2))))
        return l2_normalize(x[None] + hidden @ self.w2 + self.b2)


@dataclass
class _ViewMembers:
    """The members of one view: its backbone, its zero-shot members and its heads (stacked)."""

    backbone: LazyBackbone
    zeroshot_names: list[str] = field(default_factory=list)
    head_states: list[dict] = field(default_factory=list)
    head_names: list[str] = field(default_factory=list)
    stacked: HeadStack | None = None


class MemberSet:
    """Every member of a run, evaluated together on a list of image paths."""

    def __init__(self, folder: Path, backbone_name: str, *, pretrained: bool = True):
        from safetensors.numpy import load_file

        self.specs = [MemberSpec(**d) for d in json.loads((folder / SPECS_FILE).read_text())]
        primary = View(backbone_name).spec
        self.views: dict[str, _ViewMembers] = {}  # view spec -> its backbone, zero-shot and head members
        self.lora_backbones: dict[str, LazyBackbone] = {}
        self.memories: dict[str, Memory] = {}  # member name -> its known images' offsets
        for spec in self.specs:
            view = spec.view or primary
            if spec.kind == LORA_KIND:
                path = weights_file(folder, spec.name)
                key = None if spec.features_key is None else f"{spec.name}@{lora_weights_tag(spec.features_key, load_file(str(path)))}"
                self.lora_backbones[spec.name] = LazyBackbone(spec.name, key, f"{_LORA}:merged_lora_backbone", backbone_name,
                                                              spec, path, pretrained)
                continue
            if view not in self.views:
                self.views[view] = _ViewMembers(LazyBackbone(view, spec.features_key, f"{_BACKBONES}:create_view",
                                                             View.parse(view), pretrained=pretrained))
            members = self.views[view]
            if spec.kind == HEAD_KIND:
                state, memory = split_memory(load_file(str(weights_file(folder, spec.name))))
                if memory:
                    self.memories[spec.name] = Memory(memory)
                members.head_states.append(state)
                members.head_names.append(spec.name)
            else:
                members.zeroshot_names.append(spec.name)
        for members in self.views.values():
            members.stacked = HeadStack(members.head_states) if members.head_states else None
        self._primary = self.views[primary].backbone if primary in self.views else \
            LazyBackbone(primary, None, f"{_BACKBONES}:create_backbone", backbone_name, pretrained=pretrained)

    @property
    def backbone(self):
        """The run's primary backbone (built on first use)."""
        return self._primary.built

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def head_names(self) -> list[str]:
        """The head members, view by view (each view's heads run as one stacked product)."""
        return [n for members in self.views.values() for n in members.head_names]

    def embed(self, paths: list[str], cache, *, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
        """Every member's normalised embedding of ``paths``: one backbone pass per view (none for cached
        images), then its heads as one batched product."""
        out = {}
        for members in self.views.values():
            feats = embed_images(paths, members.backbone, cache, device=device, progress=progress)
            out.update({name: l2_normalize(feats) for name in members.zeroshot_names})
            if members.stacked is not None:
                out.update(zip(members.head_names, members.stacked(feats)))
        out.update(self._embed_lora(paths, cache, device, progress))
        if self.memories:  # known images get their offsets, looked up by content digest
            digests = [file_digest(p) for p in paths]
            out.update({name: memory.apply(out[name], digests) for name, memory in self.memories.items()})
        return {s.name: out[s.name] for s in self.specs}

    def _embed_lora(self, paths, cache, device, progress) -> dict[str, np.ndarray]:
        if not self.lora_backbones:
            return {}
        if not device.startswith("cuda"):
            return {n: l2_normalize(embed_images(paths, b, cache, device=device, progress=progress)) for n, b in self.lora_backbones.items()}
        import torch

        # One CUDA stream per LoRA member: their backbone passes overlap on the GPU.
        results, streams = {}, {n: torch.cuda.Stream() for n in self.lora_backbones}
        for name, backbone in self.lora_backbones.items():
            with torch.cuda.stream(streams[name]):
                results[name] = embed_images(paths, backbone, cache, device=device, progress=progress)
        torch.cuda.synchronize()
        return {n: l2_normalize(v) for n, v in results.items()}


def lora_weights_tag(backbone_key: str, state: dict) -> str:
    """What identifies a LoRA member's merged weights: its backbone's cache key and a digest of its
    adapters (its merged backbone's cache key is ``NAME@TAG``, see ``merged_lora_backbone``)."""
    digest = hashlib.sha256(b"".join(np.asarray(state[k]).tobytes() for k in sorted(state))).hexdigest()[:16]
    return f"{backbone_key}+lora-{digest}"
