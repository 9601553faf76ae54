"""The history graph's per-minute counters (index/minutes.py, server/history.py): counted from
committed records at their own time, durable through snapshots, the log tail and the retired file
of deleted queues. Time is a parameter everywhere (no clock)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from engine_harness import T0, Harness, run

from spitfire.index.minutes import BLOCK_SIZE, KEEP_HOURS, MAX_MINUTES, MinuteCounters
from spitfire.server import history as hist
from spitfire.server import records as rec
from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.server.errors import QueueNotFound, ValidationError
from spitfire.server.history import RetiredHistoryFile
from spitfire.server.records import RecordType
from spitfire.wal import FileStorage, WalConfig
from spitfire.wal.constants import RECORD_HEADER_SIZE

M0 = (T0 // 3600) * 3600  # the start of an hour, so minute arithmetic below reads plainly


# -- the data structure ---------------------------------------------------------------------------------


def test_counts_land_in_the_minute_of_their_time() -> None:
    c = MinuteCounters()
    c.add(M0 + 0.0, 0)
    c.add(M0 + 59.999, 0)
    c.add(M0 + 60.0, 1, 5)  # the next minute starts exactly at :60
    c.add(M0 - 0.001, 2)  # the previous minute (and the previous hour's block)
    assert c.minute(M0) == (2, 0, 0)
    assert c.minute(M0 + 60) == (0, 5, 0)
    assert c.minute(M0 - 1) == (0, 0, 1)
    assert c.totals() == (2, 5, 1)
    assert len(c) == 2  # two hours


def test_points_one_per_minute_zeros_included_oldest_first() -> None:
    c = MinuteCounters()
    c.add(M0 + 120, 0, 3)
    c.add(M0 + 150, 1)
    now = M0 + 180 + 30  # inside minute 3
    points = c.points(now, 5, 60)
    assert [p[0] for p in points] == [M0 - 60, M0, M0 + 60, M0 + 120, M0 + 180]
    assert [p[1:] for p in points] == [(0, 0, 0), (0, 0, 0), (0, 0, 0), (3, 1, 0), (0, 0, 0)]


def test_step_aggregation_is_aligned_to_the_step_in_epoch_time() -> None:
    c = MinuteCounters()
    for minute in range(0, 180):  # three hours, one enqueue a minute, one failure every 10 minutes
        c.add(M0 + minute * 60 + 1, 0)
        if minute % 10 == 0:
            c.add(M0 + minute * 60 + 2, 2)
    now = M0 + 179 * 60 + 5
    points = c.points(now, 180, 3600)
    assert [p[0] for p in points] == [M0, M0 + 3600, M0 + 7200]
    assert [p[1:] for p in points] == [(60, 0, 6)] * 3
    # 15-minute buckets over the last 20 minutes (2:40 to 2:59): the buckets holding them are 2:30
    # (whole: it also sums 2:30-2:39) and 2:45.
    points = c.points(now, 20, 900)
    assert points == [(M0 + 9000, 15, 0, 2), (M0 + 9900, 15, 0, 1)]
    # A bucket spanning two hour blocks: 2 hours from 0:30.
    points = c.points(M0 + 150 * 60, 60, 7200)
    assert points == [(M0, 120, 0, 12), (M0 + 7200, 31, 0, 4)]  # the newest counted up to now


def test_thirty_days_are_kept_and_older_blocks_pruned() -> None:
    c = MinuteCounters()
    c.add(M0, 0)
    c.add(M0 + KEEP_HOURS * 3600, 1)  # exactly 30 days later: the first hour is still kept
    assert len(c) == 2 and c.totals() == (1, 1, 0)
    c.add(M0 + (KEEP_HOURS + 1) * 3600, 1)  # one more hour: the first one goes
    assert len(c) == 2 and c.totals() == (0, 2, 0)
    c.add(M0, 0)  # a count older than what is kept is dropped, not resurrected
    assert c.totals() == (0, 2, 0)
    now = M0 + (KEEP_HOURS + 1) * 3600
    assert sum(p[2] for p in c.points(now, MAX_MINUTES, 86400)) == 2


def test_memory_is_bounded_whatever_the_run_length() -> None:
    c = MinuteCounters()
    for hour in range(2 * KEEP_HOURS):  # 60 days, a count every hour
        c.add(M0 + hour * 3600, 0)
    assert len(c) == KEEP_HOURS + 1
    assert c.totals()[0] == KEEP_HOURS + 1


def test_blocks_round_trip_and_merge_adds_up() -> None:
    a, b = MinuteCounters(), MinuteCounters()
    a.add(M0, 0, 7)
    a.add(M0 + 3600 * 5, 2, 2**40)  # a count past 32 bits survives
    b.add(M0, 0, 3)
    blocks = list(a.blocks())
    assert all(len(data) == 8 * BLOCK_SIZE for _, data in blocks)
    copy = MinuteCounters()
    copy.load(blocks)
    assert copy.totals() == a.totals() == (7, 0, 2**40)
    b.merge(a)
    assert b.minute(M0) == (10, 0, 0) and b.totals() == (10, 0, 2**40)
    with pytest.raises(ValueError, match="1440 bytes"):
        copy.load([(1, b"short")])


def test_query_bounds_name_the_field() -> None:
    c = MinuteCounters()
    for minutes, step, field in ((0, 60, "minutes"), (MAX_MINUTES + 1, 60, "minutes"), (60, 90, "step"),
                                 (60, 0, "step"), (60, MAX_MINUTES * 60 + 60, "step")):  # fmt: skip
        with pytest.raises(ValidationError) as info:
            hist.history_points(c, T0, minutes, step)
        assert info.value.field == field
    assert len(hist.history_points(c, T0, MAX_MINUTES, 60)) == MAX_MINUTES


# -- counted by the engine --------------------------------------------------------------------------------


async def _drain(e: Engine, queue: str, now: float, *, fail: int = 0, limit: int = 1000) -> int:
    """Reserve and ack (or fail the first ``fail``) every ready job of ``queue`` at ``now``."""
    done = 0
    while jobs := e.reserve([queue], "w", now, limit):
        for job in jobs:
            if done < fail:
                await e.fail(job.id, "w", now, "boom", retryable=done % 2 == 0)
            else:
                await e.ack(job.id, "w", now)
            done += 1
    return done


def _points(e: Engine, now: float, queue: str | None = None, minutes: int = 60) -> list[tuple[int, int, int]]:
    return [(p.enqueued, p.succeeded, p.failed) for p in e.stats_history(now, minutes, 60, queue) if
            p.enqueued or p.succeeded or p.failed]  # fmt: skip


def _sums(e: Engine, now: float, queue: str | None = None) -> tuple[int, int, int]:
    points = e.stats_history(now, MAX_MINUTES, 86400, queue)
    return (sum(p.enqueued for p in points), sum(p.succeeded for p in points), sum(p.failed for p in points))


@run
async def test_enqueues_acks_and_failures_are_counted_at_their_time(harness: Harness) -> None:
    e = await harness.open(M0)
    await e.enqueue("a", "h", b"", now=M0 + 1)
    await e.enqueue_batch("a", "h", [b""] * 4, now=M0 + 2)
    await e.enqueue("b", "h", b"", now=M0 + 61)
    assert await _drain(e, "a", M0 + 125, fail=2) == 5  # one retrying, one dead
    await _drain(e, "b", M0 + 130)
    points = e.stats_history(M0 + 130, 3, 60)
    assert [(p.at, p.enqueued, p.succeeded, p.failed) for p in points] == [
        (M0, 5, 0, 0), (M0 + 60, 1, 0, 0), (M0 + 120, 0, 4, 2),
    ]  # fmt: skip
    assert _sums(e, M0 + 130, "a") == (5, 3, 2)
    assert _sums(e, M0 + 130, "b") == (1, 1, 0)
    # Retrying the retrying job again and failing it counts a second failure (an attempt failed).
    await e.tick(M0 + 3600)  # the retry is due
    (job,) = e.reserve(["a"], "w", M0 + 3600)
    await e.fail(job.id, "w", M0 + 3600, "again")
    assert _sums(e, M0 + 3600) == (6, 4, 3)
    with pytest.raises(QueueNotFound):
        e.stats_history(M0, 60, 60, "nope")


@run
async def test_exact_across_restarts_snapshots_and_the_pruning_of_jobs(harness: Harness) -> None:
    config = EngineConfig(snapshot_every=0, retain_succeeded=100, retain_dead=100)
    e = await harness.open(M0, config)
    await e.enqueue_batch("a", "h", [b""] * 50, now=M0)
    await _drain(e, "a", M0 + 60, fail=10)
    before = _sums(e, M0 + 120)
    assert before == (50, 40, 10)
    e = await harness.restart(M0 + 120)
    assert _sums(e, M0 + 120) == _sums(e, M0 + 120, "a") == before  # replayed from the log
    await e.snapshot("a")
    await e.enqueue("a", "h", b"", now=M0 + 180)  # a tail after the snapshot
    e = await harness.restart(M0 + 240)
    assert _sums(e, M0 + 240) == (51, 40, 10)  # snapshot + tail, nothing twice
    # Retention forgets every finished job: the counts stay.
    await e.tick(M0 + 300)
    counts = e.queue_stats("a").counts
    assert counts["succeeded"] == counts["dead"] == 0 and e.stats().total_jobs == 6  # 5 retries + 1 new
    await e.snapshot("a")
    e = await harness.restart(M0 + 360)
    assert _sums(e, M0 + 360) == (51, 40, 10)


@run
async def test_a_fuzzy_snapshot_counts_each_record_once(harness: Harness) -> None:
    """Acks applied while the snapshot writes its job chunks: the chunks may reflect them, the
    history chunk (encoded with the meta) does not, and replay counts them from the tail."""
    e = await harness.open(M0, EngineConfig(snapshot_every=0, snapshot_chunk=1))
    await e.enqueue_batch("a", "h", [b""] * 40, now=M0)
    jobs = e.reserve(["a"], "w", M0, 40)
    snapshot = asyncio.ensure_future(e.snapshot("a"))
    for i, job in enumerate(jobs):
        if i % 4 == 0:
            await e.fail(job.id, "w", M0 + 60, "x", retryable=False)
        else:
            await e.ack(job.id, "w", M0 + 60)
    await snapshot
    assert _sums(e, M0 + 60) == (40, 30, 10)
    e = await harness.restart(M0 + 120)
    assert _sums(e, M0 + 120) == _sums(e, M0 + 120, "a") == (40, 30, 10)


# -- deleted queues ---------------------------------------------------------------------------------------


def _file_engine(data: Path, **config: int) -> Engine:
    return Engine(FileStorage(data, WalConfig(segment_size=1 << 20)), EngineConfig(**config))


@run
async def test_a_deleted_queue_stays_in_the_total_across_restarts(tmp_path: Path) -> None:
    e = _file_engine(tmp_path)
    await e.open(M0)
    await e.enqueue_batch("gone", "h", [b""] * 7, now=M0)
    await _drain(e, "gone", M0 + 60, fail=1)
    await e.enqueue("kept", "h", b"", now=M0)
    await e.delete_queue("gone", M0 + 120, force=True)  # its retrying job goes too
    assert _sums(e, M0 + 120) == (8, 6, 1)
    with pytest.raises(QueueNotFound):
        e.stats_history(M0 + 120, 60, 60, "gone")
    await e.close()
    e = _file_engine(tmp_path)
    await e.open(M0 + 180)
    assert _sums(e, M0 + 180) == (8, 6, 1)
    # The name again: a new queue, counted afresh; the total holds both.
    await e.enqueue("gone", "h", b"", now=M0 + 200)
    await e.delete_queue("gone", M0 + 240, force=True)
    await e.close()
    e = _file_engine(tmp_path)
    await e.open(M0 + 300)
    assert _sums(e, M0 + 300) == (9, 6, 1)
    assert (tmp_path / "meta" / hist.RETIRED_FILE).exists()
    await e.close()


@run
async def test_a_crash_before_the_files_went_counts_the_deleted_queue_once(tmp_path: Path) -> None:
    """Both windows: after the retired record was appended (the files could not be removed), and
    before it was (QUEUE_DELETED committed, then the crash)."""
    e = _file_engine(tmp_path)
    await e.open(M0)
    await e.enqueue_batch("a", "h", [b""] * 3, now=M0)
    await e.enqueue_batch("b", "h", [b""] * 5, now=M0)

    async def refuse(queue: str) -> None:
        raise hist_storage_error(queue)

    e.storage.drop_log = refuse  # type: ignore[method-assign]
    await e.delete_queue("a", M0 + 60, force=True)
    await e.close()
    assert (tmp_path / "queues" / "a").exists()  # the log, ending in QUEUE_DELETED, is still there
    # "b": append its deletion record by hand, as a crash right after its commit would leave it.
    storage = FileStorage(tmp_path, WalConfig(segment_size=1 << 20))
    log, _ = storage.open_log("b", e.config.durability)
    log.append(RecordType.QUEUE_DELETED, rec.encode(rec.QueueEvent(M0 + 90)))
    await log.flush()
    await storage.close()
    for now in (M0 + 120, M0 + 180):  # the first start removes the files; the second finds none
        e = _file_engine(tmp_path)
        await e.open(now)
        assert e.queues() == []
        assert _sums(e, now) == (8, 0, 0)
        await e.close()
    assert sorted(os.listdir(tmp_path / "queues")) == []


def hist_storage_error(queue: str) -> Exception:
    from spitfire.wal.api import StorageError

    return StorageError(f"refused to remove the files of {queue!r} (test)")


@run
async def test_a_damaged_retired_record_costs_only_its_queue(tmp_path: Path) -> None:
    e = _file_engine(tmp_path)
    await e.open(M0)
    await e.enqueue_batch("a", "h", [b""] * 3, now=M0)
    await e.enqueue_batch("b", "h", [b""] * 5, now=M0)
    await e.delete_queue("a", M0 + 60, force=True)
    await e.delete_queue("b", M0 + 60, force=True)
    await e.close()
    path = tmp_path / "meta" / hist.RETIRED_FILE
    data = bytearray(path.read_bytes())
    data[RECORD_HEADER_SIZE + 5] ^= 0x40  # inside the first record's body (queue "a")
    path.write_bytes(bytes(data))
    e = _file_engine(tmp_path)
    await e.open(M0 + 120)
    assert _sums(e, M0 + 120) == (5, 0, 0)
    await e.close()
    e = _file_engine(tmp_path)  # rewritten without the damage: reported once, counts unchanged
    await e.open(M0 + 180)
    assert _sums(e, M0 + 180) == (5, 0, 0)
    await e.close()


def test_a_damaged_length_resynchronises_on_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "meta" / hist.RETIRED_FILE
    path.parent.mkdir()
    file = RetiredHistoryFile(path, fsync=False)
    counters = [MinuteCounters() for _ in range(3)]
    for i, c in enumerate(counters):
        c.add(M0, 0, 10**i)
        file.append(file.encode((f"q{i}", 1, M0 + i), c))
    data = bytearray(path.read_bytes())
    data[4] ^= 0xFF  # the first record's length
    path.write_bytes(bytes(data))
    again = RetiredHistoryFile(path, fsync=False)
    again.load()
    assert again.total.totals() == (110, 0, 0)
    assert again.deletions == {("q1", 1, M0 + 1), ("q2", 1, M0 + 2)}


# -- snapshots ---------------------------------------------------------------------------------------------


def _rewrite_snapshot(path: Path, lsn: int, chunks: list[bytes]) -> None:
    """Write a snapshot file holding ``chunks`` with valid checksums (as a build would)."""
    from spitfire.wal import constants as c
    from spitfire.wal.format import encode_record

    header = c.SNAPSHOT_HEADER.pack(c.SNAPSHOT_MAGIC, c.FORMAT_VERSION, lsn)
    parts = [encode_record(c.SNAP_TYPE_HEADER, header)]
    parts += [encode_record(c.SNAP_TYPE_CHUNK, chunk) for chunk in chunks]
    parts.append(encode_record(c.SNAP_TYPE_END, c.SNAPSHOT_END.pack(len(chunks))))
    path.write_bytes(b"".join(parts))


@run
async def test_a_history_chunk_this_build_cannot_read_costs_only_the_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from spitfire.wal.snapshot import list_snapshots, read_snapshot

    e = _file_engine(tmp_path, snapshot_every=0)
    await e.open(M0)
    await e.enqueue_batch("a", "h", [b""] * 6, now=M0)
    lsn = await e.snapshot("a")
    await e.enqueue("a", "h", b"", now=M0 + 60)
    await e.close()
    ((snap_lsn, path),) = list_snapshots(tmp_path / "queues" / "a" / "snapshots")
    assert snap_lsn == lsn
    chunks = read_snapshot(path, lsn)
    assert rec.meta_decoder.decode(chunks[0]).history
    chunks[1] = rec.encode(rec.HistoryChunk([], rec.HISTORY_VERSION + 1, []))  # a newer layout
    _rewrite_snapshot(path, lsn, chunks)
    e = _file_engine(tmp_path)
    await e.open(M0 + 120)
    assert e.stats().total_jobs == 7  # the jobs are all there
    assert _sums(e, M0 + 120) == (1, 0, 0)  # the tail after the snapshot only
    assert "history in the snapshot of queue 'a' cannot be read" in caplog.text
    await e.close()


def test_a_queues_counters_feed_the_total_as_minutes_are_flushed() -> None:
    total = MinuteCounters()
    a, b = MinuteCounters(total), MinuteCounters(total)
    a.add(M0, 0, 2)
    b.add(M0 + 1, 1)
    a.add(M0 + 60, 2)  # a's first minute is flushed into the total by the switch
    assert total.minute(M0) == (2, 0, 0)
    for child in (a, b):
        child.flush()
    assert total.minute(M0) == (2, 1, 0) and total.minute(M0 + 60) == (0, 0, 1)
    a.flush()  # nothing twice
    assert total.totals() == (2, 1, 1) == tuple(x + y for x, y in zip(a.totals(), b.totals(), strict=True))


def test_a_torn_append_costs_nothing_once_the_deletion_is_retired_again(tmp_path: Path) -> None:
    path = tmp_path / hist.RETIRED_FILE
    file = RetiredHistoryFile(path, fsync=False)
    a, b = MinuteCounters(), MinuteCounters()
    a.add(M0, 0, 3)
    b.add(M0, 1, 4)
    file.append(file.encode(("a", 2, M0), a))
    torn = file.encode(("b", 5, M0), b)
    file.append(torn[: len(torn) // 2 + 3])  # the crash came mid-write: never acknowledged
    file.append(torn)  # the next start retires the deletion again
    again = RetiredHistoryFile(path, fsync=False)
    again.load()
    assert again.total.totals() == (3, 4, 0)
    assert again.deletions == {("a", 2, M0), ("b", 5, M0)}
