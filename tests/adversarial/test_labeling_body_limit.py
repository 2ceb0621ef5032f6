"""Request bodies are capped however they arrive (declared length or chunked), the token is
checked before any body is read, and every response, refusals and errors included, carries the
security headers. Each table row is one case."""
import json

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from ctxsim.labeling.app import MAX_BODY_BYTES, SECURITY_HEADERS, create_app
from ctxsim.labeling.vote_queue import QueueSettings

from ..labeling.helpers import TOKENS, make_image_tree, write_plan_csv

ALICE = TOKENS["alice"]
WRONG = "not-a-real-token-000000"
MB = 1024 * 1024
#: Size of the hostile uploads, and how much the server may grow while refusing one.
HOSTILE_BYTES = 50 * MB
MAX_RSS_GROWTH_BYTES = 10 * MB
CHUNK_BYTES = 64 * 1024
HTTP_TIMEOUT_S = 60

# (token, body size in bytes, "chunked" or "length" (declared Content-Length), status expected)
UPLOADS = [
    (WRONG, HOSTILE_BYTES, "chunked", 403),
    (ALICE, HOSTILE_BYTES, "chunked", 413),
    (WRONG, HOSTILE_BYTES, "length", 403),
    (ALICE, HOSTILE_BYTES, "length", 413),
    (ALICE, MAX_BODY_BYTES + 1, "chunked", 413),
    (WRONG, MAX_BODY_BYTES + 1, "chunked", 403),
]


def vote_json(**kw) -> bytes:
    return json.dumps({"vote_id": "vote-0000001", "triplet_id": "t0", "choice": "left", **kw}).encode()


def chunks(size: int):
    """``size`` bytes of a JSON-looking body, in pieces: no Content-Length, so it goes chunked."""
    sent = 0
    while sent < size:
        piece = min(CHUNK_BYTES, size - sent)
        yield (b'{"vote_id": "' + b"x" * piece)[:piece]
        sent += piece


def assert_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.status_code, name, dict(response.headers))


@pytest.fixture
def plan(tmp_path):
    root = tmp_path / "images"
    make_image_tree(root)
    return write_plan_csv(root / "plan.csv", [("shoes/img0.png", "shoes/img1.png", "shoes/img2.png")])


@pytest.fixture(scope="function")
def server(plan, tmp_path, live_server):
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"name,token\nalice,{ALICE}\n")
    return live_server(plan, tmp_path / "votes.sqlite", "--tokens", str(tokens), "--control-rate", "0")


@pytest.mark.server
def test_hostile_uploads_are_refused_without_growing_the_server(server):
    process = psutil.Process(server.proc.pid)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT_S) as client:
        client.get(f"/api/{ALICE}/next")  # warm up: the first request loads code, not bodies
        baseline = process.memory_info().rss
        for token, size, how, status in UPLOADS:
            headers = {"content-type": "application/json"}
            if how == "length":
                headers["content-length"] = str(size)
            r = client.post(f"/api/{token}/votes", content=chunks(size), headers=headers)
            assert r.status_code == status, (token, size, how, r.text)
            assert ("unknown annotator token" if status == 403 else "larger than") in r.json()["detail"]
            assert_security_headers(r)
            growth = process.memory_info().rss - baseline
            assert growth < MAX_RSS_GROWTH_BYTES, f"{token} {how} {size}: server grew {growth / MB:.1f} MB"
        # a small vote sent chunked is still an ordinary vote
        r = client.post(f"/api/{ALICE}/votes", content=iter([vote_json()]), headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text
        assert_security_headers(r)
    assert httpx.get(f"{server.url}/health").json()["votes"] == 1


# Any response of the app, refusals and errors included: (method, path, body, status)
RESPONSES = [
    ("GET", "/", None, 200),
    ("GET", f"/label/{ALICE}", None, 200),
    ("GET", f"/label/{WRONG}", None, 403),
    ("GET", f"/api/{ALICE}/next", None, 200),
    ("GET", f"/api/{WRONG}/next", None, 403),
    ("GET", f"/api/{ALICE}/images/shoes/img0.png", None, 200),
    ("GET", f"/api/{ALICE}/images/%2e%2e/plan.csv", None, 400),
    ("GET", f"/api/{ALICE}/images/shoes/img5.png", None, 404),
    ("POST", f"/api/{ALICE}/votes", b"{", 422),
    ("POST", f"/api/{ALICE}/votes", b"x" * (MAX_BODY_BYTES + 1), 413),
    ("POST", f"/api/{WRONG}/votes", b"x" * (MAX_BODY_BYTES + 1), 403),
    ("POST", "/health", None, 405),
    ("GET", "/no/such/page", None, 404),
    ("GET", "/static/app.js", None, 200),
    ("GET", "/boom", None, 500),  # an unhandled error in the app
]


@pytest.mark.parametrize("method, path, body, status", RESPONSES, ids=[f"{m}-{p[:40]}-{s}" for m, p, _, s in RESPONSES])
def test_every_response_carries_the_security_headers(plan, tmp_path, method, path, body, status):
    app = create_app(plan, tmp_path / "votes.sqlite", tokens=TOKENS, settings=QueueSettings(control_rate=0.0))

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert_security_headers(r)
