"""Fixtures of the server tests: real spitfire-server processes on free loopback ports."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from protoclient import ServerProcess, server_process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by a module's tests (each test uses its own queues)."""
    with server_process(tmp_path_factory.mktemp("srv") / "data") as proc:
        yield proc


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name unique to the test."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:150]
