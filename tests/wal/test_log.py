"""FileStorage / FileQueueLog: append, commit, rolls, modes, flush, close, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from walhelpers import SMALL, body_for, segment_files

from spitfire.wal import (
    Durability,
    FileStorage,
    LogClosedError,
    RecordTooLargeError,
    StorageError,
    WalConfig,
)

Run = Any


async def _write(data_dir: Path, mode: Durability, n: int, config: WalConfig = SMALL) -> list[int]:
    storage = FileStorage(data_dir, config)
    log, _ = storage.open_log("q", mode)
    start = log.last_lsn
    lsns = []
    for i in range(n):
        lsn = log.append(1 + i % 200, body_for(start + i, 50 + i % 300))
        lsns.append(lsn)
        future = log.commit(lsn)
        if mode is Durability.ASYNC:
            assert future is None
        elif i % 37 == 0:
            assert future is not None
            await future
            assert log.durable_lsn >= lsn
            assert log.commit(lsn) is None
    await storage.close()
    return lsns


async def _read(data_dir: Path, config: WalConfig = SMALL, queue: str = "q") -> list[tuple[int, int, bytes]]:
    storage = FileStorage(data_dir, config)
    log, recovery = storage.open_log(queue, Durability.GROUP)
    records = [(r.lsn, r.rtype, r.body) for r in recovery.records]
    assert log.last_lsn == (records[-1][0] if records else 0)
    await storage.close()
    return records


@pytest.mark.parametrize("mode", list(Durability))
def test_roundtrip_with_rolls(tmp_path: Path, run: Run, mode: Durability) -> None:
    lsns = run(_write(tmp_path, mode, 3000))
    assert lsns == list(range(1, 3001))
    assert len(segment_files(tmp_path)) > 5  # rolled many times
    more = run(_write(tmp_path, mode, 500))
    assert more == list(range(3001, 3501))
    records = run(_read(tmp_path))
    assert [r[0] for r in records] == list(range(1, 3501))
    for lsn, rtype, body in records:
        i = lsn - 1
        j = i if i < 3000 else i - 3000
        assert rtype == 1 + j % 200
        assert body == body_for(i, 50 + j % 300)


def test_concurrent_group_commit_shares_fsyncs(tmp_path: Path, run: Run) -> None:
    config = WalConfig(segment_size=256 * 1024)  # real fdatasync

    async def main() -> tuple[int, int]:
        storage = FileStorage(tmp_path, config)
        log, _ = storage.open_log("q", Durability.GROUP)

        async def task(t: int) -> None:
            for i in range(20):
                lsn = log.append(7, body_for(t * 100 + i))
                future = log.commit(lsn)
                assert future is not None
                await future

        await asyncio.gather(*(task(t) for t in range(50)))
        assert storage._ctx is not None
        rounds = storage._ctx.flusher.rounds
        await storage.close()
        return log.last_lsn, rounds

    last, rounds = run(main())
    assert last == 1000
    assert rounds < 200  # 1000 commits shared far fewer fsync rounds
    assert len(run(_read(tmp_path, config))) == 1000


def test_sync_mode_acknowledges_in_order_one_fsync_each(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path, WalConfig(segment_size=64 * 1024))
        log, _ = storage.open_log("q", Durability.SYNC)
        futures = []
        for i in range(10):
            future = log.commit(log.append(1, body_for(i)))
            assert future is not None
            futures.append(future)
        order: list[int] = []
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _, i=i: order.append(i))
        await asyncio.gather(*futures)
        assert order == list(range(10))
        assert storage._ctx is not None and storage._ctx.flusher.rounds >= 10
        await storage.close()

    run(main())


def test_durability_mode_switching(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path, SMALL)
        log, _ = storage.open_log("q", Durability.ASYNC)
        a = log.append(1, b"async")
        assert log.commit(a) is None
        log.set_durability(Durability.GROUP)  # seals the async group
        assert log.durability is Durability.GROUP
        b = log.append(1, b"group")
        future = log.commit(b)
        assert future is not None
        await future
        assert log.durable_lsn >= b
        log.set_durability(Durability.SYNC)
        c = log.append(1, b"sync")
        future = log.commit(c)
        assert future is not None
        await future
        log.set_durability(Durability.ASYNC)
        d = log.append(1, b"async again")
        await log.flush()
        assert log.durable_lsn == d
        await storage.close()

    run(main())
    assert [r[2] for r in run(_read(tmp_path))] == [b"async", b"group", b"sync", b"async again"]


def test_async_timer_makes_records_durable(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path, WalConfig(segment_size=64 * 1024, async_flush_ms=2))
        log, _ = storage.open_log("q", Durability.ASYNC)
        lsn = log.append(1, b"x")
        for _ in range(500):
            if log.durable_lsn >= lsn:
                break
            await asyncio.sleep(0.002)
        assert log.durable_lsn == lsn
        await storage.close()

    run(main())


def test_errors_and_close(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path, SMALL)
        log, _ = storage.open_log("q", Durability.GROUP)
        with pytest.raises(ValueError, match="record type"):
            log.append(0, b"x")
        with pytest.raises(RecordTooLargeError):
            log.append(1, bytes(SMALL.segment_size))
        assert log.last_lsn == 0
        log.append(1, bytes(SMALL.max_body_size))  # the largest record fits
        with pytest.raises(StorageError, match="already open"):
            storage.open_log("q", Durability.GROUP)
        with pytest.raises(ValueError, match=r"never appended"):
            log.commit(99)
        with pytest.raises(ValueError, match="invalid queue name"):
            storage.open_log("../etc", Durability.GROUP)
        with pytest.raises(ValueError, match="invalid queue name"):
            storage.open_log("", Durability.GROUP)
        storage.open_log("other.queue-1_x", Durability.GROUP)
        assert storage.queues() == ["other.queue-1_x", "q"]
        await storage.close()
        with pytest.raises(LogClosedError):
            log.append(1, b"x")
        with pytest.raises(LogClosedError):
            storage.open_log("q", Durability.GROUP)

    run(main())


def test_drop_log_removes_files(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path, SMALL)
        log, _ = storage.open_log("gone", Durability.GROUP)
        lsn = log.append(1, b"x")
        future = log.commit(lsn)
        await storage.drop_log("gone")
        assert future is not None
        with pytest.raises(LogClosedError):
            await future
        assert storage.queues() == []
        assert not (tmp_path / "queues" / "gone").exists()
        await storage.close()

    run(main())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"segment_size": 1000},
        {"segment_size": 64 * 1024, "reserve_bytes": 64 * 1024},
        {"reserve_bytes": 7},
        {"async_flush_ms": 0},
        {"prepare_ahead": 1.5},
        {"flush_threads": 0},
        {"space_retry_ms": -1},
    ],
)
def test_config_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="WalConfig"):
        WalConfig(**kwargs)


def test_config_defaults() -> None:
    config = WalConfig()
    assert config.segment_size == 64 * 2**20
    assert config.reserve_bytes == 2**20
    assert WalConfig(segment_size=64 * 1024).reserve_bytes == 8 * 1024


def test_fsync_failure_fails_the_futures(tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    async def main() -> None:
        storage = FileStorage(tmp_path, WalConfig(segment_size=64 * 1024))
        log, _ = storage.open_log("q", Durability.GROUP)
        monkeypatch.setattr(os, "fdatasync", broken)
        future = log.commit(log.append(1, b"x"))
        assert future is not None
        with pytest.raises(StorageError, match="fdatasync"):
            await future
        with pytest.raises(LogClosedError, match="fdatasync"):
            log.append(1, b"y")
        monkeypatch.undo()
        with pytest.raises(StorageError):
            await log.flush()
        await storage.close()

    run(main())


def test_close_makes_every_submitted_group_durable_across_logs(tmp_path: Path, run: Run) -> None:
    """The flusher's hand-off queue: groups sealed just before close are all fsynced and resolved,
    SYNC groups one round each, and the thread exits."""

    async def main() -> None:
        storage = FileStorage(tmp_path, WalConfig(segment_size=64 * 1024))
        logs = [storage.open_log(f"q{i}", mode)[0] for i, mode in enumerate(list(Durability) * 2)]
        futures = []
        for i in range(30):
            log = logs[i % len(logs)]
            future = log.commit(log.append(1, body_for(i)))
            if future is not None:
                futures.append(future)
        assert storage._ctx is not None
        flusher = storage._ctx.flusher
        await storage.close()
        assert all(f.done() and f.exception() is None for f in futures)
        assert not flusher._thread.is_alive()

    run(main())
    for i in range(6):
        assert len(run(_read(tmp_path, queue=f"q{i}"))) == 5
