"""The vote store: one SQLite file holding the plan's triplets, the annotators and every vote.

Durability: WAL journal with ``synchronous=FULL``, one transaction per vote, so a vote is on disk
before it is acknowledged and survives the server being killed. Each thread has its own
connection; writes take the write lock up front (``BEGIN IMMEDIATE``) so checks and inserts see
one consistent state.

Idempotency: every vote carries a client-made ``vote_id``, and an annotator answers a triplet at
most once per presentation (``presentation`` 0: first showing, 1: the swapped control repeat).
Sending the same vote again is acknowledged as a duplicate and stores nothing; a different answer
to something already answered is refused.

Tokens: the database keeps only keyed digests of the annotators' tokens (see
:mod:`ctxsim.labeling.tokens`; the secret lives beside it), and the file is private (0600).
"""
from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ctxsim.errors import InputError, Problem
from ctxsim.labeling.tokens import TokenKey, make_private, secret_path

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
#: Version 1 kept the tokens in plain text; opening such a database replaces them by digests.
PLAIN_TOKENS_SCHEMA_VERSION = "1"
ANSWERS = ("A", "B", "skip")
PRESENTATIONS = (0, 1)
#: How long a writer waits for another writer's lock before giving up (ms).
BUSY_TIMEOUT_MS = 30_000
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
ANNOTATOR_PREFIX = "annotator-"
#: ``meta`` key of the secret's fingerprint (tells this database's secret from another one).
FINGERPRINT_KEY = "token_key_fingerprint"
#: SQLite's companion files, which hold pages of the database too.
_COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")

_ANNOTATORS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    name TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS triplets (
    id TEXT PRIMARY KEY,
    ref TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL,
    context TEXT,
    position INTEGER NOT NULL
);
{annotators};
CREATE TABLE IF NOT EXISTS votes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    vote_id TEXT NOT NULL UNIQUE,
    annotator TEXT NOT NULL REFERENCES annotators(name),
    triplet_id TEXT NOT NULL REFERENCES triplets(id),
    presentation INTEGER NOT NULL CHECK (presentation IN (0, 1)),
    answer TEXT NOT NULL CHECK (answer IN ('A', 'B', 'skip')),
    swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    elapsed_ms INTEGER,
    created_at TEXT NOT NULL,
    UNIQUE (annotator, triplet_id, presentation)
);
CREATE INDEX IF NOT EXISTS votes_by_triplet ON votes (triplet_id, presentation);
""".format(annotators=_ANNOTATORS_TABLE.format(name="annotators"))


@dataclass(frozen=True)
class StoredTriplet:
    id: str
    ref: str
    a: str
    b: str
    context: str | None
    position: int


@dataclass(frozen=True)
class Vote:
    """One answer, in the triplet's terms: ``A``/``B`` (the candidate judged closer) or ``skip``."""

    vote_id: str
    annotator: str
    triplet_id: str
    presentation: int
    answer: str
    swapped: bool
    elapsed_ms: int | None = None


