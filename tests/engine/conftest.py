"""The ``harness`` fixture: every engine test runs on MemoryStorage and on the file engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_harness import Harness, file_storage_factory

from spitfire.wal.memory import MemoryState, MemoryStorage


@pytest.fixture(params=["memory", "file"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "file":
        make = file_storage_factory(tmp_path / "data")
        if make is None:
            pytest.skip("spitfire.wal.FileStorage is not written yet")
        return Harness(make, None)
    state = MemoryState()
    return Harness(lambda: MemoryStorage(state), state)
