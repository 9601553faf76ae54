"""The worker's prefetch buffer against a real spitfire-server: jobs held delivered but not started
beyond ``concurrency`` (bounded, released on a graceful stop, dropped when cancelled, kept leased)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sdk_helpers import WAIT, ServerProcess, run_burst, wait_state, wait_until

import spitfire


class Gate:
    """A sync job body that records which job ran and blocks until the test opens the gate."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.ran: list[str] = []
        self.active = 0
        self.peak = 0

    def __call__(self) -> None:
        ctx = spitfire.context()
        with self.lock:
            self.ran.append(ctx.id)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            assert self.opened.wait(WAIT), "the test never opened the gate"
        finally:
            with self.lock:
                self.active -= 1


@contextmanager
def running(worker: spitfire.Worker) -> Iterator[list[int]]:
    """Run ``worker`` in a thread until the block ends; then wait for it to stop on its own (the
    test stops it: a second `stop` here would cut the grace period short)."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    try:
        wait_until(lambda: worker.worker_id is not None, what="the worker to subscribe")
        yield result
    finally:
        if thread.is_alive() and not result:
            worker.stop()
        thread.join(WAIT + worker.grace)
        assert not thread.is_alive(), "the worker did not stop"


def counts(client: spitfire.Client, queue: str) -> dict[str, int]:
    return dict(client.stats(queue).queues[queue].counts)


def held(worker: spitfire.Worker, running: int, buffered: int) -> bool:
    return len(worker._running) == running and len(worker._buffered) == buffered


def test_prefetch_holds_at_most_concurrency_plus_prefetch(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)
    gate = Gate()
    app.job(queue=queue, name="gated")(gate.__call__)
    ids = client.enqueue_many(queue, "gated", [None] * 12)
    worker = spitfire.Worker(app, concurrency=2, prefetch=3, handle_signals=False)
    with running(worker):
        wait_until(lambda: held(worker, 2, 3), what="2 running and 3 buffered jobs")
        # Credits bound what the server delivers: with no job finished no credit went back, so
        # the worker holds exactly concurrency + prefetch; the buffered ones are still `reserved`.
        wait_until(lambda: counts(client, queue)["running"] == 2, what="START of the two running jobs")
        c = counts(client, queue)
        assert (c["running"], c["reserved"], c["enqueued"]) == (2, 3, 7)
        assert held(worker, 2, 3)
        gate.opened.set()
        wait_until(lambda: counts(client, queue)["succeeded"] == 12, what="every job to succeed")
        worker.stop()
    assert gate.peak <= 2 and sorted(gate.ran) == sorted(ids)


def test_the_default_prefetch_holds_100_jobs_and_at_least_one_per_slot(server: ServerProcess) -> None:
    app = spitfire.App(server.url)

    @app.job(queue="unused")
    def noop() -> None: ...

    assert spitfire.Worker(app).prefetch == 90  # concurrency 10: 100 jobs in hand
    assert spitfire.Worker(app, concurrency=7).prefetch == 93
    assert spitfire.Worker(app, concurrency=60).prefetch == 60  # never fewer than one per slot
    assert spitfire.Worker(app, concurrency=256).prefetch == 256
    assert spitfire.Worker(app, concurrency=7, prefetch=0).prefetch == 0
    with pytest.raises(ValueError, match="prefetch"):
        spitfire.Worker(app, prefetch=-1)


def test_graceful_stop_releases_buffered_jobs_at_once(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)
    gate = Gate()
    app.job(queue=queue, name="gated")(gate.__call__)
    client.enqueue_many(queue, "gated", [None] * 4)
    worker = spitfire.Worker(app, concurrency=1, prefetch=2, grace=WAIT, handle_signals=False)
    with running(worker) as result:
        wait_until(lambda: held(worker, 1, 2), what="1 running and 2 buffered jobs")
        buffered = list(worker._buffered)
        worker.stop()
        # Handed back during the grace period, while the running job still runs: no attempt counted.
        for job_id in buffered:
            job = wait_state(client, job_id, "enqueued")
            assert job.attempts == 0 and job.errors == ()
        assert len(gate.ran) == 1 and gate.ran[0] not in buffered
        gate.opened.set()  # the running job finishes within the grace period
        # Wait here: leaving the block while the worker is still stopping would stop it a second
        # time, which cuts the grace period short.
        wait_until(lambda: bool(result), what="the worker to stop on its own")
    assert result == [0]
    assert client.get(gate.ran[0]).state == "succeeded"

    # Another worker runs them as their first attempt.
    other = spitfire.App(server.url)
    seen: list[str] = []

    @other.job(queue=queue, name="gated")
    def record() -> None:
        seen.append(spitfire.context().id)

    run_burst(other, prefetch=0)
    for job_id in buffered:
        job = client.get(job_id)
        assert job.state == "succeeded" and job.attempts == 1 and job_id in seen
    assert not set(buffered) & set(gate.ran)


def test_a_buffered_job_cancelled_on_the_server_never_runs(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)
    gate = Gate()
    app.job(queue=queue, name="gated")(gate.__call__)
    client.enqueue_many(queue, "gated", [None] * 3)
    worker = spitfire.Worker(app, concurrency=1, prefetch=2, handle_signals=False)
    with running(worker):
        wait_until(lambda: held(worker, 1, 2), what="1 running and 2 buffered jobs")
        victim, survivor = list(worker._buffered)
        assert client.cancel(victim).state == "cancelled"
        wait_until(lambda: victim not in worker._buffered, what="CANCEL_JOBS to drop the buffered job")
        gate.opened.set()
        wait_state(client, survivor, "succeeded")
        wait_state(client, gate.ran[0], "succeeded")
        worker.stop()
    assert victim not in gate.ran and survivor in gate.ran
    job = client.get(victim)
    assert job.state == "cancelled" and job.result is None


def test_a_buffered_job_keeps_its_lease_past_its_timeout(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)
    gate = Gate()
    app.job(queue=queue, name="gated", timeout=0.6)(gate.__call__)
    first, waiting = client.enqueue_many(queue, "gated", [None] * 2)
    worker = spitfire.Worker(app, concurrency=1, prefetch=1, handle_signals=False)
    with running(worker):
        wait_until(lambda: held(worker, 1, 1), what="1 running and 1 buffered job")
        assert list(worker._buffered) == [waiting]
        job = client.get(waiting)
        assert job.state == "reserved" and job.lease_until is not None
        # Wait (on the server's clock) until the buffered job has sat for more than three of its
        # leases: heartbeats must have extended it each time, or it would be back in the queue.
        deadline = job.lease_until + 3 * 0.6

        def extended_past_deadline() -> bool:
            j = client.get(waiting)
            assert j.state == "reserved" and j.attempts == 1, f"the buffered job lost its lease: {j}"
            return j.lease_until is not None and j.lease_until > deadline

        wait_until(extended_past_deadline, what="heartbeats to extend the buffered job's lease")
        gate.opened.set()
        for job_id in (first, waiting):
            wait_state(client, job_id, "succeeded")
        worker.stop()
    job = client.get(waiting)
    assert job.attempts == 1 and job.errors == ()
    assert gate.ran == [first, waiting]


def test_the_buffer_starts_higher_priorities_first(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    """A higher-priority job delivered after lower ones goes before them in the buffer."""
    app = spitfire.App(server.url)
    gate = Gate()
    app.job(queue=queue, name="gated")(gate.__call__)
    blocker = client.enqueue(queue, "gated")
    worker = spitfire.Worker(app, concurrency=1, prefetch=3, handle_signals=False)
    with running(worker):
        wait_until(lambda: held(worker, 1, 0), what="the blocker to run")
        low = client.enqueue_many(queue, "gated", [None] * 2)
        wait_until(lambda: held(worker, 1, 2), what="2 low-priority jobs buffered")
        high = client.enqueue(queue, "gated", priority=10)
        wait_until(lambda: held(worker, 1, 3), what="the high-priority job buffered")
        gate.opened.set()
        for job_id in (*low, high):
            wait_state(client, job_id, "succeeded")
        worker.stop()
    assert gate.ran == [blocker, high, *low]


def test_a_full_buffer_lets_at_most_prefetch_lower_jobs_overtake(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    """A higher-priority job that becomes ready while the buffer is full of lower ones waits on the
    server for a credit; by the time it reaches the worker at most ``prefetch`` of them started."""
    app = spitfire.App(server.url)
    gate = Gate()
    app.job(queue=queue, name="gated")(gate.__call__)
    blocker = client.enqueue(queue, "gated")
    worker = spitfire.Worker(app, concurrency=1, prefetch=3, handle_signals=False)
    with running(worker):
        wait_until(lambda: held(worker, 1, 0), what="the blocker to run")
        low = client.enqueue_many(queue, "gated", [None] * 5)
        wait_until(lambda: held(worker, 1, 3), what="the buffer to fill with low-priority jobs")
        high = client.enqueue(queue, "gated", priority=10)
        assert client.get(high).state == "enqueued"  # no credit is free
        gate.opened.set()
        for job_id in (*low, high):
            wait_state(client, job_id, "succeeded")
        worker.stop()
    assert gate.ran[0] == blocker
    assert gate.ran.index(high) - 1 <= worker.prefetch
    assert [j for j in gate.ran if j in low] == low  # FIFO within a priority
