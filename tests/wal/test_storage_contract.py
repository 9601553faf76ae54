"""The `Storage` contract, run against the file engine and the in-memory backend alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from walhelpers import SMALL

from spitfire.wal import Durability, FileStorage, LogClosedError, Storage, StorageError

Run = Any
Factory = Callable[[], Storage]


@pytest.fixture(params=["file", "memory"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory that builds the storage again over the same "disk" (a restart)."""
    if request.param == "file":
        return lambda: FileStorage(tmp_path, SMALL)
    memory = pytest.importorskip(
        "spitfire.wal.memory", reason="wal/memory.py (MemoryStorage) not written yet"
    )
    state = memory.MemoryState()
    return lambda: memory.MemoryStorage(state)


def test_lsns_start_at_one_and_survive_restart(reopen: Factory, run: Run) -> None:
    async def first() -> None:
        storage = reopen()
        log, recovery = storage.open_log("jobs", Durability.GROUP)
        assert (log.queue, log.last_lsn, recovery.snapshot_lsn, list(recovery.records)) == ("jobs", 0, 0, [])
        assert [log.append(1, b"a"), log.append(2, b"b", reserved=True)] == [1, 2]
        future = log.commit(2)
        if future is not None:
            await future
        assert log.commit(2) is None
        await log.flush()
        await storage.close()

    async def second() -> None:
        storage = reopen()
        assert storage.queues() == ["jobs"]
        log, recovery = storage.open_log("jobs", Durability.SYNC)
        assert [(r.lsn, r.rtype, r.body) for r in recovery.records] == [(1, 1, b"a"), (2, 2, b"b")]
        assert log.last_lsn == 2 and log.durability is Durability.SYNC
        assert log.append(1, b"c") == 3
        await storage.close()

    run(first())
    run(second())


def test_snapshot_then_records_after_it(reopen: Factory, run: Run) -> None:
    async def first() -> None:
        storage = reopen()
        log, _ = storage.open_log("q", Durability.ASYNC)
        for i in range(5):
            log.append(1, b"%d" % i)
        writer = log.snapshot()
        assert writer.lsn == 5
        writer.add(b"one")
        writer.add(b"two")
        log.append(1, b"after")
        await writer.finish()
        aborted = log.snapshot()
        aborted.add(b"never used")
        aborted.abort()
        await storage.close()

    async def second() -> None:
        storage = reopen()
        _, recovery = storage.open_log("q", Durability.GROUP)
        assert recovery.snapshot_lsn == 5
        assert list(recovery.snapshot_chunks) == [b"one", b"two"]
        assert [(r.lsn, r.body) for r in recovery.records] == [(6, b"after")]
        await storage.close()

    run(first())
    run(second())


def test_durability_modes_and_commit(reopen: Factory, run: Run) -> None:
    async def main() -> None:
        storage = reopen()
        log, _ = storage.open_log("q", Durability.GROUP)
        for mode in Durability:
            log.set_durability(mode)
            assert log.durability is mode
            lsns = [log.append(1, b"x") for _ in range(3)]
            futures = [log.commit(lsn) for lsn in lsns]
            if mode is Durability.ASYNC:
                assert futures == [None] * 3
            await asyncio.gather(*(f for f in futures if f is not None))
        await log.flush()
        assert not log.low_on_space
        await storage.close()

    run(main())


def test_drop_and_errors(reopen: Factory, run: Run) -> None:
    async def main() -> None:
        storage = reopen()
        log, _ = storage.open_log("gone", Durability.GROUP)
        log.append(1, b"x")
        with pytest.raises(StorageError):
            storage.open_log("gone", Durability.GROUP)
        with pytest.raises(ValueError):
            log.append(0, b"bad type")
        await storage.drop_log("gone")
        assert storage.queues() == []
        with pytest.raises(LogClosedError):
            log.append(1, b"y")
        log2, recovery = storage.open_log("gone", Durability.GROUP)
        assert list(recovery.records) == [] and log2.last_lsn == 0
        await storage.close()

    run(main())
