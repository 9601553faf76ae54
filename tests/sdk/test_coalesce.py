"""AsyncClient's coalesced enqueues against a real spitfire-server: calls of one event-loop pass
travel as ENQUEUE_MANY per run of calls with the same options, in call order (FIFO delivery
equals call order), each with its own id; an error about one job fails only that call, an error
about the whole request fails every call; the limits split batches; a cancelled caller is left
out; a batch cut in flight is resent with its token; a SIGKILLed server's keyed batches are
resent after the restart and nothing is added twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import ServerProcess, free_port, run_burst

import spitfire
from spitfire._coalesce import MAX_JOBS
from spitfire.protocol.messages import JobDefinitionSpec, MessageType

ONE, MANY = MessageType.ENQUEUE, MessageType.ENQUEUE_MANY
#: (message type, jobs) of each enqueue request a client sent, in order.
Sent = list[tuple[MessageType, int]]


def spy(client: spitfire.AsyncClient) -> Sent:
    """Record every enqueue request ``client`` sends (resends inside one call are not counted)."""
    sent: Sent = []
    real = client._call

    async def call(message_type: MessageType, message: Any, **kwargs: Any) -> Any:
        if message_type is ONE:
            sent.append((ONE, 1))
        elif message_type is MANY:
            sent.append((MANY, len(message.payloads)))
        return await real(message_type, message, **kwargs)

    client._call = call  # type: ignore[method-assign]
    return sent


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))  # type: ignore[arg-type]


def test_concurrent_enqueues_are_one_batch_delivered_in_call_order(server: ServerProcess, queue: str) -> None:
    async def main() -> list[spitfire.AsyncJobId]:
        async with spitfire.AsyncClient(server.url) as client:
            await client.connect()
            sent = spy(client)
            ids = await asyncio.gather(*(client.enqueue(queue, "record", {"n": n}) for n in range(100)))
            assert sent == [(MANY, 100)]
            return ids

    ids = asyncio.run(main())
    assert len(set(ids)) == 100 and all(isinstance(i, spitfire.AsyncJobId) and i.created for i in ids)
    app = spitfire.App(server.url)
    order: list[int] = []

    @app.job(queue=queue)
    def record(n: int) -> None:
        order.append(n)

    run_burst(app, concurrency=1)
    assert order == list(range(100))


def test_a_lone_call_is_a_plain_enqueue_and_coalesce_false_is_one_request_per_call(
    server: ServerProcess, queue: str
) -> None:
    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            sent = spy(client)
            first = await client.enqueue(queue, "job", 1)
            assert sent == [(ONE, 1)] and first.created
        async with spitfire.AsyncClient(server.url, coalesce=False) as plain:
            sent = spy(plain)
            ids = await asyncio.gather(*(plain.enqueue(queue, "job", n) for n in range(10)))
            assert sent == [(ONE, 1)] * 10 and len(set(ids)) == 10
            assert (await plain.stats(queue)).queues[queue].total == 11

    run(main)


def test_runs_of_calls_with_the_same_options_are_batches_in_call_order(
    server: ServerProcess, queue: str
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("a", {}), ("a", {}), ("a", {}),
        ("a", {"priority": 5}), ("a", {"priority": 5}),
        ("a", {}), ("a", {}),
        ("b", {}),  # alone: a plain ENQUEUE
        ("a", {"idempotency_key": "k1"}), ("a", {"idempotency_key": "k2"}),  # keyed: a batch of their own
        ("a", {"delay": 60}), ("a", {"delay": 60}),
    ]  # fmt: skip

    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.connect()
            sent = spy(client)
            ids = await asyncio.gather(
                *(client.enqueue(queue, name, {"i": i}, **o) for i, (name, o) in enumerate(calls))  # type: ignore[misc]
            )
            assert sent == [(MANY, 3), (MANY, 2), (MANY, 2), (ONE, 1), (MANY, 2), (MANY, 2)]
            for i, ((name, options), job_id) in enumerate(zip(calls, ids, strict=True)):
                job = await client.get(job_id)
                assert (job.name, job.payload, job.priority) == (name, {"i": i}, options.get("priority", 0))
                assert job.idempotency_key == options.get("idempotency_key")
                assert job.state == ("scheduled" if "delay" in options else "enqueued")

    run(main)


def test_a_key_repeated_in_a_batch_gives_what_sequential_calls_give(
    server: ServerProcess, queue: str
) -> None:
    keys = ["old", "a", "a", "b", "old", "b"]

    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            sequential: list[tuple[int, bool]] = []
            coalesced: list[tuple[int, bool]] = []
            for target, out in ((f"{queue}-seq", sequential), (queue, coalesced)):
                existing = await client.enqueue(target, "job", "before", idempotency_key="old")
                sent = spy(client)
                if out is sequential:
                    ids = [
                        await client.enqueue(target, "job", n, idempotency_key=k) for n, k in enumerate(keys)
                    ]
                else:
                    ids = list(
                        await asyncio.gather(
                            *(client.enqueue(target, "job", n, idempotency_key=k) for n, k in enumerate(keys))
                        )
                    )
                    assert sent[-1] == (MANY, len(keys))
                assert ids[0] == existing
                # Each id as the index of the first call that got it, and its created flag.
                out.extend((ids.index(i), i.created) for i in ids)
                assert (await client.stats(target)).queues[target].total == 3
            assert coalesced == sequential == [
                (0, False), (1, True), (1, False), (3, True), (0, False), (3, False)
            ]  # fmt: skip

    run(main)


def test_an_error_about_one_job_fails_only_that_call(server: ServerProcess, queue: str) -> None:
    schema = {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}

    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            spec = JobDefinitionSpec(f"checked-{queue}", queue, schema=json.dumps(schema), validate=True)
            await client.register_job_definitions([spec])
            name = spec.name
            with pytest.raises(spitfire.BadRequest) as alone:
                await client.enqueue(queue, name, {"to": 5})
            with pytest.raises(spitfire.BadRequest) as alone_key:
                await client.enqueue(queue, name, {"to": "x"}, idempotency_key="")
            sent = spy(client)
            payloads: list[Any] = [{"to": f"u{n}"} for n in range(10)]
            payloads[3] = {"to": 5}
            results = await asyncio.gather(
                *(client.enqueue(queue, name, p) for p in payloads), return_exceptions=True
            )
            assert sent == [(MANY, 10)] + [(ONE, 1)] * 10  # refused whole, then each alone
            error = results[3]
            assert isinstance(error, spitfire.BadRequest)
            assert (error.field, str(error)) == (alone.value.field, str(alone.value))
            assert all(isinstance(r, spitfire.AsyncJobId) for i, r in enumerate(results) if i != 3)
            keyed = await asyncio.gather(
                *(client.enqueue(queue, name, {"to": "y"}, idempotency_key=k) for k in ("k1", "", "k3")),
                return_exceptions=True,
            )
            assert isinstance(keyed[1], spitfire.BadRequest) and keyed[1].field == alone_key.value.field
            assert all(isinstance(keyed[i], spitfire.AsyncJobId) for i in (0, 2))
            assert (await client.stats(queue)).queues[queue].total == 11

    run(main)


def test_an_error_about_the_whole_request_goes_to_every_call(tmp_path: Path) -> None:
    """BUSY (backpressure) concerns the request: every call of the batch gets it, nothing is added."""
    server = ServerProcess(tmp_path / "data", None, "--max-queue-jobs", "5").start()
    try:

        async def main() -> None:
            async with spitfire.AsyncClient(server.url) as client:
                await client.enqueue("q", "job", 0)
                sent = spy(client)
                results = await asyncio.gather(
                    *(client.enqueue("q", "job", n) for n in range(10)), return_exceptions=True
                )
                assert sent == [(MANY, 10)]
                assert all(isinstance(r, spitfire.Busy) for r in results)
                assert (await client.stats("q")).queues["q"].total == 1

        run(main)
    finally:
        server.kill()


def test_batches_split_at_a_thousand_jobs_and_half_the_servers_max_frame(
    server: ServerProcess, queue: str
) -> None:
    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.connect()
            sent = spy(client)
            ids = await asyncio.gather(*(client.enqueue(queue, "job", n) for n in range(2 * MAX_JOBS + 500)))
            assert sent == [(MANY, MAX_JOBS), (MANY, MAX_JOBS), (MANY, 500)]
            assert len(set(ids)) == 2 * MAX_JOBS + 500
            # The limit is read from the connection's WELCOME: as if this server announced 4 KiB.
            assert client._conn is not None and client._conn.session.welcome is not None
            client._conn.session.welcome.max_frame = 4096
            sent.clear()
            blobs = [bytes([n]) * 1000 for n in range(9)]
            big = await asyncio.gather(*(client.enqueue_raw(queue, "job", b) for b in blobs))
            assert sent == [(MANY, 2), (MANY, 2), (MANY, 2), (MANY, 2), (ONE, 1)]
            assert [(await client.get(i)).raw_payload for i in big] == blobs

    run(main)


def test_a_caller_cancelled_before_the_flush_is_left_out(server: ServerProcess, queue: str) -> None:
    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            await client.connect()
            sent = spy(client)
            tasks = [asyncio.create_task(client.enqueue(queue, "job", n)) for n in range(5)]
            await asyncio.sleep(0)  # each task has made its call; the flush runs after this one
            tasks[2].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(done[2], asyncio.CancelledError)
            assert sent == [(MANY, 4)]
            payloads = sorted([(await client.get(i)).payload for i in done if isinstance(i, str)])
            assert payloads == [0, 1, 3, 4]
            assert (await client.stats(queue)).queues[queue].total == 4

    run(main)


class CuttingProxy:
    """A loopback TCP proxy to the server that, on its first connection, relays the server's first
    answer (WELCOME) and then cuts the connection instead of relaying the next one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        cutting = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut_after: int | None) -> None:
            chunks = 0
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if cut_after is not None and chunks >= cut_after:
                        self.cut.set()  # the answer arrived (committed) and is dropped
                        break
                    chunks += 1
                    dst.write(data)
                    await dst.drain()
            for w in (writer, up_writer):
                w.close()

        await asyncio.gather(pump(reader, up_writer, None), pump(up_reader, writer, 1 if cutting else None))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


