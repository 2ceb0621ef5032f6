"""Importers from the upstream formats of the two human-judgement data sets into triplet CSVs.

Each importer links (or copies) the images into ``OUT/images`` and writes image paths relative to
``OUT``. The upstream files list the chosen candidate first; candidate order is shuffled with a
fixed seed so that ``label`` is A about half the time.
"""
from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.data.triplets import write_triplets
from ctxsim.errors import InputError, Problem

log = logging.getLogger(__name__)

DEFAULT_SEED = 0
IMPORTERS: dict[str, Callable[..., list[Path]]] = {}


def importer(name: str):
    def deco(fn):
        IMPORTERS[name] = fn
        return fn

    return deco


def import_dataset(kind: str, src: str | os.PathLike, out: str | os.PathLike, **kw) -> list[Path]:
    return IMPORTERS[kind](Path(src), Path(out), **kw)


def _link_images(paths: list[Path], out: Path) -> None:
    """Hard-link each image into ``out/images`` (copy across file systems)."""
    dest = out / "images"
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        target = dest / p.name
        if target.exists():
            if os.path.samefile(target, p) or filecmp.cmp(target, p, shallow=False):
                continue
            target.unlink()
        try:
            os.link(p, target)
        except OSError:
            shutil.copy2(p, target)


def _orient(ref, closer, farther, seed: int | list[int], context: str | None, votes=None) -> pl.DataFrame:
    """Triplet rows with candidates in random order: the closer one is A or B with probability 1/2."""
    ref, closer, farther = (np.asarray(x, dtype=object) for x in (ref, closer, farther))
    swap = np.random.default_rng(seed).random(len(ref)) < 0.5
    cols = {
        "ref": ref,
        "a": np.where(swap, farther, closer),
        "b": np.where(swap, closer, farther),
        "label": np.where(swap, "B", "A"),
    }
    if votes is not None:
        v_closer, v_other = np.asarray(votes, dtype=np.int64).reshape(-1, 2).T
        cols["votes_a"] = np.where(swap, v_other, v_closer)
        cols["votes_b"] = np.where(swap, v_closer, v_other)
    df = pl.DataFrame({k: list(v) if v.dtype == object else v for k, v in cols.items()})
    if context is not None:
        df = df.with_columns(pl.lit(context).alias("context"))
    return df


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError([Problem(str(path), f"{what} not found")])


@importer("zappos")
def import_zappos(src: Path, out: Path, *, context: str | None = None, seed: int = DEFAULT_SEED) -> list[Path]:
    """``SRC/images/<id>.jpg`` + header-less ``SRC/deconflicted_triplets.csv`` (head,closer,farther)."""
    csv, images = src / "deconflicted_triplets.csv", src / "images"
    _require(csv, "zappos triplet file deconflicted_triplets.csv")
    _require(images, "zappos image folder")
    files = {p.stem: p for p in sorted(images.glob("*.jpg"))}
    try:
        raw = pl.read_csv(csv, has_header=False, new_columns=["head", "closer", "farther"], schema_overrides=[pl.String] * 3)
    except pl.exceptions.PolarsError as err:
        raise InputError([Problem(str(csv), f"not a readable head,closer,farther CSV ({err})")]) from None
    raw = raw.with_row_index("row", offset=1)
    blank = raw.filter(pl.any_horizontal(pl.col("head", "closer", "farther").is_null()))
    if blank.height:
        raise InputError([Problem(str(csv), "empty cell", r) for r in blank["row"].to_list()])
    known = pl.all_horizontal(pl.col(c).is_in(list(files)) for c in ("head", "closer", "farther"))
    kept = raw.filter(known)
    if kept.height < raw.height:
        log.warning("%s: skipped %d of %d rows naming an image id with no file in %s", csv, raw.height - kept.height, raw.height, images)
    _link_images([files[i] for i in sorted(set(kept["head"]) | set(kept["closer"]) | set(kept["farther"]))], out)
    name = lambda col: [f"images/{files[i].name}" for i in kept[col].to_list()]  # noqa: E731
    df = _orient(name("head"), name("closer"), name("farther"), seed, context)
    target = out / "triplets.csv"
    write_triplets(df, target)
    log.info("zappos: %d triplets over %d images -> %s", df.height, len(files), target)
    return [target]


@importer("materials")
def import_materials(src: Path, out: Path, *, context: str | None = None, seed: int = DEFAULT_SEED) -> list[Path]:
    """Sorted ``SRC/images/*.jpg`` + every ``SRC/answers_processed_<split>.json``
    (``answers``: [reference, closer, other] indices; ``agreement``: [votes closer, votes other])."""
    images = src / "images"
    _require(images, "materials image folder")
    files = sorted(images.glob("*.jpg"))
    splits = sorted(src.glob("answers_processed_*.json"))
    if not splits:
        raise InputError([Problem(str(src), "no answers_processed_<split>.json file")])
    parsed = [_read_answers(path, len(files)) for path in splits]  # every split checked before anything is written
    _link_images(files, out)
    names = [f"images/{p.name}" for p in files]
    written = []
    for path, (answers, votes) in zip(splits, parsed):
        split = path.stem.removeprefix("answers_processed_")
        split_seed = [seed, zlib.crc32(split.encode())]  # a split's shuffle does not depend on the other splits
        ref, closer, other = ([names[k] for k in col] for col in zip(*answers)) if answers else ([], [], [])
        df = _orient(ref, closer, other, split_seed, context, votes=votes)
        target = out / f"{split}.csv"
        write_triplets(df, target)
        log.info("materials %s: %d triplets over %d images -> %s", split, df.height, len(files), target)
        written.append(target)
    return written


def _read_answers(path: Path, n_images: int) -> tuple[list, list]:
    try:
        data = json.loads(path.read_text())
        answers, votes = data["answers"], data["agreement"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError([Problem(str(path), f"expected JSON with 'answers' and 'agreement' lists ({err!r})")]) from None
    problems = []
    if len(answers) != len(votes):
        problems.append(Problem(str(path), f"{len(answers)} answers but {len(votes)} agreement rows"))
    for row, (triple, vote) in enumerate(zip(answers, votes), start=1):
        if len(triple) != 3 or not all(isinstance(k, int) and 0 <= k < n_images for k in triple):
            problems.append(Problem(str(path), f"expected 3 image indices below {n_images}, got {triple}", row, "answers"))
        if len(vote) != 2 or not all(isinstance(v, int) and v >= 0 for v in vote):
            problems.append(Problem(str(path), f"expected 2 vote counts, got {vote}", row, "agreement"))
    if problems:
        raise InputError(problems)
    return answers, votes
