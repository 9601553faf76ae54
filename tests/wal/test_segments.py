"""Growing segments and queue creation (items 6 and 7): a queue's first segment is small,
each next one doubles up to `WalConfig.segment_size`, a failed creation leaves nothing behind, and a
directory without a segment never stops start-up."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from walhelpers import body_for, segment_files

from spitfire.wal import Durability, FileStorage, NoSpaceError, WalConfig
from spitfire.wal import storage as storage_module
from spitfire.wal.config import DEFAULT_FIRST_SEGMENT_SIZE
from spitfire.wal.format import decode_segment_header

Run = Any
MiB = 2**20


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path``, as `du` counts them (st_blocks * 512, directories included)."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total + os.lstat(path).st_blocks * 512


def header_sizes(data_dir: Path, queue: str = "q") -> list[int]:
    """Each segment's size as its header records it (checked against the file's size)."""
    sizes = []
    for path in segment_files(data_dir, queue):
        header = decode_segment_header(path.read_bytes()[:64])
        assert header.segment_size == path.stat().st_size
        sizes.append(header.segment_size)
    return sizes


async def wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(2500):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not reached within 5 s")


def test_segments_start_small_and_double_up_to_the_maximum(tmp_path: Path, run: Run) -> None:
    config = WalConfig(segment_size=64 * 1024, first_segment_size=8192, fsync=False)
    written: list[tuple[int, bytes]] = []

    async def main() -> None:
        storage = FileStorage(tmp_path, config)
        try:
            log = await storage.create_log("q", Durability.GROUP)
            for i in range(1200):
                body = body_for(i, 200)
                written.append((log.append(1, body), body))
            await log.flush()
        finally:
            await storage.close()

    run(main())
    sizes = header_sizes(tmp_path)
    assert sizes[:5] == [8192, 16384, 32768, 65536, 65536], sizes
    assert set(sizes[3:]) == {65536} and len(sizes) > 5

    async def reopen() -> None:  # readers take each size from the header, not from the config
        storage = FileStorage(tmp_path, WalConfig(segment_size=4096, fsync=False))
        try:
            _, recovery = storage.open_log("q", Durability.GROUP)
            assert [(r.lsn, r.body) for r in recovery.records] == written
        finally:
            await storage.close()

    run(reopen())


def test_a_queue_holding_one_job_costs_at_most_2_mib(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path)  # the server's defaults: 64 MiB segments at most
        try:
            log = await storage.create_log("q", Durability.GROUP)
            future = log.commit(log.append(1, body_for(0, 2000)))
            assert future is not None
            await future
            assert disk_usage(tmp_path / "queues" / "q") <= 2 * MiB
            assert header_sizes(tmp_path) == [DEFAULT_FIRST_SEGMENT_SIZE]
        finally:
            await storage.close()

    run(main())


def test_the_prepared_segment_is_sized_like_the_one_it_follows_doubled(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path, WalConfig(fsync=False))
        try:
            log = await storage.create_log("q", Durability.GROUP)
            # The first segment is 1 MiB: below half of it nothing is prepared ahead...
            while log._offset + 20_000 < MiB // 2:
                log.append(1, body_for(log.last_lsn, 10_000))
            await log.flush()
            assert log._prepared is None and len(segment_files(tmp_path)) == 1
            # ... past half of it, the next one is prepared: 2 MiB, not 64.
            log.append(1, body_for(log.last_lsn, 30_000))
            await wait_for(lambda: log._prepared is not None)
            assert log._prepared is not None and log._prepared.size == 2 * MiB
            await log.flush()
            assert disk_usage(tmp_path / "queues" / "q") <= 3 * MiB + 64 * 1024
        finally:
            await storage.close()

    run(main())


def test_the_reserve_is_proportionate_on_small_segments() -> None:
    config = WalConfig()
    assert config.reserve_for(MiB) == MiB // 8
    assert config.reserve_for(64 * MiB) == MiB
    assert WalConfig(segment_size=8 * MiB).reserve_for(2 * MiB) == 256 * 1024
    assert config.initial_segment_size == MiB
    assert WalConfig(segment_size=64 * 1024).initial_segment_size == 64 * 1024
    assert config.next_segment_size(32 * MiB) == 64 * MiB and config.next_segment_size(64 * MiB) == 64 * MiB
    # A segment written under a larger maximum is followed by one of the current maximum.
    assert WalConfig(segment_size=4 * MiB).next_segment_size(64 * MiB) == 4 * MiB


@pytest.mark.parametrize("size", [1000, 0, 4096 + 8])
def test_first_segment_size_is_validated(size: int) -> None:
    with pytest.raises(ValueError, match="first_segment_size"):
        WalConfig(first_segment_size=size)


def test_a_record_larger_than_the_doubled_size_gets_a_segment_that_fits(tmp_path: Path, run: Run) -> None:
    config = WalConfig(segment_size=MiB, first_segment_size=16 * 1024, fsync=False)
    big = body_for(1, 200_000)
    written: list[tuple[int, bytes]] = []

    async def main() -> None:
        storage = FileStorage(tmp_path, config)
        try:
            log = await storage.create_log("q", Durability.GROUP)
            written.append((log.append(1, b"small"), b"small"))
            written.append((log.append(1, big), big))
            written.append((log.append(2, b"ack", reserved=True), b"ack"))
            await log.flush()
        finally:
            await storage.close()

    run(main())
    sizes = header_sizes(tmp_path)
    # 32 KiB would follow 16 KiB; the 200 KB record (plus a 32 KiB reserve) needs 256 KiB.
    assert sizes == [16 * 1024, 256 * 1024], sizes

    async def reopen() -> None:
        storage = FileStorage(tmp_path, config)
        try:
            _, recovery = storage.open_log("q", Durability.GROUP)
            assert [(r.lsn, r.body) for r in recovery.records] == written
        finally:
            await storage.close()

    run(reopen())


def test_a_new_queue_is_made_durable_directory_by_directory(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[str, list[str]]] = []
    real = storage_module.fsync_dir

    def recording(path: Path) -> None:
        synced.append((str(Path(path).relative_to(tmp_path)), sorted(os.listdir(path))))
        real(path)

    monkeypatch.setattr(storage_module, "fsync_dir", recording)

    async def main() -> None:
        storage = FileStorage(tmp_path / "data")
        try:
            await storage.create_log("q", Durability.GROUP)
        finally:
            await storage.close()

    run(main())
    assert synced == [
        ("data", ["queues"]),  # the queues directory was new
        ("data/queues", ["q"]),  # after the queue's directory is made
        ("data/queues/q", ["snapshots", "wal"]),  # after wal/ (and snapshots/) are made in it
    ]
    # The first segment's header is durable at once: recovery finds an (empty) segment.
    assert header_sizes(tmp_path / "data") == [DEFAULT_FIRST_SEGMENT_SIZE]


def test_a_directory_without_a_segment_is_no_queue_and_is_replaced(tmp_path: Path, run: Run) -> None:
    queues = tmp_path / "queues"
    (queues / "empty" / "wal").mkdir(parents=True)  # what an older build left after NO_SPACE
    (queues / "zeroed" / "wal").mkdir(parents=True)  # an older build's unused first segment
    (queues / "zeroed" / "wal" / "0000000000000000.seg").write_bytes(bytes(8192))
    (queues / "damaged" / "wal").mkdir(parents=True)  # damage is recovery's to report, never hidden
    (queues / "damaged" / "wal" / "0000000000000000.seg").write_bytes(bytes(100) + b"x" + bytes(8091))

    async def main() -> None:
        storage = FileStorage(tmp_path, WalConfig(fsync=False))
        try:
            assert storage.queues() == ["damaged"]
            log, recovery = storage.open_log("empty", Durability.GROUP)
            assert recovery.records == [] and log.last_lsn == 0
            future = log.commit(log.append(1, b"job"))
            assert future is not None
            await future
            assert storage.queues() == ["damaged", "empty"]
        finally:
            await storage.close()

    run(main())


@pytest.fixture
def small_fs(mount_tmpfs: Callable[[str], Path]) -> Path:
    return mount_tmpfs("4m")


def test_a_queue_creation_refused_for_lack_of_space_leaves_nothing_behind(
    small_fs: Path, run: Run, fill_disk: Callable[..., None]
) -> None:
    data = small_fs / "data"
    config = WalConfig(space_retry_ms=5)

    async def main() -> None:
        storage = FileStorage(data, config)
        try:
            log = await storage.create_log("old", Durability.GROUP)
            assert not storage.low_on_space
            fill_disk(small_fs / "filler")
            with pytest.raises(NoSpaceError, match="free disk space"):
                await storage.create_log("new", Durability.GROUP)
            assert not (data / "queues" / "new").exists()
            assert storage.queues() == ["old"]
            assert storage.low_on_space and log.low_on_space  # readiness sees it at once
            with pytest.raises(NoSpaceError):  # and a synchronous open does the same
                storage.open_log("new", Durability.GROUP)
            assert sorted(os.listdir(data / "queues")) == ["old"]
            # Space comes back: the preparer's probe clears the flag, and the queue can be created.
            (small_fs / "filler").unlink()
            await wait_for(lambda: not storage.low_on_space)
            new = await storage.create_log("new", Durability.GROUP)
            future = new.commit(new.append(1, b"job"))
            assert future is not None
            await future
        finally:
            await storage.close()

    run(main())
    assert sorted(os.listdir(data / "queues")) == ["new", "old"]  # the probe file is gone too
