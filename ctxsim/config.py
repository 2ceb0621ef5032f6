"""Training configuration: dataclasses with named defaults, a TOML file, and ``--set`` overrides.

TOML layout: top-level keys of :class:`TrainConfig`, and tables ``[contexts]``, ``[member]`` and
``[ensemble]`` for the nested sections, e.g.::

    backbone = "efficientnet_lite0"
    folds = 5
    [member]
    kind = "head"
    epochs = 30
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ctxsim.contexts.config import ContextConfig
from ctxsim.ensemble.config import EnsembleConfig
from ctxsim.members.config import MemberConfig

#: Extra views of a default run: the middle layer of the backbone, EfficientNet-Lite1 and -Lite2 (what the
#: accuracy benchmark, benchmarks/accuracy.py, showed to help on new images; Lite2 since the loss mix: +0.23
#: points on materials with a new image, every draw, for 1.13x the training time on all of the shared data).
DEFAULT_VIEWS = ("mid", "efficientnet_lite1", "efficientnet_lite2")
#: Triplet folds of a default run: known-image out-of-fold margins for the stacker (with member.memory,
#: +1.2 points on known shoe triplets in benchmarks/accuracy.py; 2 folds keep training under 5 minutes).
DEFAULT_TRIPLET_FOLDS = 2
#: How a row with votes (``votes_a``/``votes_b``) weighs in training: "majority" (every row with a majority
#: weighs 1) or "margin" (by its lead, |votes_a - votes_b|, scaled to the same total); tied rows weigh 0 under
#: both. "margin" measured no better (benchmarks/README.md).
VOTES_MAJORITY, VOTES_MARGIN = "majority", "margin"
VOTE_WEIGHTING_CHOICES = (VOTES_MAJORITY, VOTES_MARGIN)


@dataclass
class TrainConfig:
    backbone: str = "efficientnet_lite0"  # the primary view: contexts, the zero-shot baseline and LoRA members
    # More views, each with members of its own (members/views.py): "mid" is the backbone's middle layer, "grid"
    # its last feature map pooled over a 3 x 3 grid (not in the default: +0.15 points on new shoe images for 1.6x
    # the training time, benchmarks/README.md).
    views: list[str] = field(default_factory=lambda: list(DEFAULT_VIEWS))
    seed: int = 0
    folds: int = 5  # image folds: out-of-fold margins and image-grouped validation of the combiner
    # Triplet folds (ctxsim/train/regimes.py): a second set of out-of-fold margins over row folds, where
    # images stay known, and seen_* features for the stacker. 0: off (image folds only).
    triplet_folds: int = DEFAULT_TRIPLET_FOLDS
    vote_weighting: str = VOTES_MAJORITY
    contexts: ContextConfig = field(default_factory=ContextConfig)
    member: MemberConfig = field(default_factory=MemberConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)

    def __post_init__(self):
        if self.vote_weighting not in VOTE_WEIGHTING_CHOICES:
            raise ValueError(f"vote_weighting: expected one of {', '.join(VOTE_WEIGHTING_CHOICES)}, got {self.vote_weighting!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return _build(cls, data, "config")


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a table of settings, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value, hint, where: str):
    """``value`` as the field's declared type (``int | None`` takes ``none``; lists take ``a,b``)."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None or isinstance(value, str) and value.lower() == "none":
            return None
        (hint,) = [a for a in args if a is not type(None)]
    kind = typing.get_origin(hint) or hint
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if kind is list:
        if isinstance(value, str):
            return value.split(",")
        if isinstance(value, list):
            return value
        raise ValueError(f"{where}: expected list, got {value!r}")
    if isinstance(value, (bool, list, dict)):
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{where}: expected int, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}") from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the TOML file, then ``section.key=value`` overrides (``member.epochs=10``)."""
    data: dict = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. member.epochs=10")
        *sections, leaf = key.strip().split(".")
        target = data
        for s in sections:
            target = target.setdefault(s, {})
        target[leaf] = _parse_value(value.strip())
    return TrainConfig.from_dict(data)


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
