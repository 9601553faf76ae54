"""Retention and idempotency keys through the engine (every backend), across snapshots and restarts.

Time is a parameter: "48 hours" is a ``now`` 48 hours later, not a wait.
"""

from __future__ import annotations

import pytest
from engine_harness import T0, Harness, run

from spitfire.index.job import JobState
from spitfire.server.building import JobOptions
from spitfire.server.config import EngineConfig
from spitfire.server.errors import JobNotFound

S = JobState
HOUR = 3600.0
DAY = 24 * HOUR


@run
async def test_a_job_pending_for_48_hours_still_deduplicates_across_a_snapshot_and_restarts(
    harness: Harness,
) -> None:
    e = await harness.open()
    job, created = await e.enqueue("q", "h", b"1", idempotency_key="k", now=T0)
    await e.tick(T0 + 25 * HOUR)
    same, again = await e.enqueue("q", "h", b"2", idempotency_key="k", now=T0 + 25 * HOUR)
    assert created and not again and same.id == job.id
    await e.snapshot("q")  # the key is in the snapshot's meta chunk, held
    e = await harness.restart(T0 + 47 * HOUR)
    await e.tick(T0 + 48 * HOUR)
    same, again = await e.enqueue("q", "h", b"3", idempotency_key="k", now=T0 + 48 * HOUR)
    assert not again and same.id == job.id
    e = await harness.restart(T0 + 48 * HOUR)  # replayed from the log after the snapshot
    same, again = await e.enqueue("q", "h", b"4", idempotency_key="k", now=T0 + 48 * HOUR)
    assert not again and same.id == job.id and e.stats().total_jobs == 1


@run
async def test_a_finished_job_deduplicates_for_24_hours_after_it_finished_then_not(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(retain_max_per_queue=0))  # forget finished jobs at once
    job, _ = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0, options=JobOptions(max_attempts=1))
    finished_at = T0 + 30 * HOUR
    (held,) = e.reserve(["q"], "w", finished_at)
    await e.fail(held.id, "w", finished_at, "boom", retryable=False)
    await e.tick(finished_at + 1)
    with pytest.raises(JobNotFound):
        e.get(job.id)
    await e.snapshot("q")
    e = await harness.restart(finished_at + 2)
    _, created = await e.enqueue("q", "h", b"", idempotency_key="k", now=finished_at + DAY - 1)
    assert not created
    await e.tick(finished_at + DAY)
    fresh, created = await e.enqueue("q", "h", b"", idempotency_key="k", now=finished_at + DAY)
    assert created and fresh.id != job.id


@run
async def test_dead_and_cancelled_jobs_are_forgotten_after_their_own_retention(harness: Harness) -> None:
    config = EngineConfig(retain_succeeded=10.0, retain_dead=20.0, retain_cancelled=30.0)
    e = await harness.open(config=config)
    ok, dead, cancelled = [
        (await e.enqueue("q", "h", b"", now=T0, options=JobOptions(max_attempts=1)))[0] for _ in range(3)
    ]
    e.reserve(["q"], "w", T0, limit=2)
    await e.ack(ok.id, "w", T0)
    await e.fail(dead.id, "w", T0, "boom", retryable=False)
    await e.cancel(cancelled.id, T0)
    assert await e.tick(T0) == T0 + 10.0
    assert await e.tick(T0 + 10.0) == T0 + 20.0
    assert e.queue_stats("q").counts["succeeded"] == 0
    assert await e.tick(T0 + 20.0) == T0 + 30.0
    assert e.queue_stats("q").counts["dead"] == 0
    await e.tick(T0 + 30.0)
    assert e.stats().total_jobs == 0


@run
async def test_a_key_whose_dead_job_was_forgotten_reports_dead(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(retain_dead=60.0))
    job, _ = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0, options=JobOptions(max_attempts=1))
    e.reserve(["q"], "w", T0)
    await e.fail(job.id, "w", T0 + 1, "boom")
    await e.tick(T0 + 100)  # retention forgets the dead job; its key lasts 24 h after it died
    with pytest.raises(JobNotFound):
        e.get(job.id)
    again, created = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0 + 200)
    assert not created and again.id == job.id and again.state is JobState.DEAD
    await e.snapshot("q")
    e = await harness.restart(T0 + 300)  # the final state survives a snapshot and a restart
    again, created = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0 + 300)
    assert not created and again.state is JobState.DEAD
