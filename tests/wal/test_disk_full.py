"""Disk full on a real small filesystem (tmpfs with size=): plain appends stop, reserved ones go on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from walhelpers import body_for

from spitfire.wal import Durability, FileStorage, NoSpaceError, WalConfig

Run = Any
SEG = 64 * 1024
CONFIG = WalConfig(segment_size=SEG, reserve_bytes=8 * 1024, space_retry_ms=5)
#: Growing segments (16, 32, 64... KiB): the reserve of each is proportionate (an eighth of 16 KiB).
GROWING = WalConfig(
    segment_size=4 * SEG, first_segment_size=16 * 1024, reserve_bytes=8 * 1024, space_retry_ms=5
)


@pytest.fixture
def small_fs(mount_tmpfs: Callable[[str], Path]) -> Path:
    return mount_tmpfs("1m")


async def _wait(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("config", [CONFIG, GROWING], ids=["fixed", "growing"])
def test_plain_appends_refused_reserved_appends_commit(
    small_fs: Path, run: Run, config: WalConfig, fill_disk: Callable[..., None]
) -> None:
    data = small_fs / "data"
    acked: list[tuple[int, bytes]] = []

    async def main() -> None:
        storage = FileStorage(data, config)
        try:
            await scenario(storage)
        finally:
            # Always: close() stops and joins the preparer, which would otherwise go on retrying
            # (and logging) after the fixture has unmounted the filesystem.
            await storage.close()
        assert storage._ctx is not None and not storage._ctx.preparer._thread.is_alive()

    async def scenario(storage: FileStorage) -> None:
        a, _ = storage.open_log("a", Durability.GROUP)
        b, _ = storage.open_log("b", Durability.GROUP)
        # Queue a crosses half of its segment: its spare segment gets prepared while space remains.
        while a.last_lsn < 200:
            body = body_for(a.last_lsn, 150)
            acked.append((a.append(1, body), body))
        await _wait(lambda: a._prepared is not None)
        fill_disk(small_fs / "filler")
        # Queue b asks for a segment it cannot get: the storage is now low on space. b stops
        # appending once it has asked (well before its roll), so the preparer's failure is what
        # raises the flag, however late the preparer thread gets to run.
        i = 0
        while not b._prep_requested:
            b.append(1, body_for(i, 150))
            i += 1
            assert i < 1000
        await _wait(lambda: b.low_on_space)
        assert a.low_on_space
        # Plain appends of a go on below the reserve line of the current segment, then are refused.
        with pytest.raises(NoSpaceError, match="free disk space"):
            while True:
                body = body_for(a.last_lsn, 150)
                acked.append((a.append(1, body), body))
        segment = a._seg.number
        # Reserved appends use the reserve, then the prepared spare, then fail too.
        with pytest.raises(NoSpaceError, match="disk"):
            while True:
                body = body_for(a.last_lsn, 150)
                lsn = a.append(2, body, reserved=True)
                future = a.commit(lsn)
                assert future is not None
                await future
                acked.append((lsn, body))
        assert a._seg.number == segment + 1  # moved into the spare
        with pytest.raises(NoSpaceError):
            a.append(1, b"new job")
        # Space comes back: the preparer's retry clears the flag and plain appends work again.
        (small_fs / "filler").unlink()
        await _wait(lambda: not a.low_on_space)
        body = b"after space returned"
        lsn = a.append(1, body)
        acked.append((lsn, body))

    run(main())

    async def check() -> None:
        storage = FileStorage(data, config)
        try:
            _, recovery = storage.open_log("a", Durability.GROUP)
            assert [(r.lsn, r.body) for r in recovery.records] == acked
            assert any(r.rtype == 2 for r in recovery.records)
        finally:
            await storage.close()

    run(check())
    sizes = {p.stat().st_size for p in (data / "queues" / "a" / "wal").glob("*.seg")}
    assert len(sizes) == 1 if config is CONFIG else len(sizes) > 1, sizes  # growing: the segments grew
    assert os.path.ismount(small_fs)
