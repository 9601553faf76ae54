"""Closed connections are freed by reference counting alone (the server raises the garbage
collector's thresholds, so a cycle would hold a half-received frame for a long time), and QUIC
stops reading while writing is paused.

In-process: a `ConnectionHub` over a stub service, served on real loopback TCP and QUIC sockets,
with the collector disabled so only reference counting can free anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import struct
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spitfire.protocol import messages as m
from spitfire.protocol.quic import connect_quic, serve_quic
from spitfire.protocol.session import ClientSession
from spitfire.protocol.tcp import connect_tcp, serve_tcp
from spitfire.protocol.transport import ByteStream
from spitfire.server.listener import Connection, ConnectionHub
from spitfire.server.tls import ensure_certificate

WAIT = 20.0
WELCOME = m.Welcome(1, "spitfire-server/test", 64 << 20, 1 << 20, 10.0)


class StubService:
    """What a `Connection` needs of the service: answer PING, count connections."""

    connections = 0

    class dispatcher:
        @staticmethod
        def remove(worker: Any, release: bool = True) -> None:
            pass

    def handle(self, conn: Any, request: Any) -> None:
        conn.session.reply(request, m.Pong(), m.MessageType.PONG)

    def connection_closed(self, conn: Any) -> None:
        pass


class HalfFrameClient:
    """Says HELLO, then sends the start of a large frame and closes."""

    def __init__(self) -> None:
        self.session = ClientSession("refs-test")
        self.stream: ByteStream | None = None
        self.welcomed = asyncio.get_running_loop().create_future()

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        stream.write(self.session.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.session.receive_data(data)
        if self.session.welcome is not None and not self.welcomed.done():
            self.welcomed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` (transport internals signal no event) for at most `WAIT` seconds."""
    for _ in range(int(WAIT * 100)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    cert, key = ensure_certificate(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


@pytest.mark.parametrize("kind", ["tcp", "quic"])
def test_a_closed_connection_with_a_half_frame_is_freed_without_the_collector(
    kind: str, cert_pair: tuple[str, str]
) -> None:
    async def scenario() -> None:
        hub = ConnectionHub(StubService(), WELCOME, None)  # type: ignore[arg-type]
        refs: list[weakref.ref[Connection]] = []

        def factory() -> Connection:
            conn = hub.factory()
            refs.append(weakref.ref(conn))
            return conn

        if kind == "tcp":
            server: Any = await serve_tcp("127.0.0.1", 0, factory)
            port = server.sockets[0].getsockname()[1]
        else:
            server = await serve_quic("127.0.0.1", 0, factory, certfile=cert_pair[0], keyfile=cert_pair[1])
            port = server.address[1]
        for _ in range(5):
            client = HalfFrameClient()
            quic = None
            if kind == "tcp":
                await connect_tcp("127.0.0.1", port, client)
            else:
                quic = await connect_quic("127.0.0.1", port, client, verify=False)
            await asyncio.wait_for(client.welcomed, WAIT)
            assert client.stream is not None
            client.stream.write(struct.pack(">IBI", 8 << 20, m.MessageType.PING, 2) + b"x" * (2 << 20))
            for _ in range(int(WAIT * 100)):  # until the server has buffered some of it
                conn = next(iter(hub.connections.values()), None)
                if conn is not None and conn.session._reader.buffered > 1 << 20:
                    break
                await asyncio.sleep(0.01)
            del conn
            if quic is not None:
                quic.close()
                await asyncio.wait_for(quic.wait_closed(), WAIT)
            else:
                client.stream.close()
        for _ in range(int(WAIT * 100)):
            if not hub.connections and all(ref() is None for ref in refs):
                break
            await asyncio.sleep(0.01)
        assert len(refs) == 5
        alive = [ref() for ref in refs if ref() is not None]
        assert not alive, gc.get_referrers(*alive) if alive else None
        server.close()
        await server.wait_closed()

    with collector_off():
        asyncio.run(asyncio.wait_for(scenario(), WAIT * 3))


def test_quic_stops_reading_and_granting_credit_while_writing_is_paused(cert_pair: tuple[str, str]) -> None:
    from spitfire.protocol.quic import RECEIVE_WINDOW, WRITE_HIGH_WATER

    total = RECEIVE_WINDOW + 4 * 2**20

    class Sink:
        def __init__(self) -> None:
            self.received = 0
            self.made = asyncio.get_running_loop().create_future()

        def connection_made(self, stream: ByteStream) -> None:
            self.made.set_result(stream)

        def data_received(self, data: bytes) -> None:
            self.received += len(data)

        def connection_lost(self, exc: Exception | None) -> None:
            pass

    async def scenario() -> None:
        sinks: list[Sink] = []

        def factory() -> Sink:
            sinks.append(Sink())
            return sinks[-1]

        server = await serve_quic("127.0.0.1", 0, factory, certfile=cert_pair[0], keyfile=cert_pair[1])
        client = Sink()
        quic = await connect_quic("127.0.0.1", server.address[1], client, verify=False)
        stream = await client.made
        stream.write(b"h")
        await until(lambda: bool(sinks and sinks[0].received), "the first byte never arrived")
        [conn] = server.connections
        # As when the client does not acknowledge what the server writes: its answers stay unacked.
        conn._unacked = lambda: WRITE_HIGH_WATER + 1  # type: ignore[method-assign]
        conn._pause_writing()
        before = sinks[0].received
        stream.write(b"x" * total)
        sender = quic._conn._quic._streams[0].sender
        await until(  # the client used up its credit ...
            lambda: sender.highest_offset >= RECEIVE_WINDOW and not quic._conn._pending, "no credit used"
        )
        await asyncio.sleep(0.2)  # ... and a few more round trips bring none: nothing to await
        assert sinks[0].received == before  # nothing reached the handler
        assert sender.highest_offset <= before + RECEIVE_WINDOW  # the peer could send no more
        assert sum(map(len, conn._inbound)) <= RECEIVE_WINDOW
        del conn._unacked  # the client caught up
        conn._check_resume()  # resume writing, and reading
        await until(lambda: sinks[0].received == 1 + total, "the data that waited never arrived")
        quic.close()
        await asyncio.wait_for(quic.wait_closed(), WAIT)
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(scenario(), WAIT * 3))
