"""AsyncClient and Client against the in-memory fake server (sdk_fakeserver): pipelining, answers
out of order, resending after a dropped connection, auth, sizes and thread safety."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from sdk_fakeserver import FakeServer

import spitfire
from spitfire.protocol.messages import GoAway, MessageType


def run(test: Callable[[FakeServer], Awaitable[None]], **server_args: Any) -> None:
    async def main() -> None:
        server = FakeServer(**server_args)
        await server.start()
        try:
            await asyncio.wait_for(test(server), 30)
        finally:
            await server.stop()

    asyncio.run(main())


def payload_id(value: Any) -> str:
    return "job-" + msgspec.msgpack.encode(value).hex()


def test_requests_are_pipelined_and_answers_may_come_in_any_order() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url, coalesce=False) as client:
            await client.ping()
            server.hold = True
            calls = [asyncio.create_task(client.enqueue("q", "n", {"i": i})) for i in range(200)]
            while len(server.requests) < 201:
                await asyncio.sleep(0.01)
            assert not any(c.done() for c in calls)  # all 200 in flight at once
            server.connections[0].release_held()  # answered newest first
            ids = await asyncio.gather(*calls)
        assert ids == [payload_id({"i": i}) for i in range(200)]
        assert server.reads < 20  # the 200 requests left in a few writes, not 200

    run(test)


def test_get_stats_and_management_calls_decode_answers() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as client:
            job = await client.get("j1")
            assert isinstance(job, spitfire.Job) and job.id == "j1" and job.payload is None
            assert job.max_attempts == 3 and job.errors == () and not job.finished
            with pytest.raises(spitfire.JobNotFound) as info:
                await client.get("missing-1")
            assert info.value.job_id == "missing-1"
            with pytest.raises(spitfire.JobNotFound):
                await client.cancel("missing-2")
            stats = await client.stats()
            assert stats.queues["q"].counts["enqueued"] == 2 and stats.total_jobs == 2
            await client.pause("q")
            await client.resume("q")
            assert await client.enqueue_many("q", "n", [1, 2]) == [payload_id(1), payload_id(2)]
            assert await client.enqueue_many("q", "n", []) == []
            assert (await client.retry("j2")).id == "j2"
            assert (await client.delete("j3")).id == "j3"

    run(test)


def test_enqueue_sends_options_as_given() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.enqueue(
                "emails", "send", {"to": "a"}, priority=5, delay=10, max_attempts=3, timeout=30,
                idempotency_key="k", headers={"trace": "t"}, backoff=spitfire.Backoff("fixed", 2.0),
            )  # fmt: skip
        m = server.requests[-1].message
        assert (m.queue, m.name, msgspec.msgpack.decode(m.payload)) == ("emails", "send", {"to": "a"})
        assert (m.priority, m.delay, m.run_at, m.max_attempts, m.timeout) == (5, 10.0, None, 3, 30.0)
        assert (m.idempotency_key, m.headers, m.backoff.kind) == ("k", {"trace": "t"}, "fixed")

    run(test)


def test_a_dropped_connection_resends_only_what_is_safe() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as client:
            server.drop_on = {MessageType.GET}
            assert (await client.get("j1")).id == "j1"  # resent on a new connection
            server.drop_on = {MessageType.ENQUEUE}
            key = await client.enqueue("q", "n", 1, idempotency_key="k")  # has a key: resent
            assert key == payload_id(1)
            server.drop_on = {MessageType.ENQUEUE}
            with pytest.raises(spitfire.ConnectionLost, match="may or may not have taken effect"):
                await client.enqueue("q", "n", 2)  # no key: it may have been added, so not resent
            server.drop_on = {MessageType.CANCEL}
            with pytest.raises(spitfire.ConnectionLost):
                await client.cancel("j1")
            assert await client.ping() >= 0  # and the client reconnects for the next request
        assert len(server.connections) == 5

    run(test)


def test_goaway_moves_new_requests_to_a_new_connection() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.ping()
            first = server.connections[0]
            first.session.push(MessageType.GOAWAY, GoAway("restarting"))
            first.flush()
            await asyncio.sleep(0.1)
            await client.ping()
            assert len(server.connections) == 2

    run(test)


def test_wrong_token_is_unauthorized_and_not_retried() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url, auth_token="wrong") as client:
            with pytest.raises(spitfire.Unauthorized, match="SPITFIRE_AUTH_TOKEN"):
                await client.ping()
        async with spitfire.AsyncClient(server.url, auth_token="secret") as client:
            await client.ping()

    run(test, token="secret")


def test_token_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPITFIRE_AUTH_TOKEN", "secret")

    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.ping()

    run(test, token="secret")


def test_oversized_payloads_fail_before_sending() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.ping()
            with pytest.raises(spitfire.TooLarge, match="over the server's limit of 100 bytes"):
                await client.enqueue("q", "n", "x" * 200)
            with pytest.raises(TypeError, match="cannot be encoded as msgpack"):
                await client.enqueue("q", "n", object())

    run(test, max_payload=100)


def test_a_batch_names_its_bad_payload_and_sends_nothing() -> None:
    """`enqueue_many` encodes and size-checks a batch in one pass; a bad payload is still named."""

    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.ping()
            seen = len(server.requests)
            with pytest.raises(spitfire.TooLarge, match=r"payloads\[2\] is \d+ bytes, over"):
                await client.enqueue_many("q", "n", ["a", "b", "x" * 200, "c"])
            with pytest.raises(TypeError, match="cannot be encoded as msgpack"):
                await client.enqueue_many("q", "n", ["a", object()])
            with pytest.raises(TypeError, match="cannot be encoded as msgpack"):
                await client.enqueue_many("q", "n", (p for p in ["a", object()]))
            assert len(server.requests) == seen  # nothing was sent
            assert len(await client.enqueue_many("q", "n", (p for p in ["a", "b"]))) == 2

    run(test, max_payload=100)


def test_no_server_is_not_connected_with_a_hint() -> None:
    async def test() -> None:
        client = spitfire.AsyncClient("tcp://127.0.0.1:1", connect_timeout=0.3)
        with pytest.raises(spitfire.NotConnected, match="is spitfire-server running"):
            await client.ping()

    asyncio.run(test())


def test_an_unanswered_request_times_out() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url, timeout=0.3) as client:
            await client.ping()
            server.hold = True
            with pytest.raises(spitfire.RequestTimeout, match="no answer"):
                await client.ping()
            assert client._conn is not None and not client._conn.pending

    run(test)


def test_request_timeouts_fire_on_time_and_answered_requests_are_forgotten() -> None:
    async def test(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url, timeout=0.5) as client:
            for _ in range(50):
                await client.ping()
            server.hold = True
            started = time.monotonic()
            results = await asyncio.gather(*(client.ping() for _ in range(3)), return_exceptions=True)
            waited = time.monotonic() - started
            assert all(isinstance(r, spitfire.RequestTimeout) for r in results)
            # The per-connection sweep may fail a request up to 10% of the timeout late.
            assert 0.5 <= waited < 0.5 * 1.1 + 0.2
            conn = client._conn
            assert conn is not None and not conn.pending and not conn._deadlines
            server.hold = False
            assert await client.ping() < 0.5  # the connection still serves after timeouts

    run(test)


def test_sync_client_is_thread_safe() -> None:
    async def test(server: FakeServer) -> None:
        results: dict[int, list[str]] = {}

        def produce(client: spitfire.Client, t: int) -> None:
            results[t] = [client.enqueue("q", "n", [t, i]) for i in range(25)]

        def threads() -> None:
            with spitfire.Client(server.url) as client:
                ts = [threading.Thread(target=produce, args=(client, t)) for t in range(8)]
                for th in ts:
                    th.start()
                for th in ts:
                    th.join()

        await asyncio.to_thread(threads)
        for t in range(8):
            assert results[t] == [payload_id([t, i]) for i in range(25)]
        assert len(server.connections) == 1

    run(test)


def test_sync_client_works_while_an_event_loop_runs_in_this_thread() -> None:
    # As in Jupyter: a loop is running in the calling thread; Client uses its own loop thread.
    loop = asyncio.new_event_loop()
    server = FakeServer()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)

        async def notebook_cell() -> str:
            with spitfire.Client(server.url) as client:
                return client.get("j1").id

        assert asyncio.run(notebook_cell()) == "j1"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