def test_a_batch_cut_in_flight_is_resent_with_its_token(server: ServerProcess, queue: str) -> None:
    """Several addresses: the batch carries one request token; the server committed it, the answer
    was lost, and the resend on a new connection answers the same jobs (nothing added twice)."""

    async def main() -> None:
        proxy = CuttingProxy(server.port)
        port = await proxy.start()
        url = f"tcp://127.0.0.1:{port},127.0.0.1:{free_port()}"
        try:
            async with spitfire.AsyncClient(url) as client:
                await client.connect()
                sent = spy(client)
                ids = await asyncio.gather(*(client.enqueue(queue, "job", n) for n in range(10)))
                assert proxy.cut.is_set() and proxy.connections == 2
                assert sent == [(MANY, 10)]
                assert len(set(ids)) == 10 and all(i.created for i in ids)
                assert [(await client.get(i)).payload for i in ids] == list(range(10))
                assert (await client.stats(queue)).queues[queue].total == 10
        finally:
            await proxy.close()

    run(main)


def test_keyed_batches_in_flight_when_the_server_is_killed_are_resent_after_the_restart(
    own_server: ServerProcess,
) -> None:
    producers, each = 32, 20

    async def main() -> None:
        async with spitfire.AsyncClient(own_server.url, connect_timeout=30) as client:
            await client.connect()
            sent = spy(client)
            done = 0
            half = asyncio.Event()

            async def producer(p: int) -> list[tuple[str, str]]:
                nonlocal done
                out = []
                for n in range(each):
                    key = f"p{p}-{n}"
                    out.append((key, await client.enqueue("q", "job", n, idempotency_key=key)))
                    done += 1
                    if done >= producers * each // 2:
                        half.set()
                return out

            tasks = [asyncio.create_task(producer(p)) for p in range(producers)]
            await half.wait()
            own_server.kill()  # SIGKILL with batches in flight
            own_server.start()
            results = [pair for t in await asyncio.gather(*tasks) for pair in t]
            assert any(kind is MANY and jobs > 1 for kind, jobs in sent)
            assert len(results) == producers * each
            assert len({job_id for _, job_id in results}) == producers * each
            for key, job_id in results[:: each // 2]:
                assert (await client.get(job_id)).idempotency_key == key
            assert (await client.stats("q")).queues["q"].total == producers * each

    run(main)


def test_traced_enqueues_are_not_coalesced(
    server: ServerProcess, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each traced enqueue carries its own trace context: sent alone, as before."""
    pytest.importorskip("opentelemetry")
    monkeypatch.setattr(spitfire.tracing, "configured", lambda: True)

    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            assert client.tracing
            await client.connect()
            sent = spy(client)
            ids = await asyncio.gather(*(client.enqueue(queue, "job", n) for n in range(5)))
            assert sent == [(ONE, 1)] * 5 and len(set(ids)) == 5

    run(main)


def test_a_batch_without_keys_cut_in_flight_fails_every_call_as_a_lone_call_would(
    server: ServerProcess, queue: str
) -> None:
    """One address, no keys: not safe to resend, so each call gets ConnectionLost (its outcome is
    unknown), as a lone ENQUEUE would; the next calls go on a new connection."""

    async def main() -> None:
        proxy = CuttingProxy(server.port)
        port = await proxy.start()
        try:
            async with spitfire.AsyncClient(f"tcp://127.0.0.1:{port}") as client:
                await client.connect()
                results = await asyncio.gather(
                    *(client.enqueue(queue, "job", n) for n in range(10)), return_exceptions=True
                )
                assert proxy.cut.is_set()
                assert all(isinstance(r, spitfire.ConnectionLost) for r in results)
                keyed = await asyncio.gather(
                    *(client.enqueue(queue, "job", n, idempotency_key=f"k{n}") for n in range(10))
                )
                assert len(set(keyed)) == 10 and proxy.connections == 2
                assert (await client.stats(queue)).queues[queue].total == 20  # the cut batch committed
        finally:
            await proxy.close()

    run(main)
