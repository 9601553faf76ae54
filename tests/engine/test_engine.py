"""The engine's behaviour, run against every storage backend (see conftest.harness)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_harness import T0, Harness, run

from spitfire.index.job import Backoff, BackoffKind, JobState, transitions
from spitfire.server.building import JobOptions
from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.server.errors import (
    InvalidTransition,
    JobNotFound,
    NoSpace,
    PayloadTooLarge,
    QueueNotFound,
    StaleLease,
    ValidationError,
)
from spitfire.wal.api import Durability

S = JobState


@run
async def test_priority_then_fifo(harness: Harness) -> None:
    e = await harness.open()
    ids = []
    for i, prio in enumerate([0, 5, 0, 10, 5]):
        job, created = await e.enqueue("q", "h", bytes([i]), now=T0 + i, options=JobOptions(priority=prio))
        assert created and job.state is S.ENQUEUED
        ids.append(job.id)
    got = e.reserve(["q"], "w", T0 + 10, limit=10)
    assert [j.id for j in got] == [ids[3], ids[1], ids[4], ids[0], ids[2]]
    assert all(j.state is S.RESERVED and j.attempts == 1 and j.lease_until == T0 + 70 for j in got)
    assert ids == sorted(ids)
    assert "q" in harness.ready


@run
async def test_reserve_across_queues_and_paused_queue(harness: Harness) -> None:
    e = await harness.open()
    a, _ = await e.enqueue("a", "h", b"", now=T0)
    b, _ = await e.enqueue("b", "h", b"", now=T0 + 1, options=JobOptions(priority=3))
    await e.pause("b", T0)
    assert e.reserve(["a", "b", "nope"], "w", T0, limit=5) == [a]
    await e.resume("b", T0)
    assert e.reserve(["a", "b"], "w", T0) == [b]
    with pytest.raises(QueueNotFound):
        await e.pause("nope", T0)


@run
async def test_delay_and_run_at(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0, options=JobOptions(delay=10))
    assert job.state is S.SCHEDULED and job.run_at == T0 + 10
    assert e.reserve(["q"], "w", T0 + 5) == []
    assert await e.tick(T0 + 5) == T0 + 10
    await e.tick(T0 + 10)
    assert job.state is S.ENQUEUED
    assert e.reserve(["q"], "w", T0 + 10) == [job]
    past, _ = await e.enqueue("q", "h", b"", now=T0, options=JobOptions(run_at=T0 - 5))
    assert past.state is S.ENQUEUED


@run
async def test_retries_with_backoff_then_dead(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue(
        "q", "h", b"", now=T0, options=JobOptions(max_attempts=3, backoff=Backoff(base=2.0))
    )
    now = T0
    for attempt, delay in [(1, 2.0), (2, 4.0)]:
        (got,) = e.reserve(["q"], "w", now)
        await e.fail(got.id, "w", now, f"boom {attempt}", "tb")
        assert job.state is S.RETRYING and job.run_at == now + delay
        now += delay
        await e.tick(now)
        assert job.state is S.ENQUEUED
    e.reserve(["q"], "w", now)
    await e.fail(job.id, "w", now, "boom 3")
    assert job.state is S.DEAD and job.attempts == 3
    assert [(x.attempt, x.error) for x in job.errors or []] == [(1, "boom 1"), (2, "boom 2"), (3, "boom 3")]
    assert job.errors is not None and job.errors[0].traceback == "tb"
    await harness.restart(now)
    again = harness.engine.get(job.id)  # type: ignore[union-attr]
    assert again.state is S.DEAD and len(again.errors or []) == 3


@run
async def test_not_retryable_goes_dead(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0)
    e.reserve(["q"], "w", T0)
    await e.fail(job.id, "w", T0, "fatal", retryable=False)
    assert job.state is S.DEAD


@run
async def test_retry_after_does_not_count_the_attempt(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0, options=JobOptions(max_attempts=1))
    for i in range(3):
        e.reserve(["q"], "w", T0 + i * 10)
        await e.fail(job.id, "w", T0 + i * 10, "", retry_at=T0 + i * 10 + 5)
        assert job.state is S.SCHEDULED and job.attempts == 0 and not job.errors
        await e.tick(T0 + i * 10 + 5)
        assert job.state is S.ENQUEUED
    e.reserve(["q"], "w", T0 + 40)
    await e.ack(job.id, "w", T0 + 41, b"done")
    assert job.state is S.SUCCEEDED and job.attempts == 1 and job.result == b"done"


@run
async def test_lease_expiry_redelivers_with_the_attempt_counted(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0, options=JobOptions(timeout=30, max_attempts=2))
    e.reserve(["q"], "w1", T0)
    assert await e.tick(T0 + 29) == T0 + 30
    await e.tick(T0 + 30)
    assert job.state is S.ENQUEUED and job.attempts == 1 and job.worker is None
    assert job.errors is not None and job.errors[-1].error == "lease expired"
    with pytest.raises(StaleLease):
        await e.ack(job.id, "w1", T0 + 31)
    e.reserve(["q"], "w2", T0 + 31)
    assert job.attempts == 2
    await e.tick(T0 + 61)
    assert job.state is S.DEAD and job.errors[-1].error == "lease expired"


@run
async def test_heartbeat_and_extend_keep_the_lease(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0, options=JobOptions(timeout=30))
    e.reserve(["q"], "w", T0)
    e.start(job.id, "w", T0 + 1)
    assert job.state is S.RUNNING
    assert e.heartbeat("w", T0 + 20) == 1 and job.lease_until == T0 + 50
    await e.tick(T0 + 45)
    assert job.state is S.RUNNING
    assert e.extend(job.id, "w", T0 + 45, seconds=100) == T0 + 145
    await e.tick(T0 + 140)
    assert job.state is S.RUNNING
    with pytest.raises(StaleLease):
        e.extend(job.id, "other", T0)
    with pytest.raises(ValidationError):
        e.extend(job.id, "w", T0, seconds=-1)
    assert e.heartbeat("nobody", T0) == 0


@run
async def test_release_worker_puts_jobs_back(harness: Harness) -> None:
    e = await harness.open()
    a, _ = await e.enqueue("q", "h", b"", now=T0)
    b, _ = await e.enqueue("q", "h", b"", now=T0)
    e.reserve(["q"], "w", T0, limit=2)
    back = await e.release_worker("w", T0 + 1)
    assert {j.id for j in back} == {a.id, b.id}
    assert a.state is S.ENQUEUED and a.attempts == 1 and e.held_by("w") == []
    assert [j.id for j in e.reserve(["q"], "w2", T0 + 2, limit=2)] == [a.id, b.id]


@run
async def test_cancel(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0)
    leased, _ = await e.enqueue("q", "h", b"", now=T0)
    _, worker = await e.cancel(job.id, T0)
    assert worker is None and job.state is S.CANCELLED
    assert e.reserve(["q"], "w", T0) == [leased]
    _, worker = await e.cancel(leased.id, T0 + 1)
    assert worker == "w" and leased.state is S.CANCELLED
    with pytest.raises(StaleLease):
        await e.ack(leased.id, "w", T0 + 2)
    with pytest.raises(InvalidTransition):
        await e.cancel(leased.id, T0)
    await e.tick(T0 + 1000)
    assert leased.state is S.CANCELLED


@run
async def test_retry_from_dead_and_invalid_transitions(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0, options=JobOptions(max_attempts=1))
    e.reserve(["q"], "w", T0)
    with pytest.raises(InvalidTransition):
        await e.retry(job.id, T0)
    await e.fail(job.id, "w", T0, "x")
    assert job.state is S.DEAD
    await e.retry(job.id, T0 + 1)
    assert job.state is S.ENQUEUED and job.attempts == 0
    e.reserve(["q"], "w", T0 + 2)
    await e.ack(job.id, "w", T0 + 2)
    with pytest.raises(InvalidTransition):
        await e.retry(job.id, T0 + 3)
    with pytest.raises(JobNotFound):
        await e.retry("nope", T0)


@run
async def test_delete(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0)
    await e.delete(job.id, T0)
    with pytest.raises(JobNotFound):
        e.get(job.id)
    assert e.reserve(["q"], "w", T0) == []
    assert e.find_by_key("q", "k") is None
    again, created = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0)
    assert created and again.id != job.id
    await harness.restart(T0 + 1)
    with pytest.raises(JobNotFound):
        harness.engine.get(job.id)  # type: ignore[union-attr]


@run
async def test_idempotency_window(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(idempotency_retention=100.0, retain_max_per_queue=0))
    job, created = await e.enqueue("q", "h", b"1", idempotency_key="k", now=T0)
    same, created2 = await e.enqueue("q", "h", b"2", idempotency_key="k", now=T0 + 50)
    assert created and not created2 and same is job
    other, created3 = await e.enqueue("other", "h", b"", idempotency_key="k", now=T0)
    assert created3 and other.id != job.id
    e.reserve(["q"], "w", T0)
    await e.ack(job.id, "w", T0 + 1)
    await e.tick(T0 + 2)  # history keeps nothing: the job is evicted, its key stays
    with pytest.raises(JobNotFound):
        e.get(job.id)
    stub, created4 = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0 + 60)
    assert not created4 and stub.id == job.id and stub.state is S.SUCCEEDED
    await e.snapshot("q")
    e = await harness.restart(T0 + 70)
    stub, created5 = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0 + 70)
    assert not created5 and stub.id == job.id
    await e.tick(T0 + 100)
    fresh, created6 = await e.enqueue("q", "h", b"", idempotency_key="k", now=T0 + 101)
    assert created6 and fresh.id != job.id
    assert e.find_by_key("q", "k") is fresh


@run
async def test_history_eviction_by_count_and_age(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(retain_max_per_queue=2, retain_succeeded=100.0))
    jobs = [(await e.enqueue("q", "h", b"", now=T0))[0] for _ in range(4)]
    for i, job in enumerate(e.reserve(["q"], "w", T0, limit=4)):
        await e.ack(job.id, "w", T0 + i)
    await e.tick(T0 + 10)
    assert e.queue_stats("q").counts["succeeded"] == 2
    assert {j.id for j in e.list_jobs("q", S.SUCCEEDED)[0]} == {jobs[2].id, jobs[3].id}
    await e.tick(T0 + 102.5)
    assert e.queue_stats("q").counts["succeeded"] == 1
    await e.tick(T0 + 104)
    assert e.stats().total_jobs == 0


@run
async def test_pagination_is_stable_under_concurrent_inserts(harness: Harness) -> None:
    e = await harness.open()
    first = [(await e.enqueue("q", "h", b"", now=T0))[0] for _ in range(10)]
    page, cursor = e.list_jobs("q", S.ENQUEUED, limit=4)
    assert page == first[9:5:-1] and cursor is not None
    for _ in range(5):
        await e.enqueue("q", "h", b"", now=T0)
    await e.cancel(first[5].id, T0)
    page2, cursor = e.list_jobs("q", S.ENQUEUED, cursor=cursor, limit=4)
    assert page2 == first[4:0:-1]
    page3, cursor = e.list_jobs("q", S.ENQUEUED, cursor=cursor, limit=4)
    assert page3 == first[0:1] and cursor is None
    oldest, _ = e.list_jobs("q", S.ENQUEUED, limit=2, newest_first=False)
    assert oldest == first[:2]
    with pytest.raises(ValidationError):
        e.list_jobs("q", S.ENQUEUED, cursor="x")
    with pytest.raises(QueueNotFound):
        e.list_jobs("nope", S.ENQUEUED)


@run
async def test_search(harness: Harness) -> None:
    e = await harness.open()
    a, _ = await e.enqueue("q", "send_email", b"", idempotency_key="welcome-42", now=T0)
    b, _ = await e.enqueue("r", "send_email", b"", now=T0)
    c, _ = await e.enqueue("q", "resize", b"", now=T0)
    assert e.search(a.id) == [a]
    assert e.search("welcome-42") == [a]
    assert e.search("send_email") == [b, a]
    assert e.search("send_email", limit=1) == [b]
    assert e.search("send_email", before=b.id) == [a]
    assert e.search("resize") == [c] and e.search("nothing") == []
    e = await harness.restart(T0)
    assert [j.id for j in e.search("send_email")] == [b.id, a.id]


@run
async def test_validation_changes_nothing(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(max_payload=10))
    bad: list[tuple[str, dict[str, object]]] = [
        ("priority", {"priority": 11}),
        ("max_attempts", {"max_attempts": 0}),
        ("timeout", {"timeout": -1}),
        ("delay", {"delay": -1}),
        ("delay", {"delay": 1, "run_at": T0}),
        ("idempotency_key", {"idempotency_key": ""}),
        ("headers", {"headers": {"a": 1}}),
        ("backoff.factor", {"backoff": Backoff(BackoffKind.EXPONENTIAL, factor=0.1)}),
    ]
    for field, kwargs in bad:
        key = kwargs.pop("idempotency_key", None)
        with pytest.raises(ValidationError) as err:
            await e.enqueue("q", "h", b"", now=T0, options=JobOptions(**kwargs), idempotency_key=key)  # type: ignore[arg-type]
        assert err.value.field == field
    with pytest.raises(PayloadTooLarge):
        await e.enqueue("q", "h", b"x" * 11, now=T0)
    with pytest.raises(ValidationError):
        await e.enqueue("", "h", b"", now=T0)
    with pytest.raises(ValidationError):
        await e.enqueue("q", "", b"", now=T0)
    assert e.stats().total_jobs == 0 and e.queues() == []


@run
async def test_enqueue_batch_is_one_record(harness: Harness) -> None:
    e = await harness.open()
    jobs, created = await e.enqueue_batch(
        "q", "h", [b"a", b"b", b"c"], idempotency_keys=["x", None, "x"], now=T0
    )
    assert created == [True, True, False] and jobs[0] is jobs[2]
    if harness.state is not None:
        assert harness.state.logs["q"].last_lsn == 1
    e = await harness.restart(T0)
    assert [j.payload for j in e.reserve(["q"], "w", T0, limit=5)] == [b"a", b"b"]


@run
async def test_enqueue_batch_refuses_bad_arguments_on_new_and_existing_queues(harness: Harness) -> None:
    e = await harness.open()
    for queue in ("", "bad name", "-x", 7):
        with pytest.raises(ValidationError) as info:
            await e.enqueue_batch(queue, "h", [b"a"], now=T0)  # type: ignore[arg-type]
        assert info.value.field == "queue"
    await e.enqueue_batch("q", "h", [b"a"], now=T0)  # "q" exists from here on
    for queue in ("new", "q"):
        for payloads in (b"ab", "ab", None, 3, [b"a", "b"]):
            with pytest.raises(ValidationError) as info:
                await e.enqueue_batch(queue, "h", payloads, now=T0)  # type: ignore[arg-type]
            assert info.value.field in ("payloads", "payload")
        jobs, _ = await e.enqueue_batch(queue, "h", (b"t1", b"t2"), now=T0)  # any sequence
        assert [j.payload for j in jobs] == [b"t1", b"t2"]
    assert "bad name" not in e.state.queues
    assert len(e.reserve(["q"], "w", T0, limit=10)) == 3


@run
async def test_recovery_preserves_everything(harness: Harness) -> None:
    e = await harness.open()
    ready = [
        (await e.enqueue("q", "h", bytes([i]), now=T0, options=JobOptions(priority=i % 2)))[0]
        for i in range(6)
    ]
    sched, _ = await e.enqueue("q", "h", b"", now=T0, options=JobOptions(delay=100))
    done, _ = await e.enqueue("d", "h", b"", now=T0, options=JobOptions(headers={"trace": "1"}))
    e.reserve(["d"], "w", T0)
    await e.ack(done.id, "w", T0 + 1, b"r")
    leased = e.reserve(["q"], "w", T0 + 2)[0]
    await e.pause("q", T0)
    await e.set_durability("d", Durability.ASYNC, T0)
    before = {j.id: (j.state, j.attempts) for j in [*ready, sched, done]}
    e = await harness.restart(T0 + 3)
    after = {jid: (e.get(jid).state, e.get(jid).attempts) for jid in before}
    before[leased.id] = (S.ENQUEUED, 0)  # deliveries are not logged: ready again
    assert after == before
    assert e.get(done.id).result == b"r" and e.get(done.id).headers == {"trace": "1"}
    assert e.is_paused("q") and e.queue_stats("d").durability is Durability.ASYNC
    await e.resume("q", T0 + 3)
    order = [j.id for j in e.reserve(["q"], "w", T0 + 3, limit=10)]
    assert order == [ready[i].id for i in (1, 3, 5, 0, 2, 4)]
    newer, _ = await e.enqueue("q", "h", b"", now=T0 - 1000)  # the clock stepped back
    assert newer.id > max(before)


@run
async def test_snapshot_then_restart(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(snapshot_chunk=3))
    jobs = [(await e.enqueue("q", "h", bytes([i]), now=T0))[0] for i in range(10)]
    e.reserve(["q"], "w", T0, limit=2)
    await e.ack(jobs[0].id, "w", T0)
    lsn = await e.snapshot("q")
    assert lsn == 11
    await e.fail(jobs[1].id, "w", T0, "x", retryable=False)
    await e.delete(jobs[2].id, T0)
    await e.cancel(jobs[3].id, T0)
    extra, _ = await e.enqueue("q", "h", b"", now=T0)
    e = await harness.restart(T0 + 1)
    counts = e.queue_stats("q").counts
    assert counts == {**{s.label: 0 for s in S}, "enqueued": 7, "succeeded": 1, "dead": 1, "cancelled": 1}
    assert e.get(extra.id).state is S.ENQUEUED
    assert [j.id for j in e.reserve(["q"], "w", T0 + 1, limit=3)] == [j.id for j in jobs[4:7]]


@run
async def test_snapshots_are_timed(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(snapshot_chunk=3))
    for i in range(10):
        await e.enqueue("q", "h", bytes([i]), now=T0)
    stats = e.snapshot_stats
    assert stats.last_at == 0 and stats.seconds.read()[2] == 0
    await e.snapshot("q")
    await e.snapshot("q")
    _, total, count = stats.seconds.read()
    assert count == 2 and 0 < total < 10 and 0 < stats.last_seconds <= total
    assert stats.last_at > T0 and stats.failed == 0


@run
async def test_a_batch_is_observed_once_or_job_by_job(harness: Harness) -> None:
    e = await harness.open()
    seen: list[tuple[str, bool]] = []
    batches: list[list[str]] = []
    e.observer = lambda job, deleted: seen.append((job.id, deleted))
    jobs, _ = await e.enqueue_batch("q", "h", [b"1", b"2", b"3"], now=T0)
    assert seen == [(j.id, False) for j in jobs]  # no batch observer: one call per job
    seen.clear()
    e.batch_observer = lambda new: batches.append([j.id for j in new])
    jobs, _ = await e.enqueue_batch("q", "h", [b"4", b"5"], now=T0)
    keyed, created = await e.enqueue_batch("q", "h", [b"6", b"7"], now=T0, idempotency_keys=["k", None])
    again, created_again = await e.enqueue_batch("q", "h", [b"8", b"9"], now=T0, idempotency_keys=["k", None])
    assert batches == [[j.id for j in jobs], [j.id for j in keyed], [again[1].id]]  # only new jobs
    assert created == [True, True] and created_again == [False, True] and seen == []
    (single, _) = await e.enqueue("q", "h", b"x", now=T0)
    assert seen == [(single.id, False)]  # single enqueues and transitions use the job observer


@run
async def test_tick_starts_snapshots(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(snapshot_every=5))
    for _ in range(6):
        await e.enqueue("q", "h", b"", now=T0)
    await e.tick(T0)
    await e.close()
    harness.engine = None
    if harness.state is not None:
        assert harness.state.logs["q"].snapshots_finished == 1
    e = await harness.open(T0)
    assert e.stats().total_jobs == 6


@run
async def test_disk_full_refuses_enqueue_but_acks_commit(harness: Harness) -> None:
    if harness.state is None:
        pytest.skip("disk-full simulation needs MemoryStorage")
    e = await harness.open()
    job, _ = await e.enqueue("q", "h", b"", now=T0)
    other, _ = await e.enqueue("q", "h", b"", now=T0)
    e.reserve(["q"], "w", T0, limit=2)
    harness.state.low_on_space = True
    with pytest.raises(NoSpace) as err:
        await e.enqueue("q", "h", b"", now=T0)
    assert err.value.code == "NO_SPACE" and e.stats().total_jobs == 2
    await e.ack(job.id, "w", T0)
    await e.fail(other.id, "w", T0, "x")
    harness.state.low_on_space = False
    e = await harness.restart(T0)
    assert e.get(job.id).state is S.SUCCEEDED and e.get(other.id).state is S.RETRYING


def _pending(e: object) -> tuple[int, int, int, int]:
    return e.pending_figures("q")  # type: ignore[attr-defined, no-any-return]


@run
async def test_pending_jobs_and_bytes_are_exact_through_every_transition(harness: Harness) -> None:
    e = await harness.open()
    assert _pending(e) == (0, 0, 0, 0) and e.pending() == 0 and e.pending_bytes("nope") == 0
    a, _ = await e.enqueue("q", "h", b"aaa", now=T0)
    jobs, created = await e.enqueue_batch(
        "q", "h", [b"bb", b"c", b"dddd"], now=T0, options=JobOptions(delay=5)
    )
    assert created is None and all(j.state is S.SCHEDULED for j in jobs)
    await e.enqueue("other", "h", b"zz", now=T0)
    assert _pending(e) == (4, 10, 5, 12)
    assert (e.pending("q"), e.pending_bytes("q"), e.pending(), e.pending_bytes()) == (4, 10, 5, 12)
    await e.tick(T0 + 5)
    held = e.reserve(["q"], "w", T0 + 5, limit=4)
    assert len(held) == 4 and _pending(e)[:2] == (4, 10)
    await e.ack(a.id, "w", T0 + 6)  # 3 bytes finished
    await e.fail(jobs[0].id, "w", T0 + 6, "boom", retryable=False)  # 2 bytes dead
    await e.fail(jobs[1].id, "w", T0 + 6, "again")  # retrying: still pending
    assert _pending(e) == (2, 5, 3, 7)
    await e.cancel(jobs[2].id, T0 + 7)
    assert _pending(e) == (1, 1, 2, 3)
    await e.retry(jobs[0].id, T0 + 8)  # dead -> enqueued: pending again
    assert _pending(e) == (2, 3, 3, 5)
    await e.delete(jobs[1].id, T0 + 9)
    assert _pending(e) == (1, 2, 2, 4)
    e = await harness.restart(T0 + 10)
    assert _pending(e) == (1, 2, 2, 4)
    stats = e.queue_stats("q")
    assert stats.counts["enqueued"] == 1 and stats.total == 3 and list(stats.counts) == [s.label for s in S]


@run
async def test_enqueue_batch_checks_everything_before_changing_anything(harness: Harness) -> None:
    e = await harness.open()
    with pytest.raises(PayloadTooLarge):
        await e.enqueue_batch("q", "h", [b"ok", b"x" * (2**20 + 1)], now=T0)
    with pytest.raises(ValidationError) as err:
        await e.enqueue_batch("q", "h", [b"ok", "text"], now=T0)  # type: ignore[list-item]
    assert err.value.field == "payload"
    for bad in ({"priority": 11}, {"max_attempts": 0}, {"timeout": -1.0}, {"headers": {"a": 1}}):
        with pytest.raises(ValidationError):
            await e.enqueue_batch("q", "h", [b"a"], now=T0, options=JobOptions(**bad))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await e.enqueue_batch("q", "h", [b"a", b"b"], idempotency_keys=["k"], now=T0)
    assert e.stats().total_jobs == 0 and _pending(e) == (0, 0, 0, 0)
    # Keys all None take the bulk path; a key that names a job returns it as not created.
    jobs, created = await e.enqueue_batch("q", "h", [b"a", b"b"], idempotency_keys=[None, None], now=T0)
    assert created is None and len({j.id for j in jobs}) == 2
    first, _ = await e.enqueue("q", "h", b"k", idempotency_key="k", now=T0)
    again, created = await e.enqueue_batch("q", "h", [b"x", b"y"], idempotency_keys=["k", "n"], now=T0)
    assert created == [False, True] and again[0] is first
    more, fresh = await e.enqueue_batch(
        "q", "h", [b"p", b"q"], now=T0 + 1, options=JobOptions(priority=3, headers={"t": "1"})
    )
    assert fresh is None
    assert all(j.priority == 3 and j.headers == {"t": "1"} and j.queue == "q" for j in more)
    ids = [j.id for j in jobs] + [again[1].id] + [j.id for j in more]
    e = await harness.restart(T0 + 2)
    assert all(e.get(i).state is S.ENQUEUED for i in ids) and e.pending("q") == 6


@run
async def test_release_hands_a_job_back_uncounted_and_ready_after_a_restart(harness: Harness) -> None:
    e = await harness.open()
    a, _ = await e.enqueue("q", "h", b"a", now=T0)
    b, _ = await e.enqueue("q", "h", b"b", now=T0)
    e.reserve(["q"], "w", T0 + 1, limit=2)
    assert a.attempts == 1
    with pytest.raises(StaleLease):
        await e.release(a.id, "other", T0 + 2)
    harness.ready.clear()
    job = await e.release(a.id, "w", T0 + 2)
    assert job is a and a.state is S.ENQUEUED and a.attempts == 0 and a.errors is None
    assert a.worker is None and a.lease_until is None and a.run_at is None and harness.ready == ["q"]
    assert [j.id for j in e.held_by("w")] == [b.id]
    out = await e.release_many([b.id, a.id, "nope"], "w", T0 + 3)
    assert out[0] is b and isinstance(out[1], StaleLease) and isinstance(out[2], JobNotFound)
    assert e.held_by("w") == [] and e.pending("q") == 2
    e = await harness.restart(T0 + 4)
    for job_id in (a.id, b.id):
        got = e.get(job_id)
        assert got.state is S.ENQUEUED and got.attempts == 0 and got.errors is None
    # A released job runs again with attempt 1, and its history shows the hand-back.
    (again,) = e.reserve(["q"], "w2", T0 + 5)
    assert again.id == a.id and again.attempts == 1
    states = [s for s, _ in transitions(e.get(a.id))]
    assert states == [S.ENQUEUED, S.ENQUEUED, S.RESERVED]  # created, released (replayed), reserved


@run
async def test_ack_many_settles_each_item_and_commits_once_per_queue(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig(max_result=4))
    jobs = [(await e.enqueue(q, "h", b"", now=T0))[0] for q in ("a", "a", "b", "b")]
    e.reserve(["a", "b"], "w", T0, limit=4)
    other, _ = await e.enqueue("a", "h", b"", now=T0)
    e.reserve(["a"], "w2", T0)
    ids = [jobs[0].id, jobs[1].id, "nope", other.id, jobs[2].id, jobs[0].id, jobs[3].id]
    results = [None, b"12345", None, None, b"ok", None, None]
    out = await e.ack_many(ids, "w", T0 + 1, results)
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["Job", "PayloadTooLarge", "JobNotFound", "StaleLease", "Job", "StaleLease", "Job"]
    assert jobs[1].state is S.RESERVED and other.state is S.RESERVED  # failed items changed nothing
    with pytest.raises(ValidationError):
        await e.ack_many([jobs[1].id], "w", T0, [None, None])
    e = await harness.restart(T0 + 2)
    assert [e.get(j.id).state for j in jobs] == [S.SUCCEEDED, S.ENQUEUED, S.SUCCEEDED, S.SUCCEEDED]
    assert e.get(jobs[2].id).result == b"ok"


@run
async def test_history_holds_every_transition_from_the_creation_state(harness: Harness) -> None:
    e = await harness.open()
    now_job, _ = await e.enqueue("q", "h", b"", now=T0)
    later, _ = await e.enqueue("q", "h", b"", now=T0 + 1, options=JobOptions(delay=5))
    batch, _ = await e.enqueue_batch("q", "h", [b"x"], now=T0 + 2)
    assert now_job.history is None  # enqueue pays nothing: derived from created_at and state
    assert transitions(now_job) == [(S.ENQUEUED, T0)]
    assert transitions(later) == [(S.SCHEDULED, T0 + 1)]
    assert transitions(batch[0]) == [(S.ENQUEUED, T0 + 2)]
    await e.tick(T0 + 6)
    assert transitions(later) == [(S.SCHEDULED, T0 + 1), (S.ENQUEUED, T0 + 6)]
    e.reserve(["q"], "w", T0 + 7, limit=3)
    e.start(now_job.id, "w", T0 + 8)
    await e.ack(now_job.id, "w", T0 + 9)
    assert transitions(now_job) == [
        (S.ENQUEUED, T0),
        (S.RESERVED, T0 + 7),
        (S.RUNNING, T0 + 8),
        (S.SUCCEEDED, T0 + 9),
    ]
    await e.snapshot("q")
    await e.cancel(batch[0].id, T0 + 10)
    e = await harness.restart(T0 + 11)
    assert transitions(e.get(now_job.id))[0] == (S.ENQUEUED, T0)
    assert [s for s, _ in transitions(e.get(later.id))][:2] == [S.SCHEDULED, S.ENQUEUED]
    assert transitions(e.get(batch[0].id))[0] == (S.ENQUEUED, T0 + 2)
    assert transitions(e.get(batch[0].id))[-1] == (S.CANCELLED, T0 + 10)


@run
async def test_queue_names_the_storage_cannot_hold_are_refused(harness: Harness) -> None:
    e = await harness.open()
    for queue in ["Ý%¢", "-leading-dash", "a/b", "x" * 129, ".."]:
        with pytest.raises(ValidationError) as info:
            await e.enqueue(queue, "h", b"", now=T0)
        assert info.value.field == "queue"
        with pytest.raises(ValidationError):
            await e.enqueue_batch(queue, "h", [b""], now=T0)
    assert e.queues() == []


@run
async def test_first_writers_of_a_new_queue_share_its_creation(harness: Harness) -> None:
    e = await harness.open()
    keyed = [e.enqueue("new", "h", b"k", now=T0, idempotency_key="once") for _ in range(10)]
    plain = [e.enqueue("new", "h", b"p", now=T0) for _ in range(10)]
    batch = [e.enqueue_batch("new", "h", [b"b"] * 3, now=T0, idempotency_keys=["b1", None, "b1"])]
    results = await asyncio.gather(*keyed, *plain, *batch)
    keyed_jobs = [job for job, _ in results[:10]]
    assert len({job.id for job in keyed_jobs}) == 1
    assert [created for _, created in results[:10]].count(True) == 1
    assert e.queues() == ["new"]
    # 1 keyed + 10 plain + 2 new jobs of the batch (its second "b1" is the first one's job)
    assert e.stats().total_jobs == 13
    e = await harness.restart(T0 + 1)
    assert e.stats().total_jobs == 13


def test_a_new_queues_files_are_made_off_the_event_loop(tmp_path: Path) -> None:
    from spitfire.wal import FileStorage, WalConfig

    threads: list[int] = []

    class Recording(FileStorage):
        def _recover_files(self, queue: str, queue_dir: Path | None = None) -> Any:
            if not queue.startswith("meta/"):  # the schedules log is opened at start, before serving
                threads.append(threading.get_ident())
            return super()._recover_files(queue, queue_dir)

    async def main() -> None:
        e = Engine(Recording(tmp_path, WalConfig(segment_size=1 << 20)), EngineConfig())
        await e.open(T0)
        try:
            await e.enqueue("fresh", "h", b"", now=T0)
            await e.set_durability("other", Durability.SYNC, now=T0)
        finally:
            await e.close()

    asyncio.run(main())
    assert len(threads) == 2 and threading.get_ident() not in threads
