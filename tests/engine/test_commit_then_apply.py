"""Commit, then apply: nothing is visible before its record is durable, and a failed commit is
fail-stop. The memory backend holds commits back (``MemoryState.hold_commits``) so that each test can
look at the engine while records are appended but not yet durable, then release or fail them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from engine_harness import T0, run

from spitfire.index.job import JobState
from spitfire.server.backpressure import Backpressure, Limits
from spitfire.server.building import JobOptions
from spitfire.server.engine import LEASE_RETRY, Engine
from spitfire.server.errors import JobNotFound, Overloaded, StaleLease, StorageFailed
from spitfire.wal.api import StorageError
from spitfire.wal.memory import MemoryState, MemoryStorage


async def _engine(state: MemoryState) -> tuple[Engine, list[str]]:
    ready: list[str] = []
    engine = Engine(MemoryStorage(state), on_ready=ready.append)
    await engine.open(T0)
    return engine, ready


async def _turn() -> None:
    """Let every task run as far as it can (they all end up waiting for a held commit)."""
    for _ in range(5):
        await asyncio.sleep(0)


@run
async def test_an_enqueue_is_invisible_until_its_commit() -> None:
    state = MemoryState()
    engine, ready = await _engine(state)
    first, _ = await engine.enqueue("q", "h", b"\x01", now=T0)  # the queue exists; commits are immediate
    seen: list[Any] = []
    engine.observer = lambda job, deleted: seen.append(job.id)
    state.hold_commits = True
    ready.clear()
    task = asyncio.ensure_future(engine.enqueue("q", "h", b"\x02", now=T0, idempotency_key="k"))
    await _turn()
    assert not task.done()
    assert engine.pending("q") == 1  # only the first job
    assert engine.find_by_key("q", "k") is None
    assert engine.list_jobs("q", JobState.ENQUEUED)[0][0].payload == b"\x01"
    assert seen == [] and ready == []
    assert engine.reserve(["q"], "w", T0, 10) == [first]  # not the new one
    assert seen == [first.id]  # the delivery
    assert state.release_commits() == 1
    job, created = await task
    assert created and engine.get(job.id) is job and engine.find_by_key("q", "k") is job
    assert seen == [first.id, job.id] and ready == ["q"]
    await engine.close()


@run
async def test_two_enqueues_with_one_key_in_one_group_make_one_job() -> None:
    state = MemoryState()
    engine, _ = await _engine(state)
    await engine.enqueue("q", "h", b"", now=T0)
    state.hold_commits = True
    first = asyncio.ensure_future(engine.enqueue("q", "h", b"a", now=T0, idempotency_key="k"))
    second = asyncio.ensure_future(engine.enqueue("q", "h", b"b", now=T0, idempotency_key="k"))
    batch = asyncio.ensure_future(
        engine.enqueue_batch("q", "h", [b"c", b"d"], now=T0, idempotency_keys=["k", "x"])
    )
    await _turn()
    assert not second.done() and not batch.done()  # the duplicate is not answered before the original
    while not batch.done():
        state.release_commits()
        await _turn()
    (job, created), (dup, dup_created) = await first, await second
    jobs, flags = await batch
    assert created and not dup_created and dup is job
    assert jobs[0] is job and flags == [False, True]
    assert engine.pending("q") == 3
    await engine.close()


@run
async def test_a_command_on_a_job_waits_for_its_record_in_flight() -> None:
    state = MemoryState()
    engine, _ = await _engine(state)
    job, _ = await engine.enqueue("q", "h", b"", now=T0)
    engine.reserve(["q"], "w", T0)
    state.hold_commits = True
    cancel = asyncio.ensure_future(engine.cancel(job.id, T0 + 1))
    ack = asyncio.ensure_future(engine.ack(job.id, "w", T0 + 2))
    await _turn()
    assert job.state is JobState.RESERVED and not ack.done()  # the cancel is not applied yet
    while not ack.done():
        state.release_commits()
        await _turn()
    assert (await cancel)[1] == "w"  # the worker that held it is told to stop
    with pytest.raises(StaleLease):
        await ack
    assert job.state is JobState.CANCELLED and engine.held_by("w") == []
    await engine.close()


@run
async def test_a_failed_commit_is_fail_stop() -> None:
    state = MemoryState()
    engine, _ = await _engine(state)
    failures: list[str] = []
    engine.on_failure = failures.append
    kept, _ = await engine.enqueue("q", "h", b"", now=T0)
    state.hold_commits = True
    lost = asyncio.ensure_future(engine.enqueue("q", "h", b"x", now=T0, idempotency_key="k"))
    dup = asyncio.ensure_future(engine.enqueue("q", "h", b"y", now=T0, idempotency_key="k"))
    await _turn()
    state.fail_commits(StorageError("fdatasync of 0000.seg failed: [Errno 5] Input/output error"))
    for task in (lost, dup):
        with pytest.raises(StorageFailed, match="Input/output error"):
            await task
    assert len(failures) == 1 and "Input/output" in failures[0]
    assert engine.find_by_key("q", "k") is None and engine.pending("q") == 1
    assert [j.id for j in engine.reserve(["q"], "w", T0)] == [kept.id]
    for write in (
        engine.enqueue("q", "h", b"", now=T0),
        engine.ack(kept.id, "w", T0),
        engine.pause("q", T0),
    ):
        with pytest.raises(StorageFailed, match="storage failed"):
            await write
    with pytest.raises(JobNotFound):
        engine.get("0" * 24)
    await engine.close()


@run
async def test_a_snapshot_claims_only_what_is_applied() -> None:
    state = MemoryState()
    engine, _ = await _engine(state)
    for i in range(3):
        await engine.enqueue("q", "h", bytes([i]), now=T0)
    state.hold_commits = True
    pending = asyncio.ensure_future(engine.enqueue("q", "h", b"late", now=T0))
    await _turn()
    snapshot = asyncio.ensure_future(engine.snapshot("q"))
    await _turn()
    while not snapshot.done():  # it flushes the log (async mode safety) before it finishes
        state.release_commits()
        await _turn()
    assert await snapshot == 3  # the appended-but-unapplied record 4 is not claimed
    await pending
    await engine.close()
    state.hold_commits = False
    again, _ = await _engine(state)
    assert sorted(j.payload for j in again.list_jobs("q", JobState.ENQUEUED, limit=10)[0]) == [
        b"\x00",
        b"\x01",
        b"\x02",
        b"late",
    ]
    await again.close()


@run
async def test_backpressure_counts_jobs_still_waiting_for_their_commit() -> None:
    state = MemoryState()
    engine, _ = await _engine(state)
    engine.admission = Backpressure(Limits(3, 10**9, 10**9, 10**9), engine).admit
    await engine.enqueue("q", "h", b"", now=T0)
    state.hold_commits = True
    waiting = [asyncio.ensure_future(engine.enqueue("q", "h", b"", now=T0)) for _ in range(2)]
    await _turn()
    assert engine.pending("q") == 1 and engine.pending_figures("q")[0] == 3
    with pytest.raises(Overloaded):
        await engine.enqueue("q", "h", b"", now=T0)
    state.release_commits()
    await asyncio.gather(*waiting)
    assert engine.pending_figures("q") == (3, 0, 3, 0)
    await engine.close()


@run
async def test_a_lease_whose_final_record_cannot_be_appended_is_tried_again() -> None:
    state = MemoryState()
    engine, _ = await _engine(state)
    job, _ = await engine.enqueue("q", "h", b"", now=T0, options=JobOptions(timeout=10, max_attempts=1))
    engine.reserve(["q"], "w", T0)
    state.out_of_space = True  # not even the reserve is left: the DEAD record cannot be written
    await engine.tick(T0 + 10)
    assert job.state is JobState.RESERVED and job.lease_until == T0 + 10 + LEASE_RETRY
    assert await engine.tick(T0 + 10.5) == T0 + 10 + LEASE_RETRY  # it comes back for it
    state.out_of_space = False
    await engine.tick(T0 + 11)
    assert job.state is JobState.DEAD and job.errors is not None and job.errors[-1].error == "lease expired"
    assert engine.held_by("w") == []
    await engine.close()
