"""The group commit's monitoring figures (`FileStorage.flush_stats`) and the `Buckets` they use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from walhelpers import body_for

from spitfire.wal import Buckets, Durability, FileStorage, WalConfig
from spitfire.wal.format import record_size

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_buckets_count_by_upper_bound_and_read_cumulative() -> None:
    b = Buckets((1.0, 2.0, 4.0))
    for value in (0.5, 1.0, 1.5, 3.0, 9.0):
        b.observe(value)
    b.observe(2.0, weight=3)
    assert b.counts == [2, 4, 1, 1]  # le=1 holds 1.0 itself (Prometheus' "less or equal")
    cumulative, total_sum, count = b.read()
    assert cumulative == [2, 6, 7, 8] and count == 8
    assert total_sum == pytest.approx(0.5 + 1.0 + 1.5 + 3.0 + 9.0 + 6.0)
    with pytest.raises(ValueError):
        Buckets((2.0, 1.0))


def test_flush_stats_count_every_record_and_byte_once(tmp_path: Path, run: Run) -> None:
    """Records and bytes per round add up to what was appended, across segment rolls, in GROUP and
    SYNC mode; durations are plausible."""
    config = WalConfig(segment_size=64 * 1024)  # real fdatasync; a roll every ~600 records

    async def main() -> tuple[FileStorage, int]:
        storage = FileStorage(tmp_path, config)
        log, _ = storage.open_log("q", Durability.GROUP)
        sync, _ = storage.open_log("s", Durability.SYNC)
        expected = 0

        async def producer(t: int) -> None:
            nonlocal expected
            for i in range(40):
                body = body_for(t * 100 + i, 50 + t)
                expected += record_size(len(body))
                future = log.commit(log.append(7, body))
                assert future is not None
                await future

        await asyncio.gather(*(producer(t) for t in range(30)))
        for i in range(5):
            expected += record_size(len(body_for(i)))
            future = sync.commit(sync.append(1, body_for(i)))
            assert future is not None
            await future
        await storage.close()
        return storage, expected

    storage, expected = run(main())
    assert len(list((tmp_path / "queues" / "q" / "wal").glob("*.seg"))) >= 2
    stats = storage.flush_stats
    _, records, rounds = stats.round_records.read()
    assert records == 1205 and rounds == stats.rounds  # every record counted once, rolls included
    assert stats.round_bytes.sum == expected
    assert 5 <= stats.rounds < 1205  # SYNC records each had a round; GROUP records shared them
    assert stats.groups >= stats.rounds
    _, fsync_sum, _ = stats.round_seconds.read()
    _, commit_sum, groups = stats.commit_seconds.read()
    assert 0 < fsync_sum < 60 and 0 < commit_sum < 60 and groups == stats.groups
    # A group waits at least for its own fdatasync: commit latency is never below the fsync's.
    assert commit_sum / groups >= 0.5 * fsync_sum / stats.rounds
    assert FileStorage(tmp_path).flush_stats.rounds == 0  # each storage counts from zero
