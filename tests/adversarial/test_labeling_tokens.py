"""A stolen vote database must not give voting rights: it keeps keyed digests, never tokens; the
secret that keys them lives beside it; both files are private (0600). Each table row is one case."""
import os
import shutil
import sqlite3
import stat

import httpx
import pytest
from fastapi.testclient import TestClient

from ctxsim.errors import InputError
from ctxsim.labeling.app import create_app
from ctxsim.labeling.store import VoteStore
from ctxsim.labeling.tokens import secret_path

from ..labeling.helpers import TOKENS, make_image_tree, write_plan_csv

#: Generated annotators on top of the given TOKENS.
GENERATED = 2
#: SQLite's files: every one of them may hold pages of the database.
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


@pytest.fixture(autouse=True)
def usual_umask():
    """The umask most accounts have (0644 files), which the old store left the database with."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def plan(tmp_path):
    root = tmp_path / "images"
    make_image_tree(root)
    return write_plan_csv(root / "plan.csv", [("shoes/img0.png", "shoes/img1.png", "shoes/img2.png")])


@pytest.fixture
def served(plan, tmp_path):
    """A database after a session with given and generated tokens: (db path, name -> token)."""
    db = tmp_path / "votes.sqlite"
    app = create_app(plan, db, tokens=TOKENS, annotators=len(TOKENS) + GENERATED)
    tokens = app.state.session.tokens()
    with TestClient(app) as client:
        assert client.get(f"/api/{tokens['annotator-4']}/next").status_code == 200
    return db, tokens


def database_bytes(db) -> bytes:
    return b"".join(p.read_bytes() for p in (db.with_name(db.name + s) for s in DB_SUFFIXES) if p.exists())


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_and_secret_are_private(served):
    db, _ = served
    assert mode(db) == 0o600 and mode(secret_path(db)) == 0o600
    for companion in (db.with_name(db.name + s) for s in DB_SUFFIXES[1:]):
        assert not companion.exists() or mode(companion) == 0o600


def test_no_token_is_in_the_database_and_every_token_still_works(served, plan):
    db, tokens = served
    assert set(tokens) == {*TOKENS, "annotator-4", "annotator-5"} and None not in tokens.values()
    stored = database_bytes(db)
    assert not [name for name, token in tokens.items() if token.encode() in stored]
    app = create_app(plan, db)  # served again, without the tokens file
    with TestClient(app) as client:
        for name, token in tokens.items():
            r = client.get(f"/api/{token}/next")
            assert r.status_code == 200, name
    # generated links are printed again from the secret; hand-given ones only their owners have
    assert app.state.session.tokens() == {**dict.fromkeys(TOKENS), "annotator-4": tokens["annotator-4"],
                                          "annotator-5": tokens["annotator-5"]}


@pytest.mark.server
def test_serve_prints_the_same_working_links_again(plan, tmp_path, live_server):
    db = tmp_path / "votes.sqlite"
    first = live_server(plan, db, "--annotators", str(GENERATED))
    links = first.annotator_urls()
    first.stop()
    again = live_server(plan, db)
    again_links = again.annotator_urls()
    assert len(links) == GENERATED
    assert {n: u.rsplit("/", 1)[1] for n, u in links.items()} == {n: u.rsplit("/", 1)[1] for n, u in again_links.items()}
    for url in again_links.values():
        token = url.rsplit("/", 1)[1]
        assert httpx.get(f"{again.url}/api/{token}/next").status_code == 200


def another_secret(copy):
    VoteStore(copy.parent / "other.sqlite").ensure_annotators(1)  # makes other.sqlite.secret
    shutil.copy(copy.parent / "other.sqlite.secret", secret_path(copy))


def wrong_length_secret(copy):
    secret_path(copy).write_text("00" * 5)


# A copy of the database, with this beside it instead of its own secret: (what, words of the refusal)
STOLEN = [
    (lambda copy: None, "token secret of .* is missing"),
    (another_secret, "not the token secret of"),
    (wrong_length_secret, "not a vote database secret"),
]


@pytest.mark.parametrize("beside, refusal", STOLEN, ids=["no secret", "another secret", "a broken secret"])
def test_a_copy_without_its_secret_authenticates_nobody(served, plan, tmp_path, beside, refusal):
    db, tokens = served
    copy = tmp_path / "stolen" / "votes.sqlite"
    copy.parent.mkdir()
    shutil.copy(db, copy)
    beside(copy)
    store = VoteStore(copy, create=False)
    for token in tokens.values():
        with pytest.raises(InputError, match=refusal):
            store.annotator_for(token)
    with pytest.raises(InputError, match=refusal):
        create_app(plan, copy)
    assert store.annotators() == list(tokens)  # what needs no token still works (e.g. export)
    store.close()


def test_a_plain_token_database_of_schema_1_is_hashed_on_opening(served, tmp_path):
    db, _ = served
    with sqlite3.connect(db) as conn:  # back to how schema 1 kept tokens
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DROP TABLE annotators")
        conn.execute("CREATE TABLE annotators (name TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)")
        conn.executemany("INSERT INTO annotators VALUES (?, ?, 'then')", list(TOKENS.items()))
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute("DELETE FROM meta WHERE key = 'token_key_fingerprint'")
    secret_path(db).unlink()
    db.chmod(0o644)
    assert TOKENS["alice"].encode() in database_bytes(db)
    store = VoteStore(db, create=False)
    assert [store.annotator_for(t) for t in TOKENS.values()] == list(TOKENS)
    store.close()
    assert mode(db) == 0o600 and mode(secret_path(db)) == 0o600
    assert not [t for t in TOKENS.values() if t.encode() in database_bytes(db)]