class VoteConflict(Exception):
    """The vote contradicts one already stored (or is not allowed yet); nothing was written."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class VoteStore:
    """Triplets, annotators and votes in one SQLite file (safe to share between threads)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        self.secret_path = secret_path(self.path)
        if not create and not self.path.is_file():
            raise InputError([Problem(str(self.path), "vote database not found")])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._make_files_private()
        self._key: TokenKey | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            db = self._db()
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise InputError([Problem(str(self.path), "SQLite could not switch this database to WAL mode")])
            if create:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        except sqlite3.DatabaseError as err:
            self.close()
            raise InputError([Problem(str(self.path), f"not a usable SQLite vote database ({err})")]) from None
        version = self.meta("schema_version")
        if version == PLAIN_TOKENS_SCHEMA_VERSION:
            self._hash_plain_tokens()
        elif version != SCHEMA_VERSION:
            self.close()
            raise InputError([Problem(str(self.path), f"not a ctxsim vote database (schema version {version!r})")])

    def _make_files_private(self) -> None:
        """The database 0600 before SQLite first opens it (SQLite gives its -wal and -shm files the
        same mode); older files are tightened."""
        make_private(self.path)
        for suffix in _COMPANION_SUFFIXES:
            companion = self.path.with_name(self.path.name + suffix)
            if companion.exists():
                make_private(companion)

    # -- connections ----------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            with self._lock:
                self._connections.append(db)
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous=FULL")  # the commit is on disk before the vote is acknowledged
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    def _write(self):
        return _Transaction(self._db())

    # -- meta -----------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        try:
            row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            return None
        return row[0] if row else None

    @property
    def images_root(self) -> Path | None:
        root = self.meta("images_root")
        return Path(root) if root else None

    # -- plan -----------------------------------------------------------------------------------------
    def load_plan(self, triplets: Iterable[StoredTriplet], images_root: Path, source: str) -> int:
        """Add a plan's triplets (ids already stored must name the same images); returns how many
        were new. All or nothing: a conflict leaves the store unchanged."""
        with self._write() as db:
            stored_root = db.execute("SELECT value FROM meta WHERE key = 'images_root'").fetchone()
            if stored_root and stored_root[0] != str(images_root):
                raise InputError([Problem(source, f"this database collects votes on images under {stored_root[0]}, "
                                          f"not {images_root}; pass --images {stored_root[0]} or use a new --db")])
            db.execute("INSERT OR IGNORE INTO meta VALUES ('images_root', ?)", (str(images_root),))
            start = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM triplets").fetchone()[0]
            problems, added = [], 0
            for t in triplets:
                old = db.execute("SELECT ref, a, b FROM triplets WHERE id = ?", (t.id,)).fetchone()
                if old is None:
                    db.execute("INSERT INTO triplets VALUES (?, ?, ?, ?, ?, ?)", (t.id, t.ref, t.a, t.b, t.context, start + t.position))
                    added += 1
                elif tuple(old) != (t.ref, t.a, t.b):
                    problems.append(Problem(source, f"id {t.id!r} already names a different triplet in {self.path} "
                                            f"({', '.join(old)}); give the plan unique ids or use a new --db", t.position + 1, "id"))
            if problems:
                raise InputError(problems)
        return added

    def triplets(self) -> list[StoredTriplet]:
        rows = self._db().execute("SELECT id, ref, a, b, context, position FROM triplets ORDER BY position").fetchall()
        return [StoredTriplet(*r) for r in rows]

    # -- annotators -----------------------------------------------------------------------------------
    def token_key(self) -> TokenKey:
        """The secret beside the database (made with the first annotator); refused when it is
        missing or belongs to another database, since then no stored token can be checked."""
        if self._key is None:
            stored = self.meta(FINGERPRINT_KEY)
            key = TokenKey.load(self.secret_path, create=stored is None)
            if key is None:
                raise InputError([Problem(str(self.secret_path), f"the token secret of {self.path} is missing, so no annotator "
                                          "link can be checked; put it back beside the database, or use a new --db")])
            if stored is None:
                with self._write() as db:
                    db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (FINGERPRINT_KEY, key.fingerprint()))
                stored = self.meta(FINGERPRINT_KEY)  # another process may have stored its own first
            if stored != key.fingerprint():
                raise InputError([Problem(str(self.secret_path), f"this is not the token secret of {self.path}")])
            self._key = key
        return self._key

    def annotators(self) -> list[str]:
        """Annotator names, in creation order."""
        return [r[0] for r in self._db().execute("SELECT name FROM annotators ORDER BY rowid").fetchall()]

    def annotator_for(self, token: str) -> str | None:
        """The annotator whose token this is, or None."""
        if not TOKEN_PATTERN.match(token):
            return None  # not worth a hash
        row = self._db().execute("SELECT name FROM annotators WHERE token_digest = ?", (self.token_key().digest(token),)).fetchone()
        return row[0] if row else None

    def token_of(self, name: str) -> str | None:
        """The token of ``name`` when it was generated (derived from the secret); None for a token
        given with ``add_annotators`` (only its owner has it) or an unknown name."""
        key = self.token_key()
        derived = key.derive(name)
        row = self._db().execute("SELECT token_digest FROM annotators WHERE name = ?", (name,)).fetchone()
        return derived if row and row[0] == key.digest(derived) else None

    def add_annotators(self, tokens: Mapping[str, str]) -> None:
        """Register name -> token pairs (a pair already stored is kept; a clash is refused)."""
        problems = []
        for name, token in tokens.items():
            if not NAME_PATTERN.match(name):
                problems.append(Problem("annotators", f"annotator name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'"))
            if not TOKEN_PATTERN.match(token):
                problems.append(Problem("annotators", f"token of {name!r}: use 16-128 letters, digits, '_' or '-'"))
        if problems:
            raise InputError(problems)
        key = self.token_key()
        with self._write() as db:
            for name, token in tokens.items():
                digest = key.digest(token)
                by_name = db.execute("SELECT token_digest FROM annotators WHERE name = ?", (name,)).fetchone()
                by_token = db.execute("SELECT name FROM annotators WHERE token_digest = ?", (digest,)).fetchone()
                if by_name and by_name[0] != digest:
                    problems.append(Problem("annotators", f"annotator {name!r} already has another token in {self.path}"))
                elif by_token and by_token[0] != name:
                    problems.append(Problem("annotators", f"the token of {name!r} already belongs to {by_token[0]!r}"))
                elif not by_name:
                    db.execute("INSERT INTO annotators VALUES (?, ?, ?)", (name, digest, now()))
            if problems:
                raise InputError(problems)

    def ensure_annotators(self, n: int) -> list[str]:
        """Create ``annotator-K`` entries with generated tokens until at least ``n`` exist."""
        existing = self.annotators()
        k = len(existing)
        fresh = {}
        while len(existing) + len(fresh) < n:
            k += 1
            name = f"{ANNOTATOR_PREFIX}{k}"
            if name not in existing:
                fresh[name] = self.token_key().derive(name)
        if fresh:
            self.add_annotators(fresh)
        return self.annotators()

    def _hash_plain_tokens(self) -> None:
        """Schema 1 -> 2: replace the plain tokens by digests, then rewrite the file and empty the
        WAL so that no old page still holds a token."""
        key = self.token_key()
        db = self._db()
        db.execute("PRAGMA foreign_keys=OFF")  # the votes reference the table being replaced
        try:
            with self._write() as tx:
                if tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] != PLAIN_TOKENS_SCHEMA_VERSION:
                    return  # another process migrated it meanwhile
                rows = tx.execute("SELECT name, token, created_at FROM annotators ORDER BY rowid").fetchall()
                tx.execute(_ANNOTATORS_TABLE.format(name="annotators_hashed"))
                tx.executemany("INSERT INTO annotators_hashed VALUES (?, ?, ?)", [(n, key.digest(t), c) for n, t, c in rows])
                tx.execute("DROP TABLE annotators")
                tx.execute("ALTER TABLE annotators_hashed RENAME TO annotators")
                tx.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
        finally:
            db.execute("PRAGMA foreign_keys=ON")
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("%s: replaced %d plain annotator tokens by keyed digests", self.path, len(rows))

    # -- votes ----------------------------------------------------------------------------------------
    def record_vote(self, vote: Vote) -> bool:
        """Store ``vote`` in its own transaction; True when stored, False for a resubmission of a
        vote already stored. Raises :class:`VoteConflict` when it contradicts stored votes."""
        if vote.answer not in ANSWERS or vote.presentation not in PRESENTATIONS:
            raise ValueError(f"bad vote {vote}")
        with self._write() as db:
            same_id = db.execute(
                "SELECT annotator, triplet_id, presentation, answer FROM votes WHERE vote_id = ?", (vote.vote_id,)
            ).fetchone()
            if same_id is not None:
                if tuple(same_id) == (vote.annotator, vote.triplet_id, vote.presentation, vote.answer):
                    return False
                raise VoteConflict(f"vote id {vote.vote_id!r} was already used for a different vote")
            earlier = db.execute(
                "SELECT answer FROM votes WHERE annotator = ? AND triplet_id = ? AND presentation = ?",
                (vote.annotator, vote.triplet_id, vote.presentation),
            ).fetchone()
            if earlier is not None:
                if earlier[0] == vote.answer:
                    return False  # the same answer sent again under a new id (e.g. a second tab)
                raise VoteConflict(f"triplet {vote.triplet_id!r} (presentation {vote.presentation}) was already answered "
                                   f"{earlier[0]!r}; answers are final")
            if vote.presentation == 1:
                first = db.execute(
                    "SELECT answer FROM votes WHERE annotator = ? AND triplet_id = ? AND presentation = 0",
                    (vote.annotator, vote.triplet_id),
                ).fetchone()
                if first is None or first[0] == "skip":
                    raise VoteConflict(f"the control repeat of triplet {vote.triplet_id!r} is only shown after a first answer")
            db.execute(
                "INSERT INTO votes (vote_id, annotator, triplet_id, presentation, answer, swapped, elapsed_ms, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (vote.vote_id, vote.annotator, vote.triplet_id, vote.presentation, vote.answer, int(vote.swapped), vote.elapsed_ms, now()),
            )
        return True

    def answers_of(self, annotator: str) -> list[tuple[str, int, str]]:
        """``(triplet_id, presentation, answer)`` of one annotator, oldest first."""
        return self._db().execute(
            "SELECT triplet_id, presentation, answer FROM votes WHERE annotator = ? ORDER BY seq", (annotator,)
        ).fetchall()

    def vote_counts(self) -> dict[str, int]:
        """Triplet id -> number of A/B answers on first presentations (skips and repeats not counted)."""
        return dict(self._db().execute(
            "SELECT triplet_id, COUNT(*) FROM votes WHERE presentation = 0 AND answer != 'skip' GROUP BY triplet_id"
        ).fetchall())

    def votes(self) -> list[tuple]:
        """Every vote: ``(vote_id, annotator, triplet_id, presentation, answer, swapped, elapsed_ms, created_at)``."""
        return self._db().execute(
            "SELECT vote_id, annotator, triplet_id, presentation, answer, swapped, elapsed_ms, created_at FROM votes ORDER BY seq"
        ).fetchall()

    def count_votes(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM votes").fetchone()[0]


class _Transaction:
    """``with``: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
