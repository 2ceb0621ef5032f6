"""The image pool of a labeling plan: which images lie under the root, how they group, and random
triplets drawn from them without repeats.

Images group by their top-level folder under the root (``ROOT/shoes/x.jpg`` is in group
``shoes``); images directly in the root form one unnamed group. Candidates are drawn from the
reference's own group, so a shoe is never judged against a metal. A triplet is never
``ref == a``, ``ref == b`` or ``a == b``, and a plan never holds the same reference and pair of
candidates twice (in either order).
"""
from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ctxsim.data.images import image_problem
from ctxsim.errors import InputError, Problem

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
#: Group of the images that lie directly in the root (they get no context name).
ROOT_GROUP = ""
#: Rejection sampling is used while the wanted triplets fill at most this share of the possible
#: ones; beyond it every possible triplet is listed and shuffled (rejection would slow down).
MAX_REJECTION_FILL = 0.5
_IMAGE_CHECK_THREADS = 8
#: Most unreadable images named one by one in the log.
_MAX_LISTED_BAD = 10

#: ``(ref, a, b)`` image paths relative to the root.
Triplet = tuple[str, str, str]


def triplet_key(ref: str, a: str, b: str) -> tuple[str, str, str]:
    """The same reference and pair of candidates, whichever side each candidate is on."""
    return (ref, min(a, b), max(a, b))


def list_images(root: str | os.PathLike, *, check: bool = True) -> list[str]:
    """Image files under ``root`` (recursive, hidden files and folders left out), as sorted
    POSIX paths relative to ``root``. Only files whose real path (links followed) lies under the
    real root are listed; links to folders are not walked. With ``check``, images that do not
    load are left out."""
    root = Path(root)
    if not root.is_dir():
        raise InputError([Problem(str(root), "image folder not found")])
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    found = _inside_real_root(root, sorted(found))
    if check:
        with ThreadPoolExecutor(_IMAGE_CHECK_THREADS) as pool:
            reasons = list(pool.map(image_problem, [root / p for p in found]))
        bad = [(p, r) for p, r in zip(found, reasons) if r is not None]
        for p, r in bad[:_MAX_LISTED_BAD]:
            log.warning("%s: %s; left out of the plan", root / p, r)
        if len(bad) > _MAX_LISTED_BAD:
            log.warning("... and %d more unreadable images left out", len(bad) - _MAX_LISTED_BAD)
        found = [p for p, r in zip(found, reasons) if r is None]
    return found


def _inside_real_root(root: Path, paths: list[str]) -> list[str]:
    real_root = root.resolve(strict=True)
    inside = []
    for p in paths:
        try:
            real = (root / p).resolve(strict=True)  # a link to a link: followed to its end
        except (OSError, RuntimeError):  # dangling, or a loop of links
            real = None
        if real is not None and real.is_relative_to(real_root) and real.is_file():
            inside.append(p)
        else:
            log.warning("%s links to %s, not a file under the image root %s; left out of the plan", root / p, real, real_root)
    return inside


def group_of(path: str) -> str:
    """The top-level folder of a root-relative path (``ROOT_GROUP`` for a file in the root)."""
    head, sep, _ = path.partition("/")
    return head if sep else ROOT_GROUP


@dataclass
class ImagePool:
    """Images grouped for candidate drawing, and the triplets that must not be drawn again."""

    images: Sequence[str]
    exclude: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self):
        self.groups: dict[str, list[str]] = {}
        for p in self.images:
            self.groups.setdefault(group_of(p), []).append(p)

    def candidates(self, ref: str) -> list[str]:
        return [p for p in self.groups[group_of(ref)] if p != ref]

    def usable_refs(self, refs: Iterable[str]) -> list[str]:
        """References whose group holds at least two other images (a pair of candidates)."""
        return [r for r in refs if len(self.groups.get(group_of(r), ())) >= 3]

    def capacity(self, refs: Iterable[str]) -> int:
        """How many distinct triplets (candidate order ignored) have one of ``refs`` as reference."""
        return sum(math.comb(len(self.groups[group_of(r)]) - 1, 2) for r in self.usable_refs(refs))

    def sample(self, n: int, rng: random.Random, refs: Iterable[str] | None = None, taken: set | None = None) -> list[Triplet]:
        """Up to ``n`` new random triplets with a reference from ``refs`` (default: every image).

        References are drawn uniformly, candidates uniformly from the reference's group, the
        candidate order at random. ``taken`` (updated) holds keys already used by the caller; keys
        in ``exclude`` are never drawn. Fewer than ``n`` come back only when no more exist.
        """
        refs = self.usable_refs(self.images if refs is None else refs)
        taken = set() if taken is None else taken
        blocked = taken | self.exclude
        ref_set = set(refs)
        free = self.capacity(refs) - sum(1 for k in blocked if k[0] in ref_set)
        if n <= 0 or free <= 0:
            return []
        out: list[Triplet] = []
        if n <= free * MAX_REJECTION_FILL:
            while len(out) < n:
                ref = rng.choice(refs)
                a, b = rng.sample(self.groups[group_of(ref)], 2)  # O(1), unlike listing the candidates
                key = triplet_key(ref, a, b)
                if ref not in (a, b) and key not in blocked:
                    blocked.add(key)
                    taken.add(key)
                    out.append((ref, a, b))
        else:
            every = [(r, a, b) for r in refs for a, b in _pairs(self.candidates(r)) if triplet_key(r, a, b) not in blocked]
            for ref, a, b in rng.sample(every, min(n, len(every))):
                if rng.random() < 0.5:
                    a, b = b, a
                taken.add(triplet_key(ref, a, b))
                out.append((ref, a, b))
        return out


def _pairs(items: list[str]) -> Iterable[tuple[str, str]]:
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            yield a, b
