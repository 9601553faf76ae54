"""LIST_JOBS, PURGE, SET_DURABILITY and LIST_WORKERS over the binary protocol against a real server:
answers, CANCEL_JOBS to the worker holding a purged job, and hostile bodies (BAD_REQUEST naming the
field, nothing changed; NOT_FOUND)."""

from __future__ import annotations

import msgspec
import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType

T = MessageType


def test_list_jobs_purge_and_workers(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        w = await ProtoClient.connect(server.port)
        try:
            ids = [(await c.enqueue(queue, payload=msgspec.msgpack.encode(i))).job_id for i in range(4)]
            page = await c.call(T.LIST_JOBS, m.ListJobs(queue, None, 3))
            assert isinstance(page, m.JobList) and [j.id for j in page.jobs] == ids[:0:-1]
            rest = await c.call(T.LIST_JOBS, m.ListJobs(queue, ["enqueued"], 3, page.cursor))
            assert [j.id for j in rest.jobs] == [ids[0]] and rest.cursor is None
            oldest = await c.call(T.LIST_JOBS, m.ListJobs(queue, None, 1, None, newest_first=False))
            assert [j.id for j in oldest.jobs] == [ids[0]]

            worker_id = await w.subscribe([queue], 1)
            (delivered,) = await w.deliveries(1)
            listed = await c.call(T.LIST_WORKERS, m.ListWorkers())
            mine = [x for x in listed.workers if x.id == worker_id]
            assert len(mine) == 1 and mine[0].queues == [queue] and mine[0].held == 1 and mine[0].active

            purged = await c.call(T.PURGE, m.Purge(queue, ["reserved", "running"]))
            assert isinstance(purged, m.Purged) and (purged.matched, purged.deleted, purged.failed) == (
                1,
                1,
                0,
            )
            push = await w.push()
            assert push.type is T.CANCEL_JOBS and push.message.job_ids == [delivered.job_id]
            await c.call(T.SET_DURABILITY, m.SetDurability(queue, "async"))
            assert (await c.stats(queue)).queues[0].durability == "async"
        finally:
            c.close()
            w.close()

    run(body())


@pytest.mark.parametrize(
    ("mtype", "message", "field"),
    [
        (T.LIST_JOBS, m.ListJobs(None, ["finished"]), "states"),
        (T.LIST_JOBS, m.ListJobs(None, None, 0), "limit"),
        (T.LIST_JOBS, m.ListJobs(None, None, 1001), "limit"),
        (T.LIST_JOBS, m.ListJobs(None, None, 10, "not-a-cursor"), "cursor"),
        (T.PURGE, m.Purge("Q", []), "states"),
        (T.PURGE, m.Purge("Q", ["enqueued", "bogus"]), "states"),
        (T.SET_DURABILITY, m.SetDurability("Q", "fast"), "durability"),
        (T.SET_DURABILITY, m.SetDurability("", "sync"), "queue"),
    ],
)
def test_bad_requests_name_the_field_and_change_nothing(
    server: ServerProcess, queue: str, mtype: T, message: msgspec.Struct, field: str
) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            job = await c.enqueue(queue)
            if hasattr(message, "queue") and message.queue == "Q":
                message.queue = queue
            with pytest.raises(ServerError) as err:
                await c.call(mtype, message)
            assert (err.value.code, err.value.field) == ("BAD_REQUEST", field), err.value
            info = await c.stats(queue)
            assert info.queues[0].durability == "group" and info.queues[0].total == 1
            assert (await c.get(job.job_id)).state == "enqueued"
        finally:
            c.close()

    run(body())


def test_purge_of_an_unknown_queue_is_not_found(server: ServerProcess) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            with pytest.raises(ServerError) as err:
                await c.call(T.PURGE, m.Purge("no-such-queue-here", ["dead"]))
            assert err.value.code == "NOT_FOUND"
        finally:
            c.close()

    run(body())
