"""A Python worker resumes its worker id on a cluster's new leader (SUBSCRIBE ``resume``): the jobs it
was running when the leader was SIGKILLed stay its own there, finish and are acknowledged once (each
``succeeded`` after one attempt, run once), an ACK the kill cut is sent again and lands, and buffered
jobs are handed back and run once. When another live connection holds the id the resume is refused,
and the worker still loses nothing.

Every handler waits on an event the test sets; every wait polls a condition, bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from clusterhelpers import WAIT, Cluster, Member, ProtoClient, cluster

import spitfire
from spitfire.protocol.messages import MessageType, Subscribe

pytestmark = pytest.mark.timeout(300)
T = TypeVar("T")


def _url(c: Cluster) -> str:
    return "tcp://" + ",".join(f"127.0.0.1:{m.listen}" for m in c.members)


class Gates:
    """What the handlers saw, and the events that let each job finish (set from the test)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: Counter[str] = Counter()
        self.order: list[str] = []
        self.finished: set[str] = set()
        self.gates: dict[str, threading.Event] = {}
        self.all = threading.Event()

    def gate(self, job_id: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(job_id, threading.Event())

    def open(self, job_id: str) -> None:
        self.gate(job_id).set()

    def running(self) -> list[str]:
        with self.lock:
            return [j for j in self.order if j not in self.finished]


def _app(url: str, queue: str, gates: Gates) -> spitfire.App:
    app = spitfire.App(url, connect_timeout=WAIT)

    @app.job(queue=queue, timeout=30)
    def slow(ctx: spitfire.JobContext, n: int) -> int:
        with gates.lock:
            gates.started[ctx.id] += 1
            gates.order.append(ctx.id)
        gate = gates.gate(ctx.id)
        deadline = time.monotonic() + 4 * WAIT  # bounded: a test that fails does not hang a thread
        while not (gate.is_set() or gates.all.is_set()) and time.monotonic() < deadline:
            gate.wait(0.02)
        with gates.lock:
            gates.finished.add(ctx.id)
        return n

    return app


@pytest.fixture
def run_worker() -> Iterator[Callable[..., spitfire.Worker]]:
    """Starts workers on threads; stops and joins each one at the end of the test."""
    started: list[tuple[spitfire.Worker, threading.Thread, Gates]] = []

    def start(app: spitfire.App, queue: str, gates: Gates, **kw: Any) -> spitfire.Worker:
        worker = spitfire.Worker(app, [queue], handle_signals=False, grace=1.0, **kw)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread, gates))
        return worker

    yield start
    for worker, thread, gates in started:
        gates.all.set()
        worker.stop()
        thread.join(WAIT)
        assert not thread.is_alive()


def _until(what: str, check: Callable[[], Any], c: Cluster, timeout: float = WAIT) -> Any:
    return c.wait(what, check, timeout)


def _worker_row(member: Member, worker_id: str) -> dict[str, Any] | None:
    status, body = member.http_get("/api/workers")
    if status != 200:
        return None
    return next((w for w in body["workers"] if w["id"] == worker_id), None)


def _jobs(client: spitfire.Client, ids: list[str]) -> dict[str, Any]:
    return {i: client.get(i) for i in ids}


def _stop_leader(c: Cluster) -> tuple[Member, Member]:
    """SIGSTOP the serving leader (its connections stay open, it answers nothing) and wait until
    another member leads; returns (stopped, new leader). The caller SIGKILLs the stopped one."""
    old = c.leader()
    assert old.proc is not None
    os.kill(old.proc.pid, signal.SIGSTOP)
    try:
        new = c.leader(WAIT, [m for m in c.members if m is not old])
    except BaseException:
        old.kill()
        raise
    return old, new


def test_a_worker_resumes_on_the_new_leader_its_running_jobs_ack_once_and_a_cut_ack_is_resent(
    tmp_path: Path, run_worker: Callable[..., spitfire.Worker]
) -> None:
    queue = "resume"
    gates = Gates()
    with cluster(tmp_path) as c:
        c.leader()
        url = _url(c)
        with spitfire.Client(url, connect_timeout=WAIT) as client:
            ids = [client.enqueue(queue, "slow", {"n": n}) for n in range(5)]
            # 3 run, 2 wait in the buffer.
            worker = run_worker(_app(url, queue, gates), queue, gates, concurrency=3, prefetch=2)
            _until("three jobs to run", lambda: len(gates.running()) == 3, c)
            leader = c.leader()
            wid = worker.worker_id
            assert wid is not None
            _until(
                "the worker to hold all five",
                lambda: (_worker_row(leader, wid) or {}).get("in_flight") == 5,
                c,
            )
            # An enqueue acknowledged now is committed after the deliveries' lease records (one log,
            # committed in order): the next leader has those leases.
            client.enqueue("marker", "job", None)

            old, new = _stop_leader(c)
            try:
                # A job finishes while the leader answers nothing: its ACK is sent and never answered.
                cut = gates.running()[0]
                gates.open(cut)
                _until("the cut job's ACK to be in flight", lambda: worker._outstanding >= 1, c)
                # Its slot runs the first buffered job (START to the stopped leader); one stays buffered.
                _until("a buffered job to start", lambda: len(gates.running()) == 3, c)
            finally:
                old.kill()

            # The worker resumes its id on the new leader, which holds its leases: the three running
            # jobs are its own (shown running), the cut ACK lands, the buffered job is handed back.
            _until(
                "the worker to resume its id",
                lambda: (_worker_row(new, wid) or {}).get("in_flight", 0) >= 3,
                c,
            )
            assert worker.worker_id == wid
            _until("the cut ACK to land", lambda: client.get(cut).state == "succeeded", c)
            running = gates.running()
            _until(
                "the kept jobs to show running",
                lambda: all(client.get(j).state == "running" for j in running),
                c,
            )
            gates.all.set()
            _until(
                "every job to succeed",
                lambda: all(j.state == "succeeded" for j in _jobs(client, ids).values()),
                c,
            )
            jobs = _jobs(client, ids)
            assert {j: jobs[j].attempts for j in ids} == {j: 1 for j in ids}
            assert [jobs[j].result for j in ids] == list(range(5))
            # Each job ran once here (none was delivered twice to a handler).
            assert gates.started == Counter({j: 1 for j in ids}), gates.started
            assert len(gates.order) == 5


