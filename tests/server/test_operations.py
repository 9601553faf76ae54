"""Every request of the binary protocol against a real server: answers and error codes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run, server_process

from spitfire.protocol import messages as m
from spitfire.protocol.messages import ErrorCode, MessageType
from spitfire.protocol.session import ProtocolViolation

# -- handshake ----------------------------------------------------------------------------------------------


def test_handshake_welcomes_a_supported_client(server: ServerProcess) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        welcome = c.welcome.result()
        assert welcome.version == m.PROTOCOL_VERSION
        assert welcome.server.startswith("spitfire-server/")
        assert welcome.max_payload == 2**20 and welcome.max_frame >= welcome.max_payload
        assert await c.call(MessageType.PING, m.Ping()) == m.Pong()
        c.close()

    run(body())


def test_an_unsupported_version_is_refused(server: ServerProcess) -> None:
    async def body() -> None:
        with pytest.raises(ProtocolViolation) as info:
            await ProtoClient.connect(server.port, version=99)
        assert info.value.code is ErrorCode.UNSUPPORTED_VERSION

    run(body())


def test_the_token_is_required_when_the_server_has_one(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        for token in (None, "wrong"):
            with pytest.raises(ProtocolViolation) as info:
                await ProtoClient.connect(port, token=token)
            assert info.value.code is ErrorCode.UNAUTHORIZED
        c = await ProtoClient.connect(port, token="s3cret")
        assert (await c.enqueue("auth")).created
        c.close()

    with server_process(tmp_path / "data", "--auth-token", "s3cret") as srv:
        run(body(srv.port))


def test_a_request_before_hello_closes_the_connection(server: ServerProcess) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        c.write_raw(b"\x00\x00\x00\x06\x01\x00\x00\x00\x07\x90")  # a second HELLO with a bad body
        r = await c.push()
        assert r.type is MessageType.ERROR and r.message.code == "BAD_REQUEST"
        await c.closed.wait()

    run(body())


# -- enqueue --------------------------------------------------------------------------------------------


def test_enqueue_then_get(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        e = await c.enqueue(queue, "send", b"\x81\xa1a\x01", priority=3, headers={"trace": "x"})
        assert e.created and e.state == "enqueued"
        job = await c.get(e.job_id)
        assert (job.queue, job.name, job.payload, job.priority) == (queue, "send", b"\x81\xa1a\x01", 3)
        assert job.state == "enqueued" and job.headers == {"trace": "x"} and job.attempts == 0
        delayed = await c.enqueue(queue, delay=30.0, backoff=m.Backoff("fixed", 2.0))
        assert delayed.state == "scheduled"
        info = await c.get(delayed.job_id)
        assert info.run_at is not None and info.run_at > time.time() + 20
        assert info.backoff == m.Backoff("fixed", 2.0)
        c.close()

    run(body())


def test_an_idempotency_key_returns_the_same_job(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        first = await c.enqueue(queue, idempotency_key="k1")
        again = await c.enqueue(queue, idempotency_key="k1")
        assert first.created and not again.created and again.job_id == first.job_id
        c.close()

    run(body())


def test_enqueue_many(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        r = await c.call(
            MessageType.ENQUEUE_MANY,
            m.EnqueueMany(queue, "bulk", [b"\x01", b"\x02", b"\x03"], idempotency_keys=["a", None, "a"]),
        )
        assert r.created == [True, True, False] and r.job_ids[0] == r.job_ids[2]
        assert [(await c.get(i)).payload for i in r.job_ids[:2]] == [b"\x01", b"\x02"]
        with pytest.raises(ServerError) as info:
            await c.call(MessageType.ENQUEUE_MANY, m.EnqueueMany(queue, "bulk", []))
        assert info.value.code == "BAD_REQUEST" and info.value.field == "payloads"
        c.close()

    run(body())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"priority": 11}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1.0}, "timeout"),
        ({"delay": 1.0, "run_at": 5.0}, None),
        ({"backoff": m.Backoff("sideways")}, "backoff.kind"),
        ({"name": ""}, "name"),
        ({"queue": "a\nb"}, "queue"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_bad_enqueues_name_the_field(
    server: ServerProcess, kwargs: dict[str, object], field: str | None
) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        args: dict[str, object] = {"queue": "bad-enqueue", "name": "job", "payload": b"\x80", **kwargs}
        with pytest.raises(ServerError) as info:
            await c.call(MessageType.ENQUEUE, m.Enqueue(**args))  # type: ignore[arg-type]
        assert info.value.code == "BAD_REQUEST"
        if field is not None:
            assert info.value.field == field
        assert await c.call(MessageType.PING, m.Ping()) == m.Pong()  # the connection is still fine
        c.close()

    run(body())


def test_a_payload_over_the_limit_is_too_large(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        with pytest.raises(ServerError) as info:
            await c.enqueue(queue, payload=b"x" * (2**20 + 1))
        assert info.value.code == "TOO_LARGE" and info.value.field == "payload"
        c.close()

    run(body())


# -- jobs and queues ------------------------------------------------------------------------------------


def test_unknown_jobs_and_queues_are_not_found(server: ServerProcess) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        for mtype in (MessageType.GET, MessageType.CANCEL, MessageType.RETRY, MessageType.DELETE):
            with pytest.raises(ServerError) as info:
                await c.call(mtype, m.JobRef("nope"))
            assert info.value.code == "NOT_FOUND"
        for mtype in (MessageType.PAUSE, MessageType.RESUME, MessageType.STATS):
            with pytest.raises(ServerError) as info:
                await c.call(mtype, m.QueueRef("no-such-queue"))
            assert info.value.code == "NOT_FOUND"
        c.close()

    run(body())


def test_cancel_retry_delete_and_conflicts(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        job_id = (await c.enqueue(queue)).job_id
        with pytest.raises(ServerError) as info:
            await c.call(MessageType.RETRY, m.JobRef(job_id))
        assert info.value.code == "CONFLICT"  # an enqueued job cannot be retried
        cancelled = (await c.call(MessageType.CANCEL, m.JobRef(job_id))).job
        assert cancelled.state == "cancelled"
        with pytest.raises(ServerError) as info:
            await c.call(MessageType.CANCEL, m.JobRef(job_id))
        assert info.value.code == "CONFLICT"
        retried = (await c.call(MessageType.RETRY, m.JobRef(job_id))).job
        assert retried.state == "enqueued"
        deleted = (await c.call(MessageType.DELETE, m.JobRef(job_id))).job
        assert deleted.id == job_id
        with pytest.raises(ServerError) as info:
            await c.get(job_id)
        assert info.value.code == "NOT_FOUND"
        c.close()

    run(body())


def test_stats_pause_and_resume(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        await c.enqueue(queue)
        await c.enqueue(queue, delay=60.0)
        assert await c.call(MessageType.PAUSE, m.QueueRef(queue)) == m.Ok()
        stats = await c.stats(queue)
        (info,) = stats.queues
        assert info.name == queue and info.paused and info.durability == "group"
        assert info.counts["enqueued"] == 1 and info.counts["scheduled"] == 1 and info.total == 2
        assert await c.call(MessageType.RESUME, m.QueueRef(queue)) == m.Ok()
        everything = await c.stats()
        assert queue in [q.name for q in everything.queues] and everything.connections >= 1
        with pytest.raises(ServerError) as err:
            await c.call(MessageType.PAUSE, m.QueueRef(None))
        assert err.value.code == "BAD_REQUEST" and err.value.field == "queue"
        c.close()

    run(body())


def test_worker_requests_without_a_subscription(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        job_id = (await c.enqueue(queue)).job_id
        done = await c.ack(job_id)
        assert [e.code for e in done.errors] == ["CONFLICT"]
        assert (await c.call(MessageType.HEARTBEAT, m.Heartbeat())).extended == 0
        assert await c.call(MessageType.UNSUBSCRIBE, m.Unsubscribe()) == m.Ok()
        with pytest.raises(ServerError) as info:
            await c.call(MessageType.SUBSCRIBE, m.Subscribe([], 1))
        assert info.value.code == "BAD_REQUEST" and info.value.field == "queues"
        with pytest.raises(ServerError) as info:
            await c.call(MessageType.SUBSCRIBE, m.Subscribe([queue], -1))
        assert info.value.field == "credits"
        await c.subscribe([queue], 0)
        with pytest.raises(ServerError) as info:
            await c.subscribe([queue], 0)
        assert info.value.code == "BAD_REQUEST"
        c.close()

    run(body())


def test_pipelined_enqueues_all_answered(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        futures = [c.start(MessageType.ENQUEUE, m.Enqueue(queue, "p", bytes([i % 256]))) for i in range(2000)]
        answers = [await f for f in futures]
        assert all(a.type is MessageType.ENQUEUED for a in answers)
        assert len({a.message.job_id for a in answers}) == 2000
        assert (await c.stats(queue)).queues[0].counts["enqueued"] == 2000
        c.close()

    run(body())
