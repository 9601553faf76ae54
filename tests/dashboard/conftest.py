"""Fixtures of the dashboard API tests: one live server per module (the HTTP tests' helpers), a
queue name per test."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "http"))
from httphelpers import HttpServer, http_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """One server shared by a module's tests (each test uses its own queues); workers count as
    quiet after 3 heartbeat intervals of 0.2 s."""
    with http_server(tmp_path_factory.mktemp("dash") / "data", "--heartbeat-interval", "0.2") as proc:
        yield proc


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name unique to the test."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:150]
