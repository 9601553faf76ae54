"""WAIT and PROGRESS against a real server: a wait is answered by push when its job is final (success,
failure, cancel) or at its timeout; waiters go with their connection; past the per-connection cap a
WAIT is BUSY and the server's memory does not grow; progress is shown on the job until it is final."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType
from spitfire.server.waiting import MAX_WAITERS_PER_OWNER


async def _reserved(server: ServerProcess, queue: str) -> tuple[ProtoClient, ProtoClient, str]:
    """A producer, and a worker holding one job of ``queue``."""
    producer = await ProtoClient.connect(server.port)
    worker = await ProtoClient.connect(server.port)
    job_id = (await producer.enqueue(queue, "job")).job_id
    await worker.subscribe([queue], 1)
    (delivery,) = await worker.deliveries(1)
    assert delivery.job_id == job_id
    return producer, worker, job_id


def test_wait_is_answered_when_the_job_succeeds(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        producer, worker, job_id = await _reserved(server, queue)
        waiting = producer.start(MessageType.WAIT, m.Wait(job_id, 30.0))
        await producer.call(MessageType.PING, m.Ping())  # the WAIT was read before the PING's answer
        assert not waiting.done()  # nothing final yet: the server holds the answer
        await worker.ack(job_id, result=b"\x2a")
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.type is MessageType.JOB
        assert answer.message.job.state == "succeeded" and answer.message.job.result == b"\x2a"
        # Final already: answered at once.
        again = await producer.call(MessageType.WAIT, m.Wait(job_id, 30.0))
        assert again.job.state == "succeeded"
        producer.close()
        worker.close()

    run(body())


def test_wait_is_answered_when_the_job_dies_or_is_cancelled(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        producer, worker, job_id = await _reserved(server, queue)
        waiting = producer.start(MessageType.WAIT, m.Wait(job_id, 30.0))
        await producer.call(MessageType.PING, m.Ping())
        await worker.fail(job_id, "ValueError: bad", retryable=False)
        job = (await asyncio.wait_for(waiting, 10)).message.job
        assert job.state == "dead" and job.errors[-1].error == "ValueError: bad"

        other = (await producer.enqueue(queue + "-c", "job", delay=3600.0)).job_id
        waiting = producer.start(MessageType.WAIT, m.Wait(other, 30.0))
        await producer.call(MessageType.PING, m.Ping())
        await producer.call(MessageType.CANCEL, m.JobRef(other))
        assert (await asyncio.wait_for(waiting, 10)).message.job.state == "cancelled"
        producer.close()
        worker.close()

    run(body())


def test_wait_times_out_with_the_job_as_it_is_and_deletion_is_not_found(
    server: ServerProcess, queue: str
) -> None:
    async def body() -> None:
        client = await ProtoClient.connect(server.port)
        job_id = (await client.enqueue(queue, "job", delay=3600.0)).job_id
        loop = asyncio.get_running_loop()
        started = loop.time()
        job = (await client.call(MessageType.WAIT, m.Wait(job_id, 0.3))).job
        assert job.state == "scheduled" and loop.time() - started >= 0.25
        assert (await client.call(MessageType.WAIT, m.Wait(job_id, 0.0))).job.state == "scheduled"
        waiting = client.start(MessageType.WAIT, m.Wait(job_id, 30.0))
        await client.call(MessageType.PING, m.Ping())
        await client.call(MessageType.DELETE, m.JobRef(job_id))
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.type is MessageType.ERROR and answer.message.code == "NOT_FOUND"
        with pytest.raises(ServerError) as err:
            await client.call(MessageType.WAIT, m.Wait("019b76daa800000000964b48", 1.0))
        assert err.value.code == "NOT_FOUND"
        for bad in (-1.0, 3601.0, float("nan")):
            with pytest.raises(ServerError) as err:
                await client.call(MessageType.WAIT, m.Wait(job_id, bad))
            assert err.value.code == "BAD_REQUEST" and err.value.error.field == "timeout"
        client.close()

    run(body())


def test_waiters_are_capped_per_connection_and_dropped_with_it(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        client = await ProtoClient.connect(server.port)
        job_id = (await client.enqueue(queue, "job", delay=3600.0)).job_id
        waits = [client.start(MessageType.WAIT, m.Wait(job_id, 600.0)) for _ in range(MAX_WAITERS_PER_OWNER)]
        with pytest.raises(ServerError) as err:
            await client.call(MessageType.WAIT, m.Wait(job_id, 600.0))
        assert err.value.code == "BUSY" and err.value.error.retry_after == 1.0
        assert not any(w.done() for w in waits)
        # Another connection still may wait: the cap is per connection.
        other = await ProtoClient.connect(server.port)
        one = other.start(MessageType.WAIT, m.Wait(job_id, 600.0))
        client.close()
        await asyncio.wait_for(client.closed.wait(), 10)
        lost = await asyncio.gather(*waits, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in lost)
        # The closed connection's 1000 waiters are gone: a new connection may hold 1000 again.
        third = await ProtoClient.connect(server.port)
        more = [third.start(MessageType.WAIT, m.Wait(job_id, 600.0)) for _ in range(MAX_WAITERS_PER_OWNER)]
        await third.call(MessageType.PING, m.Ping())
        assert not any(w.done() for w in more)
        stats = _http_json(server, "/metrics", text=True)
        assert "spitfire_waiters 1001" in stats  # this one's 1000 and the other's 1: none leaked
        await other.call(MessageType.CANCEL, m.JobRef(job_id))
        assert (await asyncio.wait_for(one, 10)).message.job.state == "cancelled"
        done = await asyncio.wait_for(asyncio.gather(*more), 20)
        assert {r.message.job.state for r in done} == {"cancelled"}
        assert "spitfire_waiters 0" in _http_json(server, "/metrics", text=True)
        other.close()
        third.close()

    run(body())


def test_progress_is_kept_while_running_and_dropped_when_final(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        producer, worker, job_id = await _reserved(server, queue)
        assert (await producer.get(job_id)).progress is None
        worker.send(MessageType.PROGRESS, m.Progress(job_id, 0.4, "resized 4 of 10"))
        # Bad or foreign reports change nothing (there is no answer to carry an error).
        worker.send(MessageType.PROGRESS, m.Progress(job_id, 1.5, "too far"))
        worker.send(MessageType.PROGRESS, m.Progress(job_id, float("nan"), None))
        worker.send(MessageType.PROGRESS, m.Progress(job_id, 0.5, "x" * 1001))
        worker.send(MessageType.PROGRESS, m.Progress("019b76daa800000000964b48", 0.5, "no such job"))
        producer.send(MessageType.PROGRESS, m.Progress(job_id, 0.9, "not the holder"))
        await worker.call(MessageType.PING, m.Ping())
        await producer.call(MessageType.PING, m.Ping())
        info = await producer.get(job_id)
        assert info.progress is not None
        assert (info.progress.value, info.progress.message) == (0.4, "resized 4 of 10")
        http = _http_json(server, f"/api/jobs/{job_id}")
        assert http["progress"]["value"] == 0.4 and http["progress"]["message"] == "resized 4 of 10"
        await worker.ack(job_id)
        assert (await producer.get(job_id)).progress is None
        producer.close()
        worker.close()

    run(body())


def _http_json(server: ServerProcess, path: str, *, text: bool = False) -> object:
    with urllib.request.urlopen(f"{server.http_url}{path}", timeout=10) as resp:
        data = resp.read().decode()
    return data if text else json.loads(data)
