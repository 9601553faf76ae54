"""Snapshots: write/finish/abort, compaction, and fall-back on partial or damaged snapshots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from walhelpers import SMALL, body_for, segment_files

from spitfire.wal import Durability, FileStorage, Recovery, StorageError

Run = Any


def snaps(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "queues" / "q" / "snapshots").iterdir())


async def _session(data_dir: Path, n: int, snapshot: bool, chunks: int = 3) -> int:
    """Append n records, then (optionally) take a snapshot; returns the snapshot LSN."""
    storage = FileStorage(data_dir, SMALL)
    log, _ = storage.open_log("q", Durability.GROUP)
    start = log.last_lsn
    for i in range(n):
        log.append(1, body_for(start + i, 300))
    lsn = 0
    if snapshot:
        writer = log.snapshot()
        lsn = writer.lsn
        for c in range(chunks):
            writer.add(f"state@{lsn}#{c}".encode() * 50)
        await writer.finish()
    await storage.close()
    return lsn


async def _recover(data_dir: Path) -> Recovery:
    storage = FileStorage(data_dir, SMALL)
    try:
        return storage.open_log("q", Durability.GROUP)[1]
    finally:
        await storage.close()


def _check(recovery: Recovery, snapshot_lsn: int, last: int) -> None:
    assert recovery.snapshot_lsn == snapshot_lsn
    chunks = list(recovery.snapshot_chunks)
    if snapshot_lsn:
        assert chunks == [f"state@{snapshot_lsn}#{c}".encode() * 50 for c in range(3)]
    records = list(recovery.records)
    assert [r.lsn for r in records] == list(range(snapshot_lsn + 1, last + 1))
    assert all(r.body == body_for(r.lsn - 1, 300) for r in records)


def test_snapshot_compaction_keeps_what_the_previous_needs(tmp_path: Path, run: Run) -> None:
    s1 = run(_session(tmp_path, 700, True))
    s2 = run(_session(tmp_path, 700, True))
    first_segments = len(segment_files(tmp_path))
    s3 = run(_session(tmp_path, 700, True))
    assert [p.name for p in snaps(tmp_path)] == [f"snap-{s2:020d}.snap", f"snap-{s3:020d}.snap"]
    assert s1 < s2 < s3 == 2100
    # Segments wholly below s2 are gone; the one holding LSN s2 + 1 remains.
    assert len(segment_files(tmp_path)) < first_segments + 5
    _check(run(_recover(tmp_path)), s3, 2100)
    # The newest snapshot is damaged: recovery falls back to s2, whose records are still there.
    newest = snaps(tmp_path)[-1]
    data = bytearray(newest.read_bytes())
    data[200] ^= 1
    newest.write_bytes(data)
    recovery = run(_recover(tmp_path))
    _check(recovery, s2, 2100)
    assert any("damaged" in note for note in recovery.notes)
    assert (newest.parent / (newest.name + ".broken")).exists()


@pytest.mark.parametrize("fault", ["tmp", "truncated", "no-end", "flip", "bad-count"])
def test_partial_or_corrupt_snapshot_falls_back(tmp_path: Path, run: Run, fault: str) -> None:
    s1 = run(_session(tmp_path, 300, True))
    s2 = run(_session(tmp_path, 300, True))
    run(_session(tmp_path, 50, False))
    newest = snaps(tmp_path)[-1]
    data = bytearray(newest.read_bytes())
    if fault == "tmp":
        os.rename(newest, newest.with_name(newest.name + ".tmp"))
    elif fault == "truncated":
        newest.write_bytes(data[: len(data) // 2])
    elif fault == "no-end":
        newest.write_bytes(data[:-24])  # drop the END record (12 + 8 bytes, padded to 24)
    elif fault == "flip":
        data[len(data) // 2] ^= 0x10
        newest.write_bytes(data)
    else:
        data[-12] += 1  # END count (the CRC no longer matches either)
        newest.write_bytes(data)
    recovery = run(_recover(tmp_path))
    _check(recovery, s1, s2 + 50)
    assert recovery.notes
    assert not list((tmp_path / "queues" / "q" / "snapshots").glob("*.tmp"))


def test_crash_between_rename_and_compaction(tmp_path: Path, run: Run) -> None:
    s1 = run(_session(tmp_path, 500, True))
    s2 = run(_session(tmp_path, 500, True))
    keep = {p: p.read_bytes() for p in segment_files(tmp_path)}
    s3 = run(_session(tmp_path, 500, True))
    # Put back segments compaction removed, as if the process died before deleting them.
    for path, data in keep.items():
        if not path.exists():
            path.write_bytes(data)
    assert s1 < s2 < s3
    _check(run(_recover(tmp_path)), s3, 1500)
    s4 = run(_session(tmp_path, 10, True))
    _check(run(_recover(tmp_path)), s4, 1510)


def test_abort_and_misuse(tmp_path: Path, run: Run) -> None:
    async def main() -> None:
        storage = FileStorage(tmp_path, SMALL)
        log, _ = storage.open_log("q", Durability.ASYNC)
        log.append(1, b"x")
        writer = log.snapshot()
        writer.add(b"chunk")
        with pytest.raises(StorageError, match="already"):
            log.snapshot()
        writer.abort()
        with pytest.raises(StorageError):
            writer.add(b"more")
        writer = log.snapshot()  # a new one may start after an abort
        await writer.finish()
        with pytest.raises(StorageError):
            await writer.finish()
        assert log.durable_lsn == 1  # finish made the log durable up to the snapshot
        await storage.close()

    run(main())
    recovery = run(_recover(tmp_path))
    assert recovery.snapshot_lsn == 1 and list(recovery.snapshot_chunks) == []
    assert not list((tmp_path / "queues" / "q" / "snapshots").glob("*.tmp"))
