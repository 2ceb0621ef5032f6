"""A labeling session: a validated plan, its image root, the vote store and the annotators.

The plan is a triplet CSV read with :mod:`ctxsim.data.triplets` (paths relative to ``images``, default
the plan's folder). Every image must lie under that root: it is the only folder the server
serves images from, and only images the plan names. "Under" means the real path, symlinks
resolved: a link inside the root to a file outside it is refused.
"""
from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ctxsim.data.triplets import TripletFile, read_triplets
from ctxsim.errors import InputError, Problem
from ctxsim.labeling.store import StoredTriplet, VoteStore
from ctxsim.schema import IMAGE_COLUMNS, PATH, ROW

log = logging.getLogger(__name__)

#: Annotators created when a new database gets none.
DEFAULT_ANNOTATORS = 1


@dataclass
class Session:
    store: VoteStore
    images_root: Path
    triplets: list[StoredTriplet]
    #: annotator names, in creation order
    annotators: list[str]
    #: name -> token of the tokens given when the session was opened (the store keeps only digests)
    given_tokens: dict[str, str]

    def annotator_for(self, token: str) -> str | None:
        return self.store.annotator_for(token)

    def tokens(self) -> dict[str, str | None]:
        """Each annotator's token, where it can be known: generated ones come from the secret, given
        ones from this session's ``tokens``; None for one given earlier (only its owner has it)."""
        return {name: self.given_tokens.get(name) or self.store.token_of(name) for name in self.annotators}

    @property
    def image_paths(self) -> frozenset[str]:
        """Root-relative paths of every image the plan names (the only ones served)."""
        return frozenset(p for t in self.triplets for p in (t.ref, t.a, t.b))


def read_plan(plan_csv: str | os.PathLike, images: str | os.PathLike | None = None) -> tuple[Path, list[StoredTriplet]]:
    """Validate a plan (every image must load and lie under the root); returns the root and triplets
    with root-relative POSIX paths."""
    tf = TripletFile.of(plan_csv, images)
    root = tf.images_root
    if not root.is_dir():
        raise InputError([Problem(str(root), "image root not found (pass --images: the folder given to `label plan --images`)")])
    try:
        df = read_triplets(plan_csv, root)
    except InputError as err:
        if images is None and any("not found" in p.message for p in err.problems):
            hint = f"image paths resolve against the plan's folder {root}; pass --images ROOT (the folder given to `label plan --images`)"
            raise InputError([*err.problems, Problem(str(tf.path), hint)]) from None
        raise
    prefix = root.as_posix().rstrip("/") + "/"
    problems, triplets, seen = [], [], {}
    for pos, row in enumerate(df.iter_rows(named=True)):
        rel = {}
        for c in IMAGE_COLUMNS:
            full = posixpath.normpath(row[PATH[c]])
            # the root is a real path (TripletFile resolves it); so must the image be, links followed
            if not full.startswith(prefix) or not os.path.realpath(full).startswith(prefix):
                problems.append(Problem(str(tf.path), f"image {row[c]!r} lies outside the image root {root}", row[ROW], c))
            rel[c] = full.removeprefix(prefix)
        tid = row["id"]
        if tid in seen:
            problems.append(Problem(str(tf.path), f"id {tid!r} is also used by row {seen[tid]}", row[ROW], "id"))
        seen.setdefault(tid, row[ROW])
        context = row.get("context") or None
        triplets.append(StoredTriplet(tid, rel["ref"], rel["a"], rel["b"], context, pos))
    if problems:
        raise InputError(problems)
    if not triplets:
        raise InputError([Problem(str(tf.path), "the plan has no triplets")])
    return root, triplets


def open_session(
    plan_csv: str | os.PathLike,
    db_path: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    tokens: Mapping[str, str] | None = None,
    annotators: int = 0,
) -> Session:
    """Validate the plan, store its triplets and the annotators (``tokens``: name -> token, plus
    generated ones until ``annotators`` exist) in ``db_path``; the store keeps digests of the tokens."""
    root, triplets = read_plan(plan_csv, images)
    store = VoteStore(db_path)
    try:
        store.token_key()  # a missing or foreign secret is refused here, not on every request
        added = store.load_plan(triplets, root, str(plan_csv))
        if tokens:
            store.add_annotators(tokens)
        names = store.ensure_annotators(annotators)
    except BaseException:
        store.close()
        raise
    log.info("plan %s: %d triplets (%d new in %s), images under %s, %d annotators",
             plan_csv, len(triplets), added, db_path, root, len(names))
    return Session(store, root, triplets, names, dict(tokens or {}))


def read_tokens(path: str | os.PathLike) -> dict[str, str]:
    """A tokens file: CSV with columns ``name,token`` (one annotator per row)."""
    path = Path(path)
    if not path.is_file():
        raise InputError([Problem(str(path), "tokens file not found")])
    try:
        df = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise InputError([Problem(str(path), f"not a readable CSV file ({err})")]) from None
    missing = [c for c in ("name", "token") if c not in df.columns]
    if missing:
        raise InputError([Problem(str(path), "missing required column", column=c) for c in missing])
    problems = [
        Problem(str(path), "empty cell", i + 1, c)
        for c in ("name", "token") for i, v in enumerate(df[c].to_list()) if not (v or "").strip()
    ]
    names = [(n or "").strip() for n in df["name"].to_list()]
    problems += [Problem(str(path), f"annotator {n!r} is listed twice", i + 1, "name") for i, n in enumerate(names) if n and n in names[:i]]
    if problems:
        raise InputError(problems)
    return {name.strip(): token.strip() for name, token in df.select("name", "token").rows()}
