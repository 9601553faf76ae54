"""MemoryStorage keeps the storage contract's semantics."""

from __future__ import annotations

import asyncio

import pytest

from spitfire.wal.api import Durability, LogClosedError, NoSpaceError, RecordTooLargeError
from spitfire.wal.memory import MemoryState, MemoryStorage


def test_lsns_snapshots_and_restart() -> None:
    async def body() -> None:
        state = MemoryState()
        storage = MemoryStorage(state)
        log, rec = storage.open_log("q", Durability.GROUP)
        assert rec.snapshot_lsn == 0 and list(rec.records) == []
        assert [log.append(1, b"a"), log.append(2, b"b")] == [1, 2]
        assert log.commit(2) is None
        writer = log.snapshot()
        assert writer.lsn == 2
        log.append(3, b"c")
        writer.add(b"chunk")
        aborted = log.snapshot()
        aborted.add(b"never")
        aborted.abort()
        await writer.finish()
        await storage.close()
        with pytest.raises(LogClosedError):
            log.append(1, b"x")
        log2, rec2 = MemoryStorage(state).open_log("q", Durability.GROUP)
        assert rec2.snapshot_lsn == 2 and list(rec2.snapshot_chunks) == [b"chunk"]
        assert [(r.lsn, r.rtype, r.body) for r in rec2.records] == [(3, 3, b"c")]
        assert log2.append(1, b"d") == 4
        assert state.logs["q"].snapshots_aborted == 1

    asyncio.run(body())


def test_full_disk_refuses_plain_appends_first() -> None:
    state = MemoryState(max_record_size=10)
    log, _ = MemoryStorage(state).open_log("q", Durability.SYNC)
    state.low_on_space = True
    assert log.low_on_space
    with pytest.raises(NoSpaceError):
        log.append(1, b"x")
    assert log.append(1, b"x", reserved=True) == 1
    state.out_of_space = True
    with pytest.raises(NoSpaceError):
        log.append(1, b"x", reserved=True)
    state.low_on_space = state.out_of_space = False
    with pytest.raises(RecordTooLargeError):
        log.append(1, b"x" * 11)
    assert log.last_lsn == 1
