"""A worker that lost its connection to a single node subscribes again with ``resume``: one node took
its jobs back when the connection dropped (or the restart forgot the leases), so nothing is left to
resume and nothing is lost. A job running across a server SIGKILL and restart is delivered to the
worker again, and the run still going answers that delivery: it runs once and succeeds. A real
spitfire-server process; the handler waits on an event the test sets."""

from __future__ import annotations

import threading
import time
from collections import Counter

from sdk_helpers import WAIT, ServerProcess, wait_state, wait_until, worker_thread

import spitfire


def test_a_job_running_across_a_single_node_sigkill_runs_once_and_succeeds(own_server: ServerProcess) -> None:
    queue = "resume-single"
    app = spitfire.App(own_server.url)
    started: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    go = threading.Event()

    @app.job(queue=queue)
    def slow(n: int) -> int:
        ctx = spitfire.context()
        with lock:
            started[ctx.id, ctx.attempt] += 1
        deadline = time.monotonic() + 4 * WAIT  # bounded, should the test fail first
        while not go.is_set() and time.monotonic() < deadline:
            go.wait(0.02)
        return n

    with spitfire.Client(own_server.url) as client:
        job_id = client.enqueue(queue, "slow", {"n": 7}, max_attempts=5)
        with worker_thread(app, queues=[queue], concurrency=2, prefetch=0) as worker:
            wait_until(lambda: started, what="the job to start")
            first_id = worker.worker_id
            own_server.kill()  # no GOAWAY: the connection just drops, the leases are forgotten
            own_server.start()  # same port, same data dir
            # The job is ready again after the restart and delivered to the worker, which resumes.
            wait_until(lambda: client.get(job_id).worker is not None, what="the job to be delivered again")
            assert worker.worker_id == first_id  # a single node gives the id back: no one holds it
            go.set()
            job = wait_state(client, job_id, "succeeded", "dead")
        assert job.state == "succeeded" and job.result == 7
        assert sum(started.values()) == 1, started  # the run going on answered the new delivery
