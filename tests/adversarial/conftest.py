"""Fixtures for the hostile-user tests (the labeling helpers are reused)."""
from __future__ import annotations

# The labeling tests' own fixtures (a private offline cache; real `label serve` processes), not copies.
from tests.labeling.conftest import _offline_private_cache, live_server  # noqa: F401
