"""The administration methods against a real server: list_jobs (filters, paging), purge (states,
workers told to stop, bad input refused before anything changes), set_durability (survives a
restart), workers; sync and async clients send the same requests."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sdk_helpers import ServerProcess, wait_until, worker_thread

import spitfire


def test_list_jobs_filters_and_pages(client: spitfire.Client, queue: str) -> None:
    ids = [client.enqueue(queue, "n", i) for i in range(5)]
    dead = client.enqueue(queue, "n", "x", delay=3600)
    client.cancel(dead)
    page = client.list_jobs(queue, limit=2)
    assert [j.id for j in page.jobs] == [dead, ids[4]]  # newest first
    assert page.cursor is not None
    rest = client.list_jobs(queue, limit=10, cursor=page.cursor)
    assert [j.id for j in rest.jobs] == ids[3::-1]
    assert rest.cursor is None
    assert [j.id for j in client.list_jobs(queue, states="cancelled").jobs] == [dead]
    oldest = client.list_jobs(queue, states=["enqueued"], newest_first=False, limit=1)
    assert [j.id for j in oldest.jobs] == [ids[0]]
    assert client.list_jobs("no-such-queue-here").jobs == []
    with pytest.raises(ValueError, match="states: unknown state 'finished'"):
        client.list_jobs(queue, states="finished")
    with pytest.raises(ValueError, match="limit: must be 1 to 1000"):
        client.list_jobs(queue, limit=0)


def test_purge_deletes_the_asked_states_only(client: spitfire.Client, queue: str) -> None:
    keep = [client.enqueue(queue, "n", i) for i in range(3)]
    gone = [client.enqueue(queue, "n", i, delay=3600) for i in range(4)]
    for job_id in gone[:2]:
        client.cancel(job_id)
    result = client.purge(queue, states=["cancelled", "scheduled"])
    assert result == spitfire.PurgeResult(matched=4, deleted=4, failed=0)
    for job_id in gone:
        with pytest.raises(spitfire.JobNotFound):
            client.get(job_id)
    assert {j.id for j in client.list_jobs(queue).jobs} == set(keep)
    assert client.purge(queue, states="dead") == spitfire.PurgeResult(0, 0, 0)


def test_purge_refuses_bad_input_and_changes_nothing(client: spitfire.Client, queue: str) -> None:
    job_id = client.enqueue(queue, "n")
    with pytest.raises(ValueError, match="states: give at least one"):
        client.purge(queue, states=[])
    with pytest.raises(ValueError, match="unknown state 'all'"):
        client.purge(queue, states="all")
    with pytest.raises(spitfire.QueueNotFound):
        client.purge("no-such-queue-here", states="enqueued")
    assert client.get(job_id).state == "enqueued"


def test_purge_tells_the_worker_running_a_job_to_stop(client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(client.url)
    started, cancelled = threading.Event(), threading.Event()

    @app.job(queue=queue)
    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with worker_thread(app, queues=[queue]):
        job_id = slow.enqueue()
        assert started.wait(30)
        workers = wait_until(lambda: [w for w in client.workers() if queue in w.queues], what="worker")
        assert workers[0].held == 1 and workers[0].active
        assert client.purge(queue, states="running").deleted == 1
        assert cancelled.wait(30)
    with pytest.raises(spitfire.JobNotFound):
        client.get(job_id)


def test_set_durability_is_kept_across_a_restart(own_server: ServerProcess, queue: str) -> None:
    with spitfire.Client(own_server.url) as c:
        c.set_durability(queue, "sync")  # creates the queue
        assert c.stats(queue).queues[queue].durability == "sync"
        with pytest.raises(ValueError, match="mode: must be one of sync, group, async"):
            c.set_durability(queue, "fast")
    own_server.terminate()
    own_server.start()
    with spitfire.Client(own_server.url) as c:
        assert c.stats(queue).queues[queue].durability == "sync"
        c.set_durability(queue, "async")
        assert c.stats(queue).queues[queue].durability == "async"


def test_the_async_client_has_the_same_methods(server: ServerProcess, queue: str) -> None:
    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as c:
            job_id = await c.enqueue(queue, "n", delay=60)
            assert [j.id for j in (await c.list_jobs(queue)).jobs] == [job_id]
            await c.set_durability(queue, "group")
            assert (await c.purge(queue, states=["scheduled"])).deleted == 1
            assert isinstance(await c.workers(), list)

    asyncio.run(main())
