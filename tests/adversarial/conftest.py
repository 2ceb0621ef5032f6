"""Fixtures for the hostile-user tests (the labeling helpers are reused)."""
from __future__ import annotations

import pytest

from ..labeling.helpers import LiveServer


@pytest.fixture(autouse=True)
def _offline_private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CTXSIM_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def live_server(tmp_path):
    """Factory: ``live_server(plan, db, *serve_args)`` starts ``label serve``; all stop at the end."""
    servers: list[LiveServer] = []

    def start(plan, db, *args: str) -> LiveServer:
        server = LiveServer(plan, db, *args, log_dir=tmp_path).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
