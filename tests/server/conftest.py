"""Fixtures of the server tests: real spitfire-server processes on free loopback ports."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from protoclient import ServerProcess, server_process

T = TypeVar("T")

#: Longest a whole async test body may run.
TEST_TIMEOUT = 90.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a test's async body on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by a module's tests (each test uses its own queues)."""
    with server_process(tmp_path_factory.mktemp("srv") / "data") as proc:
        yield proc


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name unique to the test."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:150]
