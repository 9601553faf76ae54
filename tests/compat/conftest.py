"""Fixtures of the compatibility-listener tests: a live server with --compat-http per module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "http"))
from httphelpers import HttpServer, http_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """One server with the compatibility listener, shared by a module's tests (each its own queues)."""
    data = tmp_path_factory.mktemp("compat") / "data"
    with http_server(data, "--compat-http", "127.0.0.1:0", "--max-payload", "4096") as proc:
        yield proc


@pytest.fixture
def compat(server: HttpServer) -> Iterator[httpx.Client]:
    """A client of the compatibility listener."""
    with httpx.Client(base_url=server.compat_url, timeout=30) as client:
        yield client
