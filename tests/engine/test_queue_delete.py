"""Deleting queues, and the limit on how many there are ("Disk").

Every test runs on both backends (the ``harness`` fixture) unless it needs one: the memory backend
holds commits back to look at a deletion in flight; the file engine leaves the files a crash would.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from engine_harness import T0, Harness, run

from spitfire.index.job import JobState
from spitfire.server import records as rec
from spitfire.server.building import JobOptions
from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.server.errors import (
    JobNotFound,
    QueueNotEmpty,
    QueueNotFound,
    StaleLease,
    TooManyQueues,
)
from spitfire.server.records import RecordType
from spitfire.wal import FileStorage, WalConfig
from spitfire.wal.memory import MemoryState, MemoryStorage

S = JobState


async def _turn() -> None:
    """Let every task run as far as it can (they end up waiting for a held commit or a thread)."""
    for _ in range(5):
        await asyncio.sleep(0)


@run
async def test_delete_an_empty_queue_with_its_history(harness: Harness) -> None:
    e = await harness.open()
    done, _ = await e.enqueue("q", "h", b"x", idempotency_key="k", now=T0)
    e.reserve(["q"], "w", T0)
    await e.ack(done.id, "w", T0 + 1)
    await e.enqueue("other", "h", b"", now=T0)
    result = await e.delete_queue("q", T0 + 2)
    assert (result.queue, result.jobs, result.pending, result.revoked) == ("q", 1, 0, {})
    assert e.queues() == ["other"]
    with pytest.raises(JobNotFound):
        e.get(done.id)
    with pytest.raises(QueueNotFound):
        e.queue_stats("q")
    with pytest.raises(QueueNotFound):
        await e.delete_queue("q", T0 + 3)
    # The name is free: a new, empty queue, whose key does not remember the old job.
    again, created = await e.enqueue("q", "h", b"y", idempotency_key="k", now=T0 + 4)
    assert created and again.id != done.id
    assert e.queue_stats("q").total == 1
    e = await harness.restart(T0 + 5)
    assert e.queues() == ["other", "q"]
    assert e.get(again.id).payload == b"y"
    with pytest.raises(JobNotFound):
        e.get(done.id)


@run
async def test_a_queue_with_pending_jobs_is_refused_without_force(harness: Harness) -> None:
    e = await harness.open()
    await e.enqueue("q", "h", b"", now=T0)
    await e.enqueue("q", "h", b"", options=JobOptions(delay=60), now=T0)
    await e.enqueue("q", "h", b"", now=T0)
    e.reserve(["q"], "w", T0)
    with pytest.raises(QueueNotEmpty, match="3 pending job") as refused:
        await e.delete_queue("q", T0 + 1)
    assert refused.value.code == "QUEUE_NOT_EMPTY" and refused.value.pending == 3
    assert "force" in str(refused.value)
    # Nothing changed: the queue works as before (deliveries included).
    assert e.queue_stats("q").total == 3
    assert len(e.reserve(["q"], "w2", T0 + 2, limit=5)) == 1
    job, created = await e.enqueue("q", "h", b"", now=T0 + 2)
    assert created and e.get(job.id) is job


@run
async def test_force_drops_pending_jobs_and_names_the_workers_holding_them(harness: Harness) -> None:
    e = await harness.open()
    await e.enqueue_batch("q", "h", [b"a", b"b", b"c"], now=T0)
    (held,) = e.reserve(["q"], "w", T0)
    (running,) = e.reserve(["q"], "w2", T0)
    e.start(running.id, "w2", T0)
    await e.enqueue("q", "h", b"later", options=JobOptions(delay=60), now=T0)
    result = await e.delete_queue("q", T0 + 1, force=True)
    assert (result.jobs, result.pending) == (4, 4)
    assert result.revoked == {"w": [held.id], "w2": [running.id]}
    assert e.held_by("w") == [] and e.held_by("w2") == []
    with pytest.raises((StaleLease, JobNotFound)):
        await e.ack(held.id, "w", T0 + 2)
    assert e.reserve(["q"], "w", T0 + 2) == []
    assert await e.tick(T0 + 120) is None  # no timer of the old queue is left
    e = await harness.restart(T0 + 3)
    assert e.queues() == []


@run
async def test_memory_returns_after_a_deletion(harness: Harness) -> None:
    e = await harness.open()
    await e.enqueue("keep", "h", b"", now=T0)
    before = len(e.table)
    keyed = [f"k{i}" for i in range(500)]
    await e.enqueue_batch("big", "h", [b"p" * 100] * 500, idempotency_keys=keyed, now=T0)
    e.reserve(["big"], "w", T0, limit=10)
    assert len(e.table) == before + 500 and e.table.pending_jobs == 501
    await e.delete_queue("big", T0 + 1, force=True)
    assert len(e.table) == before
    assert (e.table.pending_jobs, e.table.pending_bytes) == (1, 0)
    assert e.state.workers == {}
    assert "big" not in e.state.queues and e.table.names() == ["h"]


@run
async def test_the_log_is_dropped_from_storage(harness: Harness) -> None:
    e = await harness.open()
    await e.enqueue("q", "h", b"", now=T0)
    await e.delete_queue("q", T0, force=True)
    assert e.storage.queues() == []
    if harness.state is not None:
        assert harness.state.logs.keys() <= {"meta/schedules", "meta/definitions"}
    else:
        assert isinstance(e.storage, FileStorage)
        assert os.listdir(e.storage.queues_dir) == []
        assert e.storage.get_log("q") is None


@run
async def test_too_many_queues(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(max_queues=2))
    await e.enqueue("a", "h", b"", now=T0)
    await e.enqueue("b", "h", b"", now=T0)
    with pytest.raises(TooManyQueues, match="limit of 2 queues") as refused:
        await e.enqueue("c", "h", b"", now=T0)
    assert refused.value.code == "TOO_MANY_QUEUES" and "--max-queues" in str(refused.value)
    with pytest.raises(TooManyQueues):
        await e.enqueue_batch("c", "h", [b""], now=T0)
    assert e.queues() == ["a", "b"]
    await e.enqueue("a", "h", b"", now=T0)  # existing queues still take jobs
    await e.delete_queue("b", T0, force=True)
    await e.enqueue("c", "h", b"", now=T0)
    assert e.queues() == ["a", "c"]


@run
async def test_queues_being_created_count_towards_the_limit() -> None:
    e = Engine(MemoryStorage(), EngineConfig(max_queues=1))
    await e.open(T0)
    first = asyncio.ensure_future(e.enqueue("a", "h", b"", idempotency_key="x", now=T0))
    second = asyncio.ensure_future(e.enqueue("b", "h", b"", idempotency_key="y", now=T0))
    await asyncio.wait([first, second])
    assert first.result()[1] is True
    assert isinstance(second.exception(), TooManyQueues)
    await e.close()


@run
async def test_restart_at_more_queues_than_the_limit_opens_them_all(harness: Harness) -> None:
    e = await harness.open()
    for name in ("a", "b", "c"):
        await e.enqueue(name, "h", b"", now=T0)
    harness.config = EngineConfig(max_queues=2)
    e = await harness.restart(T0 + 1)
    assert e.queues() == ["a", "b", "c"]
    with pytest.raises(TooManyQueues):
        await e.enqueue("d", "h", b"", now=T0)


# -- in flight (memory backend: commits held back) --------------------------------------------------------


async def _held_engine() -> tuple[MemoryState, Engine]:
    state = MemoryState()
    engine = Engine(MemoryStorage(state))
    await engine.open(T0)
    return state, engine


@run
async def test_a_deletion_waits_for_the_records_in_flight_and_validates_against_them() -> None:
    state, e = await _held_engine()
    await e.enqueue("q", "h", b"", now=T0)
    (job,) = e.reserve(["q"], "w", T0)
    state.hold_commits = True
    ack = asyncio.ensure_future(e.ack(job.id, "w", T0 + 1))
    deletion = asyncio.ensure_future(e.delete_queue("q", T0 + 1))
    await _turn()
    assert not deletion.done()  # it waits for the ack's commit, then sees the queue empty
    while not deletion.done():
        state.release_commits()
        await _turn()
    await ack
    assert deletion.result().jobs == 1 and e.queues() == []
    await e.close()


@run
async def test_a_deletion_is_invisible_until_its_commit_and_enqueues_wait_for_it() -> None:
    state, e = await _held_engine()
    old, _ = await e.enqueue("q", "h", b"old", now=T0)
    state.hold_commits = True
    deletion = asyncio.ensure_future(e.delete_queue("q", T0, force=True))
    await _turn()
    assert not deletion.done()
    assert e.queues() == ["q"] and e.get(old.id) is old  # not durable yet: still there
    assert e.reserve(["q"], "w", T0) == []  # but nothing is delivered from it meanwhile
    enqueue = asyncio.ensure_future(e.enqueue("q", "h", b"new", now=T0))
    pause = asyncio.ensure_future(e.pause("q", T0))
    await _turn()
    assert not enqueue.done()
    assert isinstance(pause.exception(), QueueNotFound)  # nothing follows the deletion record
    while not enqueue.done():
        state.release_commits()
        await _turn()
    new, created = await enqueue
    assert created and deletion.done() and e.queues() == ["q"]
    assert e.list_jobs("q", S.ENQUEUED)[0] == [new] and new.payload == b"new"
    with pytest.raises(JobNotFound):
        e.get(old.id)
    await e.close()


@run
async def test_an_enqueue_waiting_for_a_refused_deletion_goes_to_the_queue() -> None:
    state, e = await _held_engine()
    await e.enqueue("q", "h", b"", now=T0)
    (job,) = e.reserve(["q"], "w", T0)
    state.hold_commits = True
    fail = asyncio.ensure_future(e.fail(job.id, "w", T0, "boom"))  # in flight: RETRYING, pending
    deletion = asyncio.ensure_future(e.delete_queue("q", T0))
    await _turn()
    enqueue = asyncio.ensure_future(e.enqueue("q", "h", b"", now=T0))
    await _turn()
    assert not enqueue.done()
    while not enqueue.done():
        state.release_commits()
        await _turn()
    await fail
    assert isinstance(deletion.exception(), QueueNotEmpty)
    assert e.queue_stats("q").total == 2
    await e.close()


@run
async def test_a_caller_going_away_does_not_stop_a_deletion() -> None:
    state, e = await _held_engine()
    await e.enqueue("q", "h", b"", now=T0)
    state.hold_commits = True
    deletion = asyncio.ensure_future(e.delete_queue("q", T0, force=True))
    await _turn()
    deletion.cancel()
    await _turn()
    state.release_commits()
    await _turn()
    assert e.queues() == [] and state.logs.keys() <= {"meta/schedules", "meta/definitions"}
    await e.close()


@run
async def test_a_snapshot_in_progress_finishes_before_the_files_go(tmp_path: Path) -> None:
    e = Engine(FileStorage(tmp_path, WalConfig(segment_size=1 << 20)))
    await e.open(T0)
    await e.enqueue_batch("q", "h", [b"x"] * 5000, now=T0)
    snapshot = asyncio.ensure_future(e.snapshot("q"))
    await asyncio.sleep(0)
    assert e.state.queues["q"].snapshotting
    await e.delete_queue("q", T0, force=True)
    assert snapshot.done() and await snapshot > 0
    assert os.listdir(tmp_path / "queues") == []
    await e.close()


# -- crash safety -------------------------------------------------------------------------------------------


@run
async def test_a_log_ending_in_its_deletion_record_is_a_deleted_queue(harness: Harness) -> None:
    """A crash after QUEUE_DELETED committed and before the files were removed."""
    e = await harness.open()
    gone, _ = await e.enqueue("q", "h", b"", now=T0)
    await e.enqueue("other", "h", b"", now=T0)
    q = e.state.queues["q"]
    await q.log.flush()
    await e.close()
    # Append the record as the deletion would have, then "crash" before drop_log.
    storage = harness.make_storage()
    log, _ = storage.open_log("q", q.log.durability)
    lsn = log.append(RecordType.QUEUE_DELETED, rec.encode(rec.QueueEvent(T0 + 1)))
    await log.flush()
    await storage.close()
    assert lsn == 2 and storage.queues() == ["other", "q"]
    e = await harness.open(T0 + 2)
    assert e.queues() == ["other"]
    with pytest.raises(JobNotFound):
        e.get(gone.id)
    assert e.storage.queues() == ["other"]  # the files are gone too
    e = await harness.restart(T0 + 3)
    assert e.queues() == ["other"]


@run
async def test_a_tombstone_left_by_a_crash_is_removed_at_start(tmp_path: Path) -> None:
    """A crash after the rename (and its fsync), before the tombstone was removed."""
    storage = FileStorage(tmp_path, WalConfig(segment_size=1 << 20))
    e = Engine(storage)
    await e.open(T0)
    await e.enqueue("q", "h", b"", now=T0)
    await e.enqueue("kept", "h", b"", now=T0)
    await e.close()
    queues = tmp_path / "queues"
    tomb = queues / ".deleted-q-1"
    os.rename(queues / "q", tomb)  # what FileStorage.drop_log does before removing the tombstone
    e = Engine(FileStorage(tmp_path, WalConfig(segment_size=1 << 20)))
    await e.open(T0 + 1)
    assert e.queues() == ["kept"]
    assert sorted(os.listdir(queues)) == ["kept"]
    await e.close()


def test_records_after_a_deletion_record_are_dropped_with_it() -> None:
    """Cannot happen (nothing is appended after QUEUE_DELETED); if a log held it anyway, start-up
    drops the jobs of the later records too instead of leaving jobs of a queue that does not exist."""

    async def main() -> None:
        state = MemoryState()
        storage = MemoryStorage(state)
        log, _ = storage.open_log("q", EngineConfig().durability)
        job = rec.Job("019b76daa800000000964b48", "q", "h", b"", S.ENQUEUED, T0)
        log.append(RecordType.QUEUE_DELETED, rec.encode(rec.QueueEvent(T0)))
        log.append(RecordType.JOB_ENQUEUED, rec.encode(job))
        await storage.close()
        e = Engine(MemoryStorage(state))
        await e.open(T0)
        assert (
            e.queues() == []
            and len(e.table) == 0
            and state.logs.keys() <= {"meta/schedules", "meta/definitions"}
        )
        await e.close()

    asyncio.run(main())


@run
async def test_a_deletion_commits_while_a_job_record_of_another_queue_is_in_flight() -> None:
    state, e = await _held_engine()
    await e.enqueue("q", "h", b"", now=T0)
    await e.enqueue("other", "h", b"", now=T0)
    (job,) = e.reserve(["other"], "w", T0)
    state.hold_commits = True
    deletion = asyncio.ensure_future(e.delete_queue("q", T0, force=True))
    await _turn()
    ack = asyncio.ensure_future(e.ack(job.id, "w", T0))  # holds an entry in the engine's in-flight table
    await _turn()
    assert len(state.held) == 2
    state.release_commits(1)  # the deletion's record first (the ack's commit stays held)
    await _turn()
    assert deletion.done() and deletion.result().jobs == 1 and e.failure is None
    state.release_commits()
    assert (await ack).state is S.SUCCEEDED
    assert e.queues() == ["other"]
    await e.close()
