"""End to end against a real spitfire-server process over TCP: producers and in-process workers."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import msgspec
import pytest
from sdk_helpers import ServerProcess, run_burst, wait_state, wait_until, worker_thread

import spitfire
from spitfire.protocol.messages import JobIds, MessageType, Subscribe


def test_enqueue_work_ack_sync_and_async(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    seen: list[tuple[str, int]] = []

    @app.job(queue=queue)
    def add(a: int, b: int = 10) -> int:
        seen.append((spitfire.context().id, spitfire.context().attempt))
        return a + b

    @app.job(queue=queue)
    async def greet(name: str, ctx: spitfire.JobContext) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"hello": name, "queue": ctx.queue, "trace": ctx.headers.get("trace", "")}

    j1 = add.enqueue(1, b=2)
    j2 = greet.options(headers={"trace": "abc"}).enqueue(name="ada")
    j3 = client.enqueue(queue, "add", {"a": 5})  # a plain producer, payload as a map
    worker = run_burst(app)
    assert worker.processed == 3 and worker.failed == 0
    assert client.get(j1).result == 3 and client.get(j3).result == 15
    job = client.get(j2)
    assert job.state == "succeeded" and job.attempts == 1
    assert job.result == {"hello": "ada", "queue": queue, "trace": "abc"}
    assert job.history[-1].state == "succeeded"
    assert sorted(seen) == sorted([(j1, 1), (j3, 1)])


async def _async_producer(app: spitfire.App, fn: spitfire.JobFunction[..., object]) -> list[str]:
    ids = [await fn.enqueue_async(i) for i in range(3)]
    await app.async_client().close()
    return ids


def test_enqueue_async_and_enqueue_many(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def square(x: int) -> int:
        return x * x

    ids = asyncio.run(_async_producer(app, square))
    ids += client.enqueue_many(queue, "square", [{"x": 3}, {"x": 4}])
    run_burst(app)
    assert [client.get(i).result for i in ids] == [0, 1, 4, 9, 16]


def test_retries_with_backoff_then_dead(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    runs: list[float] = []

    @app.job(queue=queue, max_attempts=3, backoff=spitfire.Backoff("fixed", 0.3))
    def flaky() -> None:
        runs.append(time.monotonic())
        raise ValueError(f"attempt {spitfire.context().attempt} failed")

    job_id = flaky.enqueue()
    run_burst(app)
    job = client.get(job_id)
    assert job.state == "dead" and job.attempts == 3 and len(runs) == 3
    assert [e.error for e in job.errors] == [f"ValueError: attempt {i} failed" for i in (1, 2, 3)]
    assert job.errors[0].traceback is not None and "in flaky" in job.errors[0].traceback
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(runs))  # the backoff was waited
    assert "retrying" in [t.state for t in job.history]


def test_a_list_of_delays_is_a_backoff(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    runs: list[float] = []

    @app.job(queue=queue, max_attempts=3, backoff=[0.2, 0.6])
    def flaky() -> None:
        runs.append(time.monotonic())
        raise ValueError("no")

    job_id = flaky.enqueue()
    assert client.get(job_id).backoff == spitfire.Backoff.of_delays([0.2, 0.6])
    run_burst(app)
    assert client.get(job_id).state == "dead" and len(runs) == 3
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.5  # each retry waited its own delay
    other = client.enqueue(queue, "x", {}, backoff=[1, 2, 3])
    assert client.get(other).backoff == spitfire.Backoff("delays", delays=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="list of delays"):
        client.enqueue(queue, "x", {}, backoff="1s")  # type: ignore[typeddict-item]


def test_delay_runs_the_job_later(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    ran_at: list[float] = []

    @app.job(queue=queue)
    def later() -> None:
        ran_at.append(time.time())

    job_id = later.options(delay=1.0).enqueue()
    job = client.get(job_id)
    assert job.state == "scheduled" and job.run_at is not None
    with worker_thread(app):
        wait_state(client, job_id, "succeeded")
    assert ran_at[0] >= job.created_at + 1.0 - 0.05


def test_priority_order_then_fifo(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    order: list[str] = []

    @app.job(queue=queue)
    def record(tag: str) -> None:
        order.append(tag)

    for tag, prio in [("low1", 0), ("high1", 9), ("mid1", 5), ("low2", 0), ("high2", 9), ("mid2", 5)]:
        record.options(priority=prio).enqueue(tag)
    run_burst(app, concurrency=1)
    assert order == ["high1", "high2", "mid1", "mid2", "low1", "low2"]


def test_idempotency_key_returns_the_same_job(client: spitfire.Client, queue: str) -> None:
    first = client.enqueue(queue, "x", {"n": 1}, idempotency_key="welcome-42")
    again = client.enqueue(queue, "x", {"n": 2}, idempotency_key="welcome-42")
    assert first == again
    assert client.get(first).payload == {"n": 1}
    ids = client.enqueue_many(queue, "x", [1, 2], idempotency_keys=["welcome-42", "other"])
    assert ids[0] == first and ids[1] != first
    assert client.stats(queue).queues[queue].total == 2


def test_errors_from_the_real_server(client: spitfire.Client, queue: str) -> None:
    with pytest.raises(spitfire.JobNotFound):
        client.get("01nosuchjob0000000000000")
    with pytest.raises(spitfire.BadRequest) as info:
        client.enqueue(queue, "x", priority=99)
    assert info.value.field == "priority"
    job_id = client.enqueue(queue, "x")
    assert client.cancel(job_id).state == "cancelled"
    with pytest.raises(spitfire.Conflict):
        client.cancel(job_id)
    assert client.retry(job_id).state in ("enqueued", "scheduled")
    client.delete(job_id)
    with pytest.raises(spitfire.JobNotFound):
        client.get(job_id)


def test_pause_and_resume(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def noop() -> None: ...

    job_id = noop.enqueue()
    client.pause(queue)
    assert client.stats().queues[queue].paused
    with worker_thread(app):
        time.sleep(0.5)  # a paused queue delivers nothing; give it the chance to be wrong
        assert client.get(job_id).state == "enqueued"
        client.resume(queue)
        wait_state(client, job_id, "succeeded")


def test_lease_expiry_redelivers(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    """A worker that takes a job and then never heartbeats (hung) loses it when the lease ends."""
    job_id = client.enqueue(queue, "hung", timeout=1.0, max_attempts=3)

    async def hung_worker() -> None:
        from spitfire._connection import open_connection

        conn = await open_connection(spitfire.AsyncClient(server.url).endpoint, token=None, client="hung")
        _, fut = conn.request(MessageType.SUBSCRIBE, Subscribe([queue], 1, "hung"))
        await fut
        while not conn.closed.done():
            await asyncio.sleep(0.05)
            if client.get(job_id).state == "reserved":
                conn.send(MessageType.START, JobIds([job_id]))
                break
        await asyncio.sleep(0.5)
        # Hold the connection open (no heartbeat) until the server takes the job back.
        await asyncio.to_thread(wait_state, client, job_id, "enqueued", "retrying", "scheduled")
        conn.close()

    asyncio.run(hung_worker())
    job = client.get(job_id)
    assert job.attempts == 1 and job.errors[-1].error == "lease expired"
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def hung() -> str:
        return "second time lucky"

    with worker_thread(app):
        job = wait_state(client, job_id, "succeeded")
    assert job.result == "second time lucky" and job.attempts == 2


def test_heartbeats_keep_a_long_job_leased(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue, timeout=0.6)
    async def slow() -> str:
        await asyncio.sleep(2.0)  # more than three leases long
        return "done"

    job_id = slow.enqueue()
    run_burst(app)
    job = client.get(job_id)
    assert job.state == "succeeded" and job.attempts == 1 and job.errors == ()


def test_permanent_goes_dead_at_once(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue, max_attempts=5)
    def validate(n: int) -> None:
        raise spitfire.Permanent(f"{n} is not a valid order number")

    job_id = validate.enqueue(7)
    run_burst(app)
    job = client.get(job_id)
    assert job.state == "dead" and job.attempts == 1
    assert job.errors[0].error == "Permanent: 7 is not a valid order number"


def test_retry_after_reruns_without_counting(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)
    attempts: list[int] = []

    @app.job(queue=queue, max_attempts=1)
    def rate_limited() -> str:
        attempts.append(spitfire.context().attempt)
        if len(attempts) < 3:
            raise spitfire.RetryAfter(0.3)
        return "through"

    job_id = rate_limited.enqueue()
    started = time.monotonic()
    run_burst(app)  # waits for the deferred job, since this worker deferred it
    job = client.get(job_id)
    assert job.state == "succeeded" and job.result == "through"
    assert attempts == [1, 1, 1] and job.errors == ()  # not counted: max_attempts=1 was enough
    assert time.monotonic() - started >= 0.6


def test_a_payload_that_does_not_fit_is_dead_at_once(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def typed(n: int) -> None: ...

    job_id = client.enqueue(queue, "typed", {"n": "not a number"})
    unknown = client.enqueue(queue, "nobody-has-this", max_attempts=1)
    run_burst(app)
    job = client.get(job_id)
    assert job.state == "dead" and job.attempts == 1 and "JobArgumentError" in (job.last_error or "")
    assert "no job named 'nobody-has-this'" in (client.get(unknown).last_error or "")


def test_cancel_a_running_async_job(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    cancelled = threading.Event()

    @app.job(queue=queue)
    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = forever.enqueue()
    with worker_thread(app) as worker:
        wait_state(client, job_id, "running")
        assert client.cancel(job_id).state == "cancelled"
        assert cancelled.wait(10)
        wait_until(lambda: not worker._running, what="the slot to be freed")
        job = client.get(job_id)
        assert job.state == "cancelled" and job.attempts <= 1
        follow = client.enqueue(queue, "forever")  # the worker keeps taking jobs
        wait_state(client, follow, "running")
        client.cancel(follow)
    assert client.get(job_id).state == "cancelled"


def test_cancel_a_running_sync_job(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    saw_cancel = threading.Event()

    @app.job(queue=queue)
    def loop_until_cancelled() -> str:
        ctx = spitfire.context()
        deadline = time.monotonic() + 60
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        saw_cancel.set()
        return "ignored"

    job_id = loop_until_cancelled.enqueue()
    with worker_thread(app):
        wait_state(client, job_id, "running")
        client.cancel(job_id)
        assert saw_cancel.wait(10)
        time.sleep(0.3)  # the worker must not report an outcome for it
    job = client.get(job_id)
    assert job.state == "cancelled" and job.result is None


def test_result_that_cannot_be_encoded_is_reported(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def odd() -> object:
        return object()

    job_id = odd.enqueue()
    run_burst(app)
    job = client.get(job_id)
    assert job.state == "dead" and "cannot be encoded as msgpack" in (job.last_error or "")


def test_burst_exits_at_once_on_empty_queues(server: ServerProcess, queue: str) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def noop() -> None: ...

    started = time.monotonic()
    run_burst(app, timeout=30)
    assert time.monotonic() - started < 15


def test_many_jobs_drain_with_bounded_concurrency(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)
    active = [0]
    peak = [0]
    lock = threading.Lock()

    @app.job(queue=queue)
    def work(i: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.001)
        with lock:
            active[0] -= 1
        return i

    ids = client.enqueue_many(queue, "work", [{"i": i} for i in range(500)])
    worker = run_burst(app, concurrency=4)
    assert worker.processed == 500 and peak[0] <= 4
    stats = client.stats(queue).queues[queue]
    assert stats.counts["succeeded"] == 500
    assert client.get(ids[-1]).result == 499
    assert msgspec.msgpack.decode(client.get(ids[0]).raw_payload) == {"i": 0}