class _Loop:
    """An event loop on a thread of its own, for a protocol connection that outlives one call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


async def _close(client: ProtoClient) -> None:
    client.close()
    await asyncio.sleep(0)  # let the transport close


@pytest.fixture
def loop() -> Iterator[_Loop]:
    lp = _Loop()
    yield lp
    lp.close()


def test_a_refused_resume_loses_nothing_the_jobs_come_back_and_succeed(
    tmp_path: Path, run_worker: Callable[..., spitfire.Worker], loop: _Loop
) -> None:
    queue = "refused"
    gates = Gates()
    with cluster(tmp_path) as c:
        c.leader()
        url = _url(c)
        with spitfire.Client(url, connect_timeout=WAIT) as client:
            ids = [client.enqueue(queue, "slow", {"n": n}, max_attempts=5) for n in range(3)]
            worker = run_worker(_app(url, queue, gates), queue, gates, concurrency=3, prefetch=0)
            _until("three jobs to run", lambda: len(gates.running()) == 3, c)
            wid = worker.worker_id
            assert wid is not None
            client.enqueue("marker", "job", None)  # the leases are committed (see above)

            old, new = _stop_leader(c)
            try:
                # A live connection takes the worker's id (and its leases) on the new leader first.
                rival = loop.call(ProtoClient.connect(new.listen))
                reply = loop.call(
                    rival.call(MessageType.SUBSCRIBE, Subscribe([queue], 0, "rival", resume=wid))
                )
                assert reply.worker_id == wid
            finally:
                old.kill()
            _until(
                "the worker to subscribe under another id",
                lambda: worker.worker_id not in (None, wid) and _worker_row(new, worker.worker_id or ""),
                c,
            )
            # The rival goes: the jobs it held go back and are delivered to the worker, whose runs,
            # still going, answer those deliveries (no second run here).
            loop.call(_close(rival))
            gates.all.set()
            _until(
                "every job to succeed",
                lambda: all(j.state == "succeeded" for j in _jobs(client, ids).values()),
                c,
            )
            assert gates.started == Counter({j: 1 for j in ids}), gates.started
            assert [client.get(j).result for j in ids] == list(range(3))


#: Leader kills of the slow loop.
KILLS = 5


@pytest.mark.slow
def test_a_worker_resumes_through_repeated_leader_kills_and_every_job_runs_once(
    tmp_path: Path, run_worker: Callable[..., spitfire.Worker]
) -> None:
    queue = "resume-loop"
    gates = Gates()
    with cluster(tmp_path) as c:
        c.leader()
        url = _url(c)
        with spitfire.Client(url, connect_timeout=WAIT) as client:
            worker = run_worker(_app(url, queue, gates), queue, gates, concurrency=3, prefetch=1)
            ids: list[str] = []
            for round_ in range(KILLS):
                batch = [client.enqueue(queue, "slow", {"n": round_ * 10 + n}) for n in range(3)]
                ids += batch
                _until("the round's jobs to run", lambda b=batch: set(b) <= set(gates.running()), c)
                wid = worker.worker_id
                assert wid is not None
                client.enqueue("marker", "job", None)  # the leases are committed (see above)
                old = c.leader()
                old.kill()
                new = c.leader(WAIT, [m for m in c.members if m is not old])
                _until(
                    "the worker to resume its id",
                    lambda n=new, w=wid: (_worker_row(n, w) or {}).get("in_flight", 0) >= 3,
                    c,
                )
                for job_id in batch:
                    gates.open(job_id)
                _until(
                    "the round's jobs to succeed",
                    lambda b=batch: all(j.state == "succeeded" for j in _jobs(client, b).values()),
                    c,
                )
                old.start()  # rejoins, so that the next kill leaves a majority
                _until(f"{old.node_id} to rejoin", lambda o=old: (o.me() or {}).get("role"), c)
            jobs = _jobs(client, ids)
            assert {j: jobs[j].attempts for j in ids} == {j: 1 for j in ids}
            assert gates.started == Counter({j: 1 for j in ids}), gates.started
