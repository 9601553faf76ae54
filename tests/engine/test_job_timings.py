"""Per-handler run and queue-wait times (`JobTimings`, /metrics' spitfire_job_*_seconds): measured
by the engine from its own clock (the ``now`` of each command and the time of each record), on
both storage backends, bounded in series, and memory only (a restart starts from zero)."""

from __future__ import annotations

import pytest
from engine_harness import T0, Harness, run

from spitfire.server.building import JobOptions
from spitfire.server.engine import Engine
from spitfire.server.stats import JOB_BOUNDS, OTHER_JOB, JobSeries, JobTimings
from spitfire.wal.stats import Buckets


def figures(b: Buckets) -> tuple[int, float]:
    """(count, sum) of a histogram."""
    _cumulative, total, count = b.read()
    return count, total


def timings(e: Engine) -> JobTimings:
    t = e.job_timings
    assert t is not None
    return t


def series(e: Engine, queue: str, job: str) -> JobSeries:
    return timings(e).queues[queue][job]


async def run_one(e: Engine, queue: str, name: str, ready: float, start: float, end: float) -> None:
    """Enqueue at ``ready``, reserve and START at ``start``, ack at ``end``."""
    job, _ = await e.enqueue(queue, name, b"\x80", now=ready)
    (got,) = e.reserve([queue], "w", start)
    assert got.id == job.id
    e.start(job.id, "w", start)
    await e.ack(job.id, "w", end)


@run
async def test_wait_is_ready_to_start_and_run_is_start_to_outcome(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "resize", b"\x80", now=T0)
    (got,) = e.reserve(["q"], "w", T0 + 1.0)  # delivered, buffered by the worker ...
    e.start(got.id, "w", T0 + 3.0)  # ... and started 3 s after it was enqueued
    e.start(got.id, "w", T0 + 4.0)  # a second START changes nothing
    s = series(e, "q", "resize")
    assert figures(s.wait) == (1, 3.0) and figures(s.run) == (0, 0.0)
    await e.ack(job.id, "w", T0 + 10.0)
    assert figures(s.run) == (1, 7.0)
    cumulative, _, _ = s.run.read()
    assert cumulative[JOB_BOUNDS.index(10.0)] == 1 and cumulative[JOB_BOUNDS.index(5.0)] == 0


@run
async def test_failures_retry_afters_and_lost_leases_end_attempts_too(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "flaky", b"\x80", now=T0, options=JobOptions(max_attempts=3))
    e.reserve(["q"], "w", T0)
    e.start(job.id, "w", T0 + 1)
    await e.fail(job.id, "w", T0 + 3, "ValueError: no")  # ran 2 s; retrying
    s = series(e, "q", "flaky")
    assert figures(s.wait) == (1, 1.0) and figures(s.run) == (1, 2.0)

    await e.tick(T0 + 1000)  # the backoff is over: ready again at T0 + 1000
    (again,) = e.reserve(["q"], "w", T0 + 1000)
    e.start(again.id, "w", T0 + 1004)  # waited 4 s since it became ready again, not since creation
    await e.fail(again.id, "w", T0 + 1005, "busy", retry_at=T0 + 1010)  # RetryAfter: ran 1 s
    assert figures(s.wait) == (2, 5.0) and figures(s.run) == (2, 3.0)

    await e.tick(T0 + 1010)
    (third,) = e.reserve(["q"], "w", T0 + 1010)
    e.start(third.id, "w", T0 + 1010)
    await e.tick(T0 + 1010 + third.timeout + 1)  # the lease runs out: the attempt ended
    count, total = figures(s.run)
    assert count == 3 and total == pytest.approx(3.0 + third.timeout + 1)


@run
async def test_a_job_never_started_is_in_neither_histogram(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "raw", b"\x80", now=T0)
    e.reserve(["q"], "w", T0 + 1)
    await e.ack(job.id, "w", T0 + 2)  # a worker that acks without START
    assert timings(e).rows() == []


@run
async def test_a_delayed_job_waits_from_its_promotion(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue("q", "later", b"\x80", now=T0, options=JobOptions(delay=60.0))
    await e.tick(T0 + 60)
    (got,) = e.reserve(["q"], "w", T0 + 61)
    assert got.id == job.id
    e.start(got.id, "w", T0 + 62)
    assert figures(series(e, "q", "later").wait) == (1, 2.0)


@run
async def test_a_clock_that_steps_back_counts_zero_not_negative(harness: Harness) -> None:
    e = await harness.open()
    await run_one(e, "q", "h", T0 + 10, T0 + 5, T0 + 1)
    s = series(e, "q", "h")
    assert figures(s.wait) == (1, 0.0) and figures(s.run) == (1, 0.0)


@run
async def test_series_are_capped_and_the_rest_is_other(harness: Harness) -> None:
    e = await harness.open()
    e.state.timings = JobTimings(limit=2)
    for i, name in enumerate(["a", "b", "c", "d", OTHER_JOB]):
        await run_one(e, "q", name, T0, T0 + i, T0 + i + 1)
    await run_one(e, "q2", "a", T0, T0, T0 + 1)
    t = timings(e)
    assert t.pairs == 2 and set(t.queues["q"]) == {"a", "b"}
    # c, d and the job named "other" share q's "other" series; q2 gets its own, names are not kept.
    assert figures(t.other["q"].run) == (3, 3.0) and figures(t.other["q"].wait) == (3, 2.0 + 3 + 4)
    assert figures(t.other["q2"].run) == (1, 1.0)
    labels = sorted((q, j) for q, j, _ in t.rows())
    assert labels == [("q", "a"), ("q", "b"), ("q", OTHER_JOB), ("q2", OTHER_JOB)]


@run
async def test_a_deleted_queue_frees_its_series(harness: Harness) -> None:
    e = await harness.open()
    e.state.timings = JobTimings(limit=1)
    await run_one(e, "gone", "a", T0, T0, T0 + 1)
    await run_one(e, "gone", "b", T0, T0, T0 + 1)
    await e.delete_queue("gone", T0 + 2)
    t = timings(e)
    assert t.rows() == [] and t.pairs == 0
    await run_one(e, "kept", "x", T0 + 3, T0 + 3, T0 + 4)
    assert [(q, j) for q, j, _ in t.rows()] == [("kept", "x")]


@run
async def test_a_restart_starts_from_zero_and_replay_observes_nothing(harness: Harness) -> None:
    e = await harness.open()
    for i in range(3):
        await run_one(e, "q", "h", T0 + i, T0 + i, T0 + i + 1)
    running, _ = await e.enqueue("q", "h", b"\x80", now=T0 + 5)
    e.reserve(["q"], "w", T0 + 5)
    e.start(running.id, "w", T0 + 6)
    await e.snapshot("q")  # a snapshot holds the job RUNNING, with its history
    assert figures(series(e, "q", "h").run)[0] == 3
    e = await harness.restart(T0 + 100)  # replaying three acks counts nothing
    assert timings(e).rows() == []
    # The job running at the restart is ready again; its ready time is unknown, so its wait is
    # not counted, but its run is.
    (got,) = e.reserve(["q"], "w2", T0 + 101)
    assert got.id == running.id
    e.start(got.id, "w2", T0 + 102)
    await e.ack(got.id, "w2", T0 + 105)
    s = series(e, "q", "h")
    assert figures(s.wait) == (0, 0.0) and figures(s.run) == (1, 3.0)


def test_job_timings_refuses_a_negative_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        JobTimings(limit=-1)
