"""A real ``ctxsim label serve`` process: concurrent annotators, a kill -9 mid-session, raw requests."""
import random
import socket
import sqlite3
import threading
import time
from collections import Counter

import httpx
import polars as pl
import pytest

from ctxsim.labeling.plan import make_plan

from .helpers import make_image_tree

pytestmark = pytest.mark.server

N_ANNOTATORS = 20
VOTES_EACH = 50
PLAN_SIZE = 60
#: Votes acknowledged before the server is killed in the crash test.
ACKED_BEFORE_KILL = 40
HTTP_TIMEOUT_S = 30


@pytest.fixture
def session(tmp_path):
    """A 60-triplet plan over 9 images and 20 annotators with known tokens."""
    root = tmp_path / "images"
    make_image_tree(root, {"s": 9})
    plan = root / "plan.csv"
    make_plan(root, PLAN_SIZE).write_csv(plan)
    tokens = {f"user{k:02d}": f"token-of-user-{k:02d}-abcdefgh" for k in range(N_ANNOTATORS)}
    tokens_csv = tmp_path / "tokens.csv"
    pl.DataFrame({"name": list(tokens), "token": list(tokens.values())}).write_csv(tokens_csv)
    return plan, tmp_path / "votes.sqlite", tokens, tokens_csv


def db_vote_ids(db):
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT vote_id FROM votes")]


def vote_loop(base, token, n_votes, acked, errors, rng, stop=None):
    """One annotator: answer what the server shows next, ``n_votes`` times; every 10th vote is sent
    twice (a retry), which must come back as a duplicate."""
    with httpx.Client(base_url=base, timeout=HTTP_TIMEOUT_S) as client:
        try:
            item = client.get(f"/api/{token}/next").json()["item"]
            for i in range(n_votes):
                if stop is not None and stop.is_set():
                    return
                body = {"vote_id": f"{token[:16]}-{i:04d}", "triplet_id": item["triplet_id"],
                        "presentation": item["presentation"], "choice": rng.choice(["left", "right", "skip"]),
                        "elapsed_ms": rng.randrange(300, 5000)}
                r = client.post(f"/api/{token}/votes", json=body)
                if r.status_code != 201:
                    errors.append((token, i, r.status_code, r.text))
                    return
                acked.append(body["vote_id"])
                if i % 10 == 0:
                    again = client.post(f"/api/{token}/votes", json=body)
                    if again.status_code != 200 or again.json()["status"] != "duplicate":
                        errors.append((token, i, again.status_code, again.text))
                item = r.json()["item"]
        except httpx.TransportError as err:
            errors.append((token, "transport", repr(err)))


def test_twenty_concurrent_annotators_lose_no_vote(session, live_server):
    plan, db, tokens, tokens_csv = session
    server = live_server(plan, db, "--tokens", str(tokens_csv))
    acked, errors = [], []
    threads = [threading.Thread(target=vote_loop, args=(server.url, t, VOTES_EACH, acked, errors, random.Random(k)))
               for k, t in enumerate(tokens.values())]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert errors == []
    assert len(acked) == N_ANNOTATORS * VOTES_EACH
    assert sorted(db_vote_ids(db)) == sorted(acked)
    with sqlite3.connect(db) as conn:
        per_annotator = Counter(dict(conn.execute("SELECT annotator, COUNT(*) FROM votes GROUP BY annotator").fetchall()))
        repeats = conn.execute("SELECT COUNT(*) FROM votes WHERE presentation = 1").fetchone()[0]
    assert set(per_annotator.values()) == {VOTES_EACH} and len(per_annotator) == N_ANNOTATORS
    assert repeats > 0  # the default 10% controls were shown and answered
    assert httpx.get(f"{server.url}/health").json()["votes"] == N_ANNOTATORS * VOTES_EACH
    print(f"{len(acked)} votes from {N_ANNOTATORS} annotators in {elapsed:.1f}s")


def test_every_acknowledged_vote_survives_kill_9(session, live_server):
    plan, db, tokens, tokens_csv = session
    server = live_server(plan, db, "--tokens", str(tokens_csv))
    acked, errors, stop = [], [], threading.Event()
    workers = list(tokens.values())[:4]
    threads = [threading.Thread(target=vote_loop, args=(server.url, t, PLAN_SIZE, acked, errors, random.Random(k), stop))
               for k, t in enumerate(workers)]
    for t in threads:
        t.start()
    while len(acked) < ACKED_BEFORE_KILL and any(t.is_alive() for t in threads):
        time.sleep(0.005)
    server.kill()  # SIGKILL while the annotators are still sending
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= ACKED_BEFORE_KILL
    assert any(e[1] == "transport" for e in errors)  # the annotators really were cut off mid-session

    server.start()  # same database, new process
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = set(db_vote_ids(db))
    assert set(acked) <= stored
    # the session carries on: each annotator's next vote is accepted, and old ones are not repeated
    for token in workers:
        item = httpx.get(f"{server.url}/api/{token}/next").json()["item"]
        r = httpx.post(f"{server.url}/api/{token}/votes",
                       json={"vote_id": f"after-restart-{token[:16]}", "triplet_id": item["triplet_id"],
                             "presentation": item["presentation"], "choice": "left"})
        assert r.status_code == 201
    assert len(db_vote_ids(db)) == len(stored) + len(workers)


def test_raw_dot_dot_paths_are_refused_by_the_running_server(session, live_server):
    plan, db, tokens, tokens_csv = session
    server = live_server(plan, db, "--tokens", str(tokens_csv))
    token = next(iter(tokens.values()))
    for target in (f"/api/{token}/images/../../../../etc/passwd", f"/api/{token}/images/../plan.csv",
                   f"/api/{token}/images/s/../../votes.sqlite"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_S) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        status = reply.split(b"\r\n", 1)[0]
        assert b" 400 " in status, (target, reply[:200])
        assert b"root:" not in reply and b"SQLite format" not in reply and b"ref,a,b" not in reply
