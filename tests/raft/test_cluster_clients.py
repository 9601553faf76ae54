"""The SDK against a real 3-member cluster: given the three addresses, a producer follows the leader
through SIGKILLs and never enqueues a job twice (request-dedupe tokens), and a worker drains the
queue through a failover (the jobs it held are delivered again, none is lost)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest
from clusterhelpers import WAIT, Cluster, Member, cluster

import spitfire

pytestmark = pytest.mark.timeout(600)

#: Jobs the producer enqueues, and how many enqueues are in flight at once.
JOBS = 5_000
PRODUCERS = 16


def _total(ran: Counter[int], lock: threading.Lock) -> int:
    with lock:
        return sum(ran.values())


def _url(c: Cluster) -> str:
    return "tcp://" + ",".join(f"127.0.0.1:{m.listen}" for m in c.members)


async def _kill_leader(c: Cluster) -> Member:
    """SIGKILL the serving leader; once another serves, start the killed one again and wait until
    it has rejoined (so that the next kill leaves a majority). Returns the killed member."""
    leader = await asyncio.to_thread(c.leader)
    leader.kill()
    await asyncio.to_thread(c.leader, WAIT, [m for m in c.members if m is not leader])
    leader.start()
    await asyncio.to_thread(c.wait, f"{leader.node_id} to rejoin", lambda: (leader.me() or {}).get("role"))
    return leader


async def _produce_through_two_kills(c: Cluster, queue: str) -> dict[int, str]:
    """Enqueue JOBS jobs (payload: their number) from PRODUCERS coroutines of one AsyncClient given
    the three addresses, killing the leader once a fifth and again once three fifths are in."""
    acknowledged: dict[int, str] = {}
    numbers = iter(range(JOBS))
    first, second = JOBS // 5, 3 * JOBS // 5
    reached = {first: asyncio.Event(), second: asyncio.Event()}
    # Producers wait at `second` until the second kill begins, so that it too hits them mid-flight
    # (the first kill and the member's restart take seconds: they could finish meanwhile).
    go_on = asyncio.Event()
    killed_at: list[int] = []
    async with spitfire.AsyncClient(_url(c), connect_timeout=WAIT) as client:

        async def produce() -> None:
            for n in numbers:
                if len(acknowledged) >= second:
                    await go_on.wait()
                acknowledged[n] = await client.enqueue(queue, "job", {"n": n})
                event = reached.get(len(acknowledged))
                if event is not None:
                    event.set()

        async def kill_twice() -> None:
            await reached[first].wait()
            killed_at.append(len(acknowledged))
            await _kill_leader(c)
            await reached[second].wait()
            go_on.set()
            killed_at.append(len(acknowledged))
            await _kill_leader(c)

        await asyncio.gather(kill_twice(), *(produce() for _ in range(PRODUCERS)))
    assert len(killed_at) == 2 and killed_at[1] < JOBS, killed_at  # both kills hit the producers
    return acknowledged


def test_a_producer_with_three_addresses_enqueues_each_job_exactly_once_through_two_leader_kills(
    tmp_path: Path,
) -> None:
    queue = "through-kills"
    with cluster(tmp_path) as c:
        c.leader()
        acknowledged = asyncio.run(_produce_through_two_kills(c, queue))
        assert sorted(acknowledged) == list(range(JOBS))
        assert len(set(acknowledged.values())) == JOBS
        view = c.leader().cluster()
        assert view is not None and view["term"] >= 3, view  # two elections after the first
        with spitfire.Client(_url(c), connect_timeout=WAIT) as client:
            # Exactly once: the queue holds no job but the acknowledged ones (a resent enqueue
            # that had committed before a kill answered its first job instead of adding one).
            assert client.stats(queue).queues[queue].total == JOBS, c.logs()
            numbers = Counter[int]()
            page = client.list_jobs(queue, limit=1000)
            while True:
                for job in page.jobs:
                    numbers[job.payload["n"]] += 1
                if page.cursor is None:
                    break
                page = client.list_jobs(queue, limit=1000, cursor=page.cursor)
            assert numbers == Counter(range(JOBS))


def test_a_worker_with_three_addresses_drains_the_queue_through_a_leader_kill(tmp_path: Path) -> None:
    queue = "drain-through-kill"
    count = 600
    ran: Counter[int] = Counter()
    lock = threading.Lock()
    with cluster(tmp_path) as c:
        c.leader()
        url = _url(c)
        app = spitfire.App(url, connect_timeout=WAIT)

        @app.job(queue=queue)
        async def job(n: int) -> None:
            await asyncio.sleep(0.002)
            with lock:
                ran[n] += 1

        with spitfire.Client(url, connect_timeout=WAIT) as client:
            client.enqueue_many(queue, "job", [{"n": n} for n in range(count)])
            worker = spitfire.Worker(app, [queue], concurrency=8, handle_signals=False)
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            try:
                c.wait("the worker to run a third", lambda: _total(ran, lock) >= count // 3)
                asyncio.run(_kill_leader(c))
                c.wait(
                    "every job to succeed",
                    lambda: client.stats(queue).queues[queue].counts["succeeded"] == count,
                    timeout=120,
                )
            finally:
                worker.stop()
                thread.join(WAIT)
            assert not thread.is_alive()
            # At least once: every job ran; those held by the killed leader's lease ran again.
            assert set(ran) == set(range(count))
            assert client.stats(queue).queues[queue].total == count
