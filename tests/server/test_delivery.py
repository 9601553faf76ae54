"""Push delivery with credits, leases, outcomes and cancellation against a real server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run, server_process

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType

#: Short leases keep lease tests quick; the machine is shared, so never rely on tighter timing.
LEASE = 0.5


async def no_push(client: ProtoClient, within: float = 0.3) -> None:
    """Assert nothing is pushed for a while (used only to prove an absence)."""
    with pytest.raises(TimeoutError):
        r = await client.push(within)
        raise AssertionError(f"unexpected push {r}")


def test_never_more_than_the_credits_granted(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        for i in range(10):
            await p.enqueue(queue, payload=bytes([i]))
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 3)
        jobs = await w.deliveries(3)
        assert len(jobs) == 3 and all(j.attempt == 1 and j.queue == queue for j in jobs)
        await no_push(w)
        w.send(MessageType.CREDIT, m.Credit(2))
        more = await w.deliveries(2)
        assert len(more) == 2
        await no_push(w)
        assert (await w.ack(*[j.job_id for j in jobs + more])).errors == []
        assert (await p.stats(queue)).queues[0].counts["succeeded"] == 5
        p.close()
        w.close()

    run(body())


def test_priority_first_then_fifo(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        ids = {}
        for name, prio in (("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5)):
            ids[(await p.enqueue(queue, name, priority=prio)).job_id] = name
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 5)
        jobs = await w.deliveries(5)
        assert [j.name for j in jobs] == ["d", "b", "e", "a", "c"]
        p.close()
        w.close()

    run(body())


def test_two_workers_are_served_fairly(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        w1 = await ProtoClient.connect(server.port)
        w2 = await ProtoClient.connect(server.port)
        await w1.subscribe([queue], 10)
        await w2.subscribe([queue], 10)
        p = await ProtoClient.connect(server.port)
        await p.call(MessageType.ENQUEUE_MANY, m.EnqueueMany(queue, "j", [bytes([i]) for i in range(10)]))
        a = await w1.deliveries(5)
        b = await w2.deliveries(5)
        assert len(a) == 5 and len(b) == 5
        assert {j.job_id for j in a}.isdisjoint(j.job_id for j in b)
        for c in (p, w1, w2):
            c.close()

    run(body())


def test_jobs_enqueued_later_are_pushed_without_polling(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue, queue + "-other"], 2)
        p = await ProtoClient.connect(server.port)
        e = await p.enqueue(queue + "-other", "later")
        (job,) = await w.deliveries(1)
        assert job.job_id == e.job_id and job.name == "later"
        w.send(MessageType.START, m.JobIds([job.job_id]))
        await w.call(MessageType.PING, m.Ping())  # START has no answer: a ping orders after it
        assert (await p.get(job.job_id)).state == "running"
        p.close()
        w.close()

    run(body())


def test_delayed_jobs_are_delivered_when_due(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 1)
        p = await ProtoClient.connect(server.port)
        started = time.time()
        await p.enqueue(queue, delay=0.3)
        (job,) = await w.deliveries(1, timeout=5)
        # Promoted on time: not at the next 1 s maintenance tick.
        assert 0.25 <= time.time() - started < 0.95
        assert (await w.ack(job.job_id)).errors == []
        p.close()
        w.close()

    run(body())


def test_an_expired_lease_redelivers_then_goes_dead(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        e = await p.enqueue(queue, timeout=LEASE, max_attempts=2)
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 5)
        (first,) = await w.deliveries(1)
        assert first.attempt == 1 and first.timeout == LEASE
        (second,) = await w.deliveries(1, timeout=10)  # lease expired, redelivered
        assert second.job_id == e.job_id and second.attempt == 2
        done = await w.ack(first.job_id)  # the stale lease is gone... but attempt 2 holds it now
        assert done.errors == []
        info = await p.get(e.job_id)
        assert info.state == "succeeded" and info.attempts == 2
        assert [x.error for x in info.errors] == ["lease expired"]

        dead = await p.enqueue(queue, timeout=LEASE, max_attempts=1)
        (job,) = await w.deliveries(1)
        assert job.job_id == dead.job_id
        for _ in range(100):
            if (await p.get(dead.job_id)).state == "dead":
                break
            await asyncio.sleep(0.05)
        info = await p.get(dead.job_id)
        assert info.state == "dead" and info.errors[-1].error == "lease expired"
        assert [e.code for e in (await w.ack(job.job_id)).errors] == ["CONFLICT"]
        p.close()
        w.close()

    run(body())


def test_heartbeats_keep_leases(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        e = await p.enqueue(queue, timeout=1.5)
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 1)
        (job,) = await w.deliveries(1)
        # 8 x 0.25 s outlives the 1.5 s lease, kept alive by worker-level heartbeats (with 1.25 s
        # of slack per beat for a busy machine).
        for _ in range(8):
            assert (await w.call(MessageType.HEARTBEAT, m.Heartbeat())).extended == 1
            await asyncio.sleep(0.25)
        ok = await w.call(MessageType.HEARTBEAT, m.Heartbeat([job.job_id, "unknown"], 5.0))
        assert ok.extended == 1
        info = await p.get(e.job_id)
        assert info.state == "reserved" and info.attempts == 1 and info.lease_until > time.time() + 3
        assert (await w.ack(job.job_id, result=b"\x01")).errors == []
        assert (await p.get(e.job_id)).result == b"\x01"
        p.close()
        w.close()

    run(body())


def test_a_dropped_worker_returns_its_jobs(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        e = await p.enqueue(queue)
        w1 = await ProtoClient.connect(server.port)
        await w1.subscribe([queue], 1)
        await w1.deliveries(1)
        w2 = await ProtoClient.connect(server.port)
        await w2.subscribe([queue], 1)
        w1.close()
        (again,) = await w2.deliveries(1)
        assert again.job_id == e.job_id and again.attempt == 2
        info = await p.get(e.job_id)
        assert [x.error for x in info.errors] == ["worker disconnected"]
        p.close()
        w2.close()

    run(body())


def test_cancel_is_pushed_to_the_holding_worker(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        a = await p.enqueue(queue, "a")
        b = await p.enqueue(queue, "b")
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 2)
        await w.deliveries(2)
        assert (await p.call(MessageType.CANCEL, m.JobRef(a.job_id))).job.state == "cancelled"
        push = await w.push()
        assert push.type is MessageType.CANCEL_JOBS and push.message.job_ids == [a.job_id]
        await p.call(MessageType.DELETE, m.JobRef(b.job_id))
        push = await w.push()
        assert push.type is MessageType.CANCEL_JOBS and push.message.job_ids == [b.job_id]
        done = await w.ack(a.job_id)
        assert [e.code for e in done.errors] == ["CONFLICT"]  # harmless, as the semantics say
        assert (await p.get(a.job_id)).state == "cancelled"
        p.close()
        w.close()

    run(body())


def test_fail_retry_after_and_permanent(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 10)
        retry = await p.enqueue(queue, "retry", backoff=m.Backoff("fixed", 0.2))
        (job,) = await w.deliveries(1)
        assert (await w.fail(job.job_id, "ValueError: x", traceback="tb")).errors == []
        info = await p.get(retry.job_id)
        assert info.state == "retrying" and info.errors[0].error == "ValueError: x"
        (again,) = await w.deliveries(1, timeout=5)  # after the 0.2 s backoff, on time
        assert again.job_id == retry.job_id and again.attempt == 2

        assert (await w.fail(again.job_id, "later", retry_at=time.time() + 0.2)).errors == []
        info = await p.get(retry.job_id)
        assert info.state == "scheduled" and info.attempts == 1 and len(info.errors) == 1
        (third,) = await w.deliveries(1, timeout=5)
        assert third.attempt == 2  # the RetryAfter did not count

        assert (await w.fail(third.job_id, "nope", retryable=False)).errors == []
        info = await p.get(retry.job_id)
        assert info.state == "dead" and info.errors[-1].error == "nope"
        p.close()
        w.close()

    run(body())


def test_release_hands_jobs_back_without_counting(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        e = await p.enqueue(queue)
        w = await ProtoClient.connect(server.port)
        await w.subscribe([queue], 1)
        (job,) = await w.deliveries(1)
        assert await w.call(MessageType.UNSUBSCRIBE, m.Unsubscribe()) == m.Ok()
        done = await w.call(MessageType.RELEASE, m.JobIds([job.job_id, "unknown"]))
        assert [x.index for x in done.errors] == [1]
        info = await p.get(e.job_id)
        assert info.state == "enqueued" and info.attempts == 0 and info.errors == []
        await no_push(w)  # unsubscribed: nothing more is pushed
        w2 = await ProtoClient.connect(server.port)
        await w2.subscribe([queue], 1)
        (again,) = await w2.deliveries(1)
        assert again.attempt == 1
        for c in (p, w, w2):
            c.close()

    run(body())


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_every_durability_mode_serves_the_whole_cycle(tmp_path: Path, durability: str) -> None:
    async def body(port: int) -> None:
        p = await ProtoClient.connect(port)
        futures = [p.start(MessageType.ENQUEUE, m.Enqueue("modes", "j", bytes([i]))) for i in range(50)]
        ids = [(await f).message.job_id for f in futures]
        w = await ProtoClient.connect(port)
        await w.subscribe(["modes"], 50)
        jobs = await w.deliveries(50)
        assert [j.job_id for j in jobs] == ids  # FIFO
        assert (await w.ack(*ids)).errors == []
        assert (await p.stats("modes")).queues[0].counts["succeeded"] == 50
        p.close()
        w.close()

    with server_process(tmp_path / "data", "--durability", durability) as srv:
        run(body(srv.port))
        assert srv.terminate() == 0


def test_bad_outcome_items_fail_alone(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        w = await ProtoClient.connect(server.port)
        for _ in range(3):
            await p.enqueue(queue)
        await w.subscribe([queue], 3)
        a, b, c = await w.deliveries(3)
        done = await w.call(
            MessageType.ACK, m.Ack([m.AckItem(a.job_id, b"x" * (2**20 + 1)), m.AckItem(b.job_id, b"\x01")])
        )
        assert [(e.index, e.code) for e in done.errors] == [(0, "TOO_LARGE")]
        done = await w.fail(c.job_id, "e", retry_at=float("nan"))
        assert [(e.index, e.code) for e in done.errors] == [(0, "BAD_REQUEST")]
        assert [(await p.get(j.job_id)).state for j in (a, b, c)] == ["reserved", "succeeded", "reserved"]
        p.close()
        w.close()

    run(body())


def test_released_jobs_are_ready_after_a_restart_and_history_starts_at_creation(tmp_path: Path) -> None:
    async def produce_and_release(port: int) -> tuple[str, str]:
        p = await ProtoClient.connect(port)
        fresh = await p.enqueue("rel", "j")
        info = await p.get(fresh.job_id)
        assert [(t.state, t.at) for t in info.history] == [("enqueued", info.created_at)]
        held = await p.enqueue("rel", "j")
        w = await ProtoClient.connect(port)
        await w.subscribe(["rel"], 2)
        jobs = await w.deliveries(2)
        assert (await w.ack(jobs[0].job_id)).errors == []
        done = await w.call(MessageType.RELEASE, m.JobIds([jobs[1].job_id, jobs[0].job_id]))
        assert [(x.index, x.code) for x in done.errors] == [(1, "CONFLICT")]
        info = await p.get(held.job_id)
        assert info.state == "enqueued" and info.attempts == 0 and info.errors == []
        assert [t.state for t in info.history] == ["enqueued", "reserved", "enqueued"]
        info = await p.get(fresh.job_id)
        assert [t.state for t in info.history] == ["enqueued", "reserved", "succeeded"]
        assert info.history[0].at == info.created_at
        p.close()
        w.close()
        return fresh.job_id, held.job_id

    async def check(port: int, fresh: str, held: str) -> None:
        p = await ProtoClient.connect(port)
        info = await p.get(held)
        assert info.state == "enqueued" and info.attempts == 0 and info.run_at is None
        assert [t.state for t in info.history] == ["enqueued", "enqueued"]  # deliveries are not logged
        assert [t.state for t in (await p.get(fresh)).history] == ["enqueued", "succeeded"]
        w = await ProtoClient.connect(port)
        await w.subscribe(["rel"], 1)
        (again,) = await w.deliveries(1)
        assert again.job_id == held and again.attempt == 1
        p.close()
        w.close()

    with server_process(tmp_path / "data") as srv:
        fresh, held = run(produce_and_release(srv.port))
        srv.kill()  # a crash: only what was logged survives
    with server_process(tmp_path / "data") as srv:
        run(check(srv.port, fresh, held))
        assert srv.terminate() == 0


def test_a_worker_resumes_its_id_once_no_live_connection_holds_it(server: ServerProcess, queue: str) -> None:
    """SUBSCRIBE's ``resume``: the earlier id is taken when free; a live holder keeps it; a single
    node took the lost connection's jobs back, so they are delivered again (attempt 2)."""

    async def body() -> None:
        p = await ProtoClient.connect(server.port)
        e = await p.enqueue(queue)
        first = await ProtoClient.connect(server.port)
        wid = await first.subscribe([queue], 1)
        (job,) = await first.deliveries(1)
        rival = await ProtoClient.connect(server.port)
        reply = await rival.call(MessageType.SUBSCRIBE, m.Subscribe([queue], 0, "rival", resume=wid))
        assert reply.worker_id != wid  # a live connection holds it
        first.close()
        again = await ProtoClient.connect(server.port)
        deadline = time.monotonic() + 10
        while True:  # the server notices the closed connection on its own time
            reply = await again.call(MessageType.SUBSCRIBE, m.Subscribe([queue], 1, "again", resume=wid))
            if reply.worker_id == wid or time.monotonic() > deadline:
                break
            again.close()
            again = await ProtoClient.connect(server.port)
        assert reply.worker_id == wid
        (redelivered,) = await again.deliveries(1)
        assert (redelivered.job_id, redelivered.attempt) == (e.job_id, 2) and job.attempt == 1
        assert (await again.ack(e.job_id)).errors == []
        with pytest.raises(ServerError) as info:
            await p.call(MessageType.SUBSCRIBE, m.Subscribe([queue], 1, "bad", resume="x" * 65))
        assert (info.value.code, info.value.field) == ("BAD_REQUEST", "resume")
        for c in (p, rival, again):
            c.close()

    run(body())
