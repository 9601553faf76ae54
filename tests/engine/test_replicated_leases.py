"""Leases a cluster's leader logs (`EngineConfig.log_leases`: JOBS_LEASED records) survive the
engine being rebuilt from its log, as a new leader rebuilds it: the job stays leased to its worker
until the lease's absolute end, that worker's outcome is taken, and an expired lease is taken back.
A restart of the engine here stands for a new leader replaying the log; without ``log_leases`` (a
single node) a restart makes leased jobs ready again, as before."""

from __future__ import annotations

import pytest
from engine_harness import T0, Harness, run

from spitfire.index.job import JobState
from spitfire.server.config import EngineConfig
from spitfire.server.errors import StaleLease

CLUSTER = EngineConfig(log_leases=True)


@run
async def test_a_delivered_job_stays_leased_to_its_worker_after_a_rebuild(harness: Harness) -> None:
    e = await harness.open(config=CLUSTER)
    job, _ = await e.enqueue("q", "resize", b"\x80", now=T0)
    (got,) = e.reserve(["q"], "w7", T0 + 1.0)
    until = got.lease_until
    await e.enqueue("q", "other", b"\x80", now=T0 + 2.0)  # a later record, so that the lease's commits
    e = await harness.restart(T0 + 3.0)
    again = e.get(job.id)
    assert again.state is JobState.RESERVED
    assert (again.worker, again.attempts, again.lease_until) == ("w7", 1, until)
    assert [j.id for j in e.held_by("w7")] == [job.id]
    assert [j.name for j in e.reserve(["q"], "w8", T0 + 4.0, limit=5)] == ["other"]  # not delivered again
    with pytest.raises(StaleLease):
        await e.ack(job.id, "w8", T0 + 5.0)
    await e.ack(job.id, "w7", T0 + 5.0)
    assert e.get(job.id).state is JobState.SUCCEEDED
    e = await harness.restart(T0 + 6.0)
    assert e.get(job.id).state is JobState.SUCCEEDED and e.held_by("w7") == []


@run
async def test_heartbeats_and_extensions_are_continued(harness: Harness) -> None:
    e = await harness.open(config=CLUSTER)
    a, _ = await e.enqueue("q", "a", b"\x80", now=T0)
    b, _ = await e.enqueue("q", "b", b"\x80", now=T0)
    e.reserve(["q"], "w", T0, limit=2)
    assert e.heartbeat("w", T0 + 30.0) == 2
    until_b = e.extend(b.id, "w", T0 + 40.0, seconds=600.0)
    await e.enqueue("q", "later", b"\x80", now=T0 + 41.0)
    e = await harness.restart(T0 + 42.0)
    assert e.get(a.id).lease_until == T0 + 30.0 + a.timeout
    assert e.get(b.id).lease_until == until_b == T0 + 640.0


@run
async def test_an_expired_lease_is_taken_back_by_the_rebuilt_engine(harness: Harness) -> None:
    e = await harness.open(config=CLUSTER)
    job, _ = await e.enqueue("q", "resize", b"\x80", now=T0)
    (got,) = e.reserve(["q"], "gone", T0)
    await e.enqueue("q", "later", b"\x80", now=T0 + 1.0)
    e = await harness.restart(T0 + 2.0)
    assert e.get(job.id).state is JobState.RESERVED
    await e.tick(T0 + 1.0 + got.timeout)  # the lease's end, on the time the record gave
    assert e.get(job.id).state is JobState.ENQUEUED
    (redelivered,) = [j for j in e.reserve(["q"], "w2", T0 + got.timeout + 2.0, limit=5) if j.id == job.id]
    assert redelivered.attempts == 2
    assert e.get(job.id).errors is not None and e.get(job.id).errors[-1].error == "lease expired"


@run
async def test_a_lease_given_back_or_lost_is_not_restored(harness: Harness) -> None:
    e = await harness.open(config=CLUSTER)
    a, _ = await e.enqueue("q", "a", b"\x80", now=T0)
    b, _ = await e.enqueue("q", "b", b"\x80", now=T0)
    e.reserve(["q"], "w", T0, limit=2)
    await e.release(a.id, "w", T0 + 1.0)  # handed back: ready, the attempt not counted
    await e.release_worker("w", T0 + 2.0)  # the worker's connection dropped: b is ready again
    e = await harness.restart(T0 + 3.0)
    assert e.get(a.id).state is JobState.ENQUEUED and e.get(a.id).attempts == 0
    assert e.get(b.id).state is JobState.ENQUEUED and e.get(b.id).attempts == 1
    assert e.held_by("w") == []
    assert sorted(j.id for j in e.reserve(["q"], "w2", T0 + 4.0, limit=5)) == sorted([a.id, b.id])


@run
async def test_leases_survive_a_snapshot(harness: Harness) -> None:
    e = await harness.open(config=CLUSTER)
    job, _ = await e.enqueue("q", "resize", b"\x80", now=T0)
    (got,) = e.reserve(["q"], "w", T0 + 1.0)
    await e.enqueue("q", "later", b"\x80", now=T0 + 2.0)
    await e.snapshot("q")
    e = await harness.restart(T0 + 3.0)
    again = e.get(job.id)
    assert (again.state, again.worker, again.lease_until) == (JobState.RESERVED, "w", got.lease_until)
    await e.ack(job.id, "w", T0 + 4.0)


@run
async def test_a_single_node_still_makes_leased_jobs_ready_on_restart(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "resize", b"\x80", now=T0)
    e.reserve(["q"], "w", T0 + 1.0)
    await e.enqueue("q", "later", b"\x80", now=T0 + 2.0)
    e = await harness.restart(T0 + 3.0)
    assert e.get(job.id).state is JobState.ENQUEUED and e.held_by("w") == []
