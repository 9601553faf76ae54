"""The sync `Client`'s blocking connection against a real spitfire-server: many threads on one
connection, request timeouts (the server stopped with SIGSTOP), reconnecting after a restart,
resending idempotent enqueues across one, closing under waiting threads, fork, and no warnings
for a client nobody closed."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sdk_helpers import WAIT, ServerProcess, wait_until

import spitfire
from spitfire._blocking import recv_slice


def run_threads(count: int, target: Callable[[int], Any]) -> dict[int, Any]:
    """Run ``target(i)`` in ``count`` threads at once; their results (or exceptions) by index."""
    results: dict[int, Any] = {}
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
        assert not t.is_alive(), "a client thread hung"
    return results


@contextmanager
def stopped(server: ServerProcess) -> Iterator[None]:
    """The server process frozen (SIGSTOP): it accepts nothing and answers nothing until resumed."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def test_many_threads_share_one_client(server: ServerProcess, queue: str) -> None:
    threads, calls = 32, 20
    with spitfire.Client(server.url) as client:

        def produce(t: int) -> list[str]:
            ids = []
            for i in range(calls):
                ids.append(client.enqueue(queue, "n", {"t": t, "i": i}))
                if i % 5 == 0:  # other request types interleaved with the enqueues
                    assert client.get(ids[-1]).queue == queue
                    client.ping()
            return ids

        results = run_threads(threads, produce)
        ids = [job_id for t in range(threads) for job_id in results[t]]
        assert len(set(ids)) == threads * calls
        assert client.stats(queue).queues[queue].counts["enqueued"] == threads * calls
        for t in (0, threads - 1):  # each thread got the answers to its own requests
            assert [client.get(job_id).payload for job_id in results[t]] == [
                {"t": t, "i": i} for i in range(calls)
            ]


def test_app_jobs_enqueue_from_threads(server: ServerProcess, queue: str) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def add(a: int, b: int) -> int:
        return a + b

    results = run_threads(8, lambda t: [add.enqueue(t, i) for i in range(10)])
    assert all(isinstance(r, list) and len(r) == 10 for r in results.values())
    assert app.client.stats(queue).queues[queue].counts["enqueued"] == 80
    app.close()


def test_request_timeout_then_the_connection_serves_again(own_server: ServerProcess, queue: str) -> None:
    timeout = 0.5
    with spitfire.Client(own_server.url, timeout=timeout) as client:
        client.enqueue(queue, "n")
        with stopped(own_server):
            started = time.monotonic()
            with pytest.raises(spitfire.RequestTimeout, match="ENQUEUE got no answer"):
                client.enqueue(queue, "n")
            waited = time.monotonic() - started
        # At most one receive slice late (the async client's sweep allows as much).
        assert timeout <= waited < timeout + recv_slice(timeout) + 0.3
        assert client.ping() < timeout  # the same connection; the late answer was dropped
        # The timed-out enqueue did reach the server: it commits once the server runs again.
        wait_until(lambda: client.stats(queue).queues[queue].counts["enqueued"] == 2, what="2 jobs")


def test_many_threads_time_out_together_and_recover(own_server: ServerProcess, queue: str) -> None:
    """The thread reading and the threads waiting for it time out alike; then the connection
    serves every thread again (nobody is left holding the reader role)."""
    with spitfire.Client(own_server.url, timeout=0.5) as client:
        client.ping()
        with stopped(own_server):
            results = run_threads(8, lambda t: client.enqueue(queue, "n", t))
        assert all(isinstance(r, spitfire.RequestTimeout) for r in results.values()), results
        again = run_threads(8, lambda t: client.enqueue(queue, "n", t))
        assert all(isinstance(r, str) for r in again.values()), again


def test_a_client_reconnects_after_the_server_restarts(own_server: ServerProcess, queue: str) -> None:
    with spitfire.Client(own_server.url) as client:
        first = client.enqueue(queue, "n")
        assert own_server.terminate() == 0  # GOAWAY and a closed connection, unread by the idle client
        own_server.start()  # same port, same data dir
        # Not ConnectionLost: the idle connection is found gone before the enqueue is sent on it.
        second = client.enqueue(queue, "n")
        assert {client.get(first).state, client.get(second).state} == {"enqueued"}


def test_idempotent_enqueues_in_flight_are_resent_after_a_crash(
    own_server: ServerProcess, queue: str
) -> None:
    with spitfire.Client(own_server.url, connect_timeout=WAIT) as client:
        client.ping()
        assert own_server.proc is not None
        os.kill(own_server.proc.pid, signal.SIGSTOP)
        restarted = threading.Event()

        def enqueue(t: int) -> str:
            key = f"k{t}" if t % 2 == 0 else None
            return client.enqueue(queue, "n", t, idempotency_key=key)

        def crash_and_restart() -> None:
            # Once the enqueues are in flight (written, unanswered), kill the server and restart it.
            time.sleep(0.3)
            own_server.kill()
            own_server.start()
            restarted.set()

        restarter = threading.Thread(target=crash_and_restart, daemon=True)
        restarter.start()
        results = run_threads(6, enqueue)
        restarter.join(WAIT)
        assert restarted.is_set()
    for t, result in results.items():
        if t % 2 == 0:  # an idempotency key: resent on the new connection
            assert isinstance(result, str), result
        else:  # may or may not have taken effect: not resent
            assert isinstance(result, spitfire.ConnectionLost), result
            assert "may or may not have taken effect" in str(result)


def test_close_fails_the_calls_waiting_on_other_threads(own_server: ServerProcess, queue: str) -> None:
    client = spitfire.Client(own_server.url)
    client.ping()
    outcome: list[BaseException | str] = []

    def waiting() -> None:
        try:
            outcome.append(client.enqueue(queue, "n"))
        except BaseException as exc:
            outcome.append(exc)

    with stopped(own_server):
        thread = threading.Thread(target=waiting, daemon=True)
        thread.start()
        time.sleep(0.2)  # the enqueue is written and unanswered
        client.close()
        thread.join(WAIT)
    assert len(outcome) == 1 and isinstance(outcome[0], spitfire.ConnectionLost), outcome
    with pytest.raises(spitfire.NotConnected, match="closed"):
        client.ping()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_opens_its_own_connection(server: ServerProcess, queue: str) -> None:
    with spitfire.Client(server.url) as client:
        client.enqueue(queue, "n", "parent")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's socket must be left alone
            code = 1
            try:
                os.close(read)
                job_id = client.enqueue(queue, "n", "child")
                os.write(write, job_id.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        child_id = os.read(read, 200).decode()
        os.close(read)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connection survived the child's exit and the child's job is there.
        assert client.get(child_id).state == "enqueued"
        client.enqueue(queue, "n", "parent again")
        assert client.stats(queue).queues[queue].counts["enqueued"] == 3


def test_a_client_nobody_closed_leaves_no_warning(server: ServerProcess, queue: str) -> None:
    # filterwarnings=error: an unclosed socket's ResourceWarning would fail this test.
    client = spitfire.Client(server.url)
    client.enqueue(queue, "n")
    cycle: dict[str, Any] = {"client": client}
    cycle["self"] = cycle  # dropped with a garbage cycle, as an App's client is
    del client, cycle
    gc.collect()
