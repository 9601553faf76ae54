"""`Engine.purge` and `Engine.set_durability`: what a purge deletes and what it leaves, bad input
changing nothing, durability chunk by chunk and across restarts; time is a parameter (``now``), on
every storage backend."""

from __future__ import annotations

import asyncio

import pytest
from engine_harness import T0, Harness, run

from spitfire.index.job import JobState
from spitfire.server.building import JobOptions
from spitfire.server.engine import Engine
from spitfire.server.errors import QueueNotFound, ValidationError
from spitfire.wal.api import Durability

S = JobState


async def _fill(e: Engine, n: int, queue: str = "q", at: float = T0, delay: float | None = None) -> list[str]:
    ids = []
    for i in range(n):
        options = JobOptions(delay=delay)
        job, _ = await e.enqueue(queue, "h", bytes([i % 256]), now=at + i, options=options)
        ids.append(job.id)
    return ids


@run
async def test_purge_deletes_the_asked_states_of_one_queue(harness: Harness) -> None:
    e = await harness.open()
    ready = await _fill(e, 5)
    later = await _fill(e, 3, at=T0 + 10, delay=3600)
    other = await _fill(e, 2, queue="other", at=T0 + 20)
    await e.cancel(ready[0], T0 + 30)
    res = await e.purge("q", {S.SCHEDULED, S.CANCELLED}, T0 + 40, chunk=2)
    assert (res.matched, res.done, res.failed, res.revoked) == (4, 4, 0, {})
    assert [e.get(i).state for i in ready[1:]] == [S.ENQUEUED] * 4
    for job_id in [ready[0], *later]:
        with pytest.raises(Exception, match="no job"):
            e.get(job_id)
    assert all(e.get(i).state is S.ENQUEUED for i in other)  # another queue's jobs stay
    e = await harness.restart(T0 + 50)
    assert e.queue_stats("q").total == 4 and e.queue_stats("other").total == 2


@run
async def test_purge_names_the_workers_holding_deleted_jobs(harness: Harness) -> None:
    e = await harness.open()
    await _fill(e, 3)
    held = e.reserve(["q"], "w1", T0 + 10, limit=2)
    e.start(held[0].id, "w1", T0 + 11)
    res = await e.purge("q", [S.RESERVED, S.RUNNING], T0 + 12)
    assert res.done == 2 and res.revoked == {"w1": sorted(j.id for j in held)}
    assert e.held_by("w1") == [] and e.queue_stats("q").total == 1


@run
async def test_purge_leaves_jobs_created_while_it_runs(harness: Harness) -> None:
    e = await harness.open()
    await _fill(e, 10)
    purge = asyncio.ensure_future(e.purge("q", [S.ENQUEUED], T0 + 100, chunk=3))
    await asyncio.sleep(0)  # the first chunk is under way
    new = await _fill(e, 2, at=T0 + 101)
    assert not purge.done(), "the purge ended before the enqueues: make it larger"
    res = await purge
    assert res.done == 10
    assert [e.get(i).state for i in new] == [S.ENQUEUED] * 2 and e.queue_stats("q").total == 2


@run
async def test_bad_purges_change_nothing(harness: Harness) -> None:
    e = await harness.open()
    ids = await _fill(e, 3)
    with pytest.raises(ValidationError, match="states"):
        await e.purge("q", [], T0 + 10)
    with pytest.raises(ValidationError, match="states"):
        await e.purge("q", ["enqueued"], T0 + 10)  # type: ignore[list-item]
    with pytest.raises(QueueNotFound):
        await e.purge("nope", [S.ENQUEUED], T0 + 10)
    with pytest.raises(ValidationError, match="chunk"):
        await e.purge("q", [S.ENQUEUED], T0 + 10, chunk=0)
    assert [e.get(i).state for i in ids] == [S.ENQUEUED] * 3


@run
async def test_a_purge_is_durable_chunk_by_chunk(harness: Harness) -> None:
    e = await harness.open()
    await _fill(e, 30)
    res = await e.purge("q", [S.ENQUEUED], T0 + 50, chunk=7)
    assert res.done == 30
    e = await harness.restart(T0 + 60)
    assert e.queue_stats("q").total == 0


@run
async def test_set_durability_creates_the_queue_and_survives_a_restart(harness: Harness) -> None:
    e = await harness.open()
    await e.set_durability("fresh", Durability.SYNC, T0)
    assert e.queue_stats("fresh").durability is Durability.SYNC
    await _fill(e, 2, queue="fresh", at=T0 + 1)
    await e.set_durability("fresh", Durability.ASYNC, T0 + 5)
    with pytest.raises(ValidationError, match="durability"):
        await e.set_durability("fresh", "fast", T0 + 6)  # type: ignore[arg-type]
    e = await harness.restart(T0 + 10)
    assert e.queue_stats("fresh").durability is Durability.ASYNC and e.queue_stats("fresh").total == 2
