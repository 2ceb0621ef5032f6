import sqlite3
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from ctxsim.errors import InputError
from ctxsim.labeling.app import MAX_BODY_BYTES, create_app
from ctxsim.labeling.vote_queue import QueueSettings, is_control

from .helpers import TOKENS, write_plan_csv

ALICE = TOKENS["alice"]
WRONG = "not-a-real-token-000000"


@pytest.fixture
def db(tmp_path):
    return tmp_path / "votes.sqlite"


@pytest.fixture
def client(plan_csv, db):
    app = create_app(plan_csv, db, tokens=TOKENS, settings=QueueSettings(control_rate=0.0))
    with TestClient(app) as c:
        yield c


def stored_votes(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM votes ORDER BY seq").fetchall()


def path_of(url):
    return unquote(url.split("/images/", 1)[1])


def vote_body(item, choice="left", vote_id="vote-0000001", **kw):
    return {"vote_id": vote_id, "triplet_id": item["triplet_id"], "presentation": item["presentation"], "choice": choice, **kw}


def plan_triplet(client, triplet_id):
    return client.app.state.queue.triplets[triplet_id]


def test_the_page_and_its_assets_are_served_to_a_known_annotator(client):
    page = client.get(f"/label/{ALICE}")
    assert page.status_code == 200 and "Which image is more similar" in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and "default-src 'self'" in page.headers["content-security-policy"]
    assert "vote_id" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200
    assert client.get(f"/label/{WRONG}").status_code == 403
    assert client.get("/health").json() == {"status": "ok", "triplets": 10, "votes": 0}


def test_next_names_the_triplet_and_its_images_are_the_plan_files(client, image_root):
    state = client.get(f"/api/{ALICE}/next").json()
    assert state["done"] is False and state["progress"] == {"done": 0, "total": 10}
    item = state["item"]
    t = plan_triplet(client, item["triplet_id"])
    assert path_of(item["ref"]) == t.ref and {path_of(item["left"]), path_of(item["right"])} == {t.a, t.b}
    for key in ("ref", "left", "right"):
        r = client.get(item[key])
        assert r.status_code == 200 and r.content == (image_root / path_of(item[key])).read_bytes()
        assert r.headers["content-type"] in ("image/png", "image/jpeg")


@pytest.mark.parametrize("choice", ["left", "right", "skip"])
def test_a_vote_is_stored_in_the_triplets_terms(client, db, choice):
    item = client.get(f"/api/{ALICE}/next").json()["item"]
    r = client.post(f"/api/{ALICE}/votes", json=vote_body(item, choice, elapsed_ms=1234))
    assert r.status_code == 201 and r.json()["status"] == "stored"
    assert r.json()["progress"] == {"done": 1, "total": 10} and r.json()["item"]["triplet_id"] != item["triplet_id"]
    t = plan_triplet(client, item["triplet_id"])
    clicked = path_of(item[choice]) if choice != "skip" else None
    expected = {t.a: "A", t.b: "B", None: "skip"}[clicked]
    (row,) = stored_votes(db)
    assert row[2:7] == ("alice", t.id, 0, expected, int(path_of(item["left"]) == t.b))
    assert row[7] == 1234


def test_resubmitting_a_vote_is_acknowledged_once(client, db):
    item = client.get(f"/api/{ALICE}/next").json()["item"]
    first = client.post(f"/api/{ALICE}/votes", json=vote_body(item))
    again = client.post(f"/api/{ALICE}/votes", json=vote_body(item))
    assert (first.status_code, again.status_code) == (201, 200) and again.json()["status"] == "duplicate"
    assert len(stored_votes(db)) == 1
    changed = client.post(f"/api/{ALICE}/votes", json=vote_body(item, "right", vote_id="vote-0000002"))
    assert changed.status_code == 409 and "answers are final" in changed.json()["detail"]
    reused = client.post(f"/api/{ALICE}/votes", json={**vote_body(item), "choice": "right"})
    assert reused.status_code == 409 and "already used" in reused.json()["detail"]
    assert len(stored_votes(db)) == 1


def test_annotators_are_told_apart_by_token(client, db):
    for name in ("alice", "bob"):
        item = client.get(f"/api/{TOKENS[name]}/next").json()["item"]
        assert client.post(f"/api/{TOKENS[name]}/votes", json=vote_body(item, vote_id=f"vote-of-{name}")).status_code == 201
    assert [row[2] for row in stored_votes(db)] == ["alice", "bob"]


def triplet_of(client):
    return next(iter(client.app.state.queue.triplets))


BAD_REQUESTS = [
    # (method, path, json body or raw bytes, status, words in the message)
    ("GET", f"/api/{WRONG}/next", None, 403, "unknown annotator token"),
    ("POST", f"/api/{WRONG}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0", "choice": "left"}, 403, "unknown annotator token"),
    ("GET", f"/api/{WRONG}/images/shoes/img0.png", None, 403, "unknown annotator token"),
    ("GET", f"/api/{ALICE}/images/%2e%2e/%2e%2e/etc/passwd", None, 400, "without '..'"),
    ("GET", f"/api/{ALICE}/images/shoes/%2e%2e/plan.csv", None, 400, "without '..'"),
    ("GET", f"/api/{ALICE}/images/..%2f..%2fvotes.sqlite", None, 400, "without '..'"),
    ("GET", f"/api/{ALICE}/images//etc/passwd", None, 400, "invalid image path"),
    ("GET", f"/api/{ALICE}/images/shoes%5cimg0.png", None, 400, "invalid image path"),
    ("GET", f"/api/{ALICE}/images/shoes/img0.png%00.txt", None, 400, "invalid image path"),
    ("GET", f"/api/{ALICE}/images/plan.csv", None, 404, "not an image of this plan"),
    ("GET", f"/api/{ALICE}/images/shoes/img99.png", None, 404, "not an image of this plan"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "no-such-triplet", "choice": "left"}, 404, "unknown triplet id"),
    ("POST", f"/api/{ALICE}/votes", b'{"vote_id": "vote-0000009", "tri', 422, "not valid JSON"),
    ("POST", f"/api/{ALICE}/votes", [1, 2, 3], 422, "valid dictionary"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0"}, 422, "choice: Field required"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0", "choice": "up"}, 422, "choice"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0", "choice": "left", "x": 1}, 422, "x: Extra inputs"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "v", "triplet_id": "t0", "choice": "left"}, 422, "vote_id"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0", "choice": "left", "presentation": 2}, 422, "presentation"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0", "choice": "left", "presentation": "0"}, 422, "presentation"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0", "choice": "left", "elapsed_ms": -5}, 422, "elapsed_ms"),
    ("POST", f"/api/{ALICE}/votes", {"vote_id": "vote-0000009", "triplet_id": "t0", "choice": "left", "presentation": 1}, 409, "not one of your repeated controls"),
    ("POST", f"/api/{ALICE}/votes", b"x" * (MAX_BODY_BYTES + 1), 413, "larger than"),
]


