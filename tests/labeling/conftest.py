"""Fixtures for the labeling tests (helpers live in helpers.py)."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from .helpers import TOKENS, LiveServer, make_image_tree, write_plan_csv


@pytest.fixture(autouse=True)
def _offline_private_cache(tmp_path, monkeypatch):
    """No model hub, and embeddings cached in the test's own folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CTXSIM_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def image_root(tmp_path) -> Path:
    root = tmp_path / "images"
    make_image_tree(root)
    return root


@pytest.fixture
def plan_rows() -> list[tuple[str, str, str]]:
    """Ten distinct triplets over the generated shoes (PNG) and metals (JPEG)."""
    s = [f"shoes/img{i}.png" for i in range(6)]
    m = [f"metals/img{i}.jpg" for i in range(5)]
    return [
        (s[0], s[1], s[2]), (s[1], s[2], s[3]), (s[2], s[3], s[4]), (s[3], s[4], s[5]), (s[4], s[5], s[0]),
        (m[0], m[1], m[2]), (m[1], m[2], m[3]), (m[2], m[3], m[4]), (m[3], m[4], m[0]), (m[4], m[0], m[1]),
    ]


@pytest.fixture
def plan_csv(image_root, plan_rows) -> Path:
    """A plan inside the image root (so the default root, the plan's folder, is right)."""
    return write_plan_csv(image_root / "plan.csv", plan_rows)


@pytest.fixture
def tokens_csv(tmp_path) -> Path:
    path = tmp_path / "tokens.csv"
    pl.DataFrame({"name": list(TOKENS), "token": list(TOKENS.values())}).write_csv(path)
    return path


@pytest.fixture
def live_server(tmp_path):
    """Factory: ``live_server(plan, db, *serve_args)`` starts a server; all are stopped at the end."""
    servers: list[LiveServer] = []

    def start(plan: Path, db: Path, *args: str) -> LiveServer:
        server = LiveServer(plan, db, *args, log_dir=tmp_path).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
