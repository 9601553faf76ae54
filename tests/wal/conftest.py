"""Fixtures of the WAL tests."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a coroutine to completion on a fresh uvloop loop."""
    return uvloop.run