@pytest.mark.parametrize("method, path, body, status, words", BAD_REQUESTS, ids=[f"{s}-{i}" for i, (*_, s, _w) in enumerate(BAD_REQUESTS)])
def test_bad_requests_are_refused_clearly_and_change_nothing(client, db, method, path, body, status, words):
    item = client.get(f"/api/{ALICE}/next").json()["item"]
    client.post(f"/api/{ALICE}/votes", json=vote_body(item, vote_id="vote-before"))
    before = stored_votes(db)
    if isinstance(body, bytes):
        r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert stored_votes(db) == before and len(before) == 1


def test_a_control_repeat_is_accepted_for_a_control_after_its_first_answer(plan_csv, db):
    app = create_app(plan_csv, db, tokens=TOKENS, settings=QueueSettings(control_rate=1.0, control_gap=0))
    with TestClient(app) as client:
        first = client.get(f"/api/{ALICE}/next").json()["item"]
        assert is_control("alice", first["triplet_id"], 1.0)
        repeat = client.post(f"/api/{ALICE}/votes", json=vote_body(first, "left")).json()["item"]
        assert (repeat["triplet_id"], repeat["presentation"]) == (first["triplet_id"], 1)
        assert (repeat["left"], repeat["right"]) == (first["right"], first["left"])
        # clicking the same image again is a consistent answer: the same letter in the triplet's terms
        assert client.post(f"/api/{ALICE}/votes", json=vote_body(repeat, "right", vote_id="vote-0000002")).status_code == 201
    answers = [(r[4], r[5]) for r in stored_votes(db)]  # (presentation, answer)
    assert answers[0][1] == answers[1][1] and [p for p, _ in answers] == [0, 1]


def test_the_plan_is_checked_before_serving(image_root, db, tmp_path):
    metal = str(image_root / "metals" / "img0.jpg")
    outside = write_plan_csv(tmp_path / "plan.csv", [("img0.png", "../metals/img1.jpg", "img2.png"), ("img0.png", "img1.png", metal)])
    with pytest.raises(InputError, match="outside the image root") as err:
        create_app(outside, db, images=image_root / "shoes", tokens=TOKENS)
    assert [(p.row, p.column) for p in err.value.problems] == [(1, "a"), (2, "b")]
    missing = write_plan_csv(image_root / "missing.csv", [("shoes/img0.png", "shoes/img1.png", "shoes/nope.png")])
    with pytest.raises(InputError, match="image file not found"):
        create_app(missing, db, tokens=TOKENS)
    same = write_plan_csv(image_root / "same.csv", [("shoes/img0.png", "shoes/img0.png", "shoes/img2.png")])
    with pytest.raises(InputError, match="name the same image"):
        create_app(same, db, tokens=TOKENS)
    twice = write_plan_csv(image_root / "twice.csv", [("shoes/img0.png", "shoes/img1.png", "shoes/img2.png"),
                                                      ("shoes/img1.png", "shoes/img2.png", "shoes/img3.png")], ids=["x", "x"])
    with pytest.raises(InputError, match="id 'x' is also used by row 1"):
        create_app(twice, db, tokens=TOKENS)
