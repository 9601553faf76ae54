"""TCP and QUIC transports over real loopback sockets, through the StreamHandler seam.

Each test runs its own event loop (the default asyncio loop, and uvloop where the transport
supports it) with an overall timeout; nothing sleeps to wait for an outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from spitfire.protocol.frames import Frame, FrameReader, encode_frame
from spitfire.protocol.quic import QuicConnectionClosed, connect_quic, serve_quic
from spitfire.protocol.tcp import connect_tcp, serve_tcp
from spitfire.protocol.transport import ByteStream, StreamHandler
from spitfire.server.tls import ensure_certificate

#: Frames each echo test sends (and gets back).
FRAMES = 10_000
#: Upper bound on any single wait; generous because the machine is shared.
WAIT = 30.0


class Recorder:
    """A handler that records everything; optionally echoes what it receives."""

    def __init__(self, *, echo: bool = False, expect_frames: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.echo = echo
        self.stream: ByteStream | None = None
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.lost: list[Exception | None] = []
        self.made = loop.create_future()
        self.gone = loop.create_future()
        self.received_all = loop.create_future()
        self.expect_frames = expect_frames

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.echo:
            assert self.stream is not None
            self.stream.write(data)
        self.frames.extend(self.reader.feed(data))
        if self.expect_frames and len(self.frames) >= self.expect_frames and not self.received_all.done():
            self.received_all.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        if not self.gone.done():
            self.gone.set_result(None)


class ServerSide:
    """Collects the server's handlers."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self.handlers: list[Recorder] = []

    def factory(self) -> StreamHandler:
        handler = Recorder(echo=self.echo)
        self.handlers.append(handler)
        return handler

    async def first(self) -> Recorder:
        for _ in range(int(WAIT * 100)):
            if self.handlers:
                return self.handlers[0]
            await asyncio.sleep(0.01)
        raise AssertionError("the server never made a handler")


Connector = Callable[[ServerSide, Recorder], Coroutine[Any, Any, tuple[Callable[[], None], Any]]]


def run(make: Callable[[], Awaitable[None]], loop_kind: str) -> None:
    """Run ``make()`` on a fresh loop of ``loop_kind`` with an overall timeout."""

    async def bounded() -> None:
        await asyncio.wait_for(make(), WAIT * 2)

    if loop_kind == "uvloop":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(bounded())
    else:
        asyncio.run(bounded())


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    cert, key = ensure_certificate(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


class Endpoint:
    """One transport's serve/connect pair with uniform close and wait operations."""

    def __init__(self, kind: str, cert_pair: tuple[str, str]) -> None:
        self.kind = kind
        self.cert, self.key = cert_pair
        self.server: Any = None
        self.client: Any = None

    async def start(self, side: ServerSide, handler: Recorder) -> None:
        if self.kind == "tcp":
            self.server = await serve_tcp("127.0.0.1", 0, side.factory)
            port = self.server.sockets[0].getsockname()[1]
            await connect_tcp("127.0.0.1", port, handler)
        else:
            self.server = await serve_quic("127.0.0.1", 0, side.factory, certfile=self.cert, keyfile=self.key)
            port = self.server.address[1]
            self.client = await connect_quic("127.0.0.1", port, handler, cafile=self.cert)
        assert handler.made.done()

    async def stop(self) -> None:
        if self.client is not None:
            await asyncio.wait_for(self.client.wait_closed(), WAIT)
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), WAIT)


TRANSPORTS = [
    pytest.param("tcp", "asyncio", id="tcp-asyncio"),
    pytest.param("tcp", "uvloop", id="tcp-uvloop"),
    pytest.param("quic", "asyncio", id="quic-asyncio"),
    pytest.param("quic", "uvloop", id="quic-uvloop"),
]


def frames_to_send(count: int) -> list[bytes]:
    """Small frames with distinct ids and bodies of varying length (0..40 bytes)."""
    return [encode_frame(0x02 + i % 3, i + 1, bytes([i % 251]) * (i % 41)) for i in range(count)]


@pytest.mark.parametrize(("kind", "loop_kind"), TRANSPORTS)
def test_echo_of_pipelined_frames(kind: str, loop_kind: str, cert_pair: tuple[str, str]) -> None:
    sent = frames_to_send(FRAMES)

    async def scenario() -> None:
        side = ServerSide(echo=True)
        client = Recorder(expect_frames=FRAMES)
        endpoint = Endpoint(kind, cert_pair)
        await endpoint.start(side, client)
        assert client.stream is not None
        for frame in sent:
            client.stream.write(frame)
        await asyncio.wait_for(client.received_all, WAIT)
        server = await side.first()
        assert [encode_frame(*f) for f in client.frames] == sent
        assert [encode_frame(*f) for f in server.frames] == sent
        client.stream.close()
        await asyncio.wait_for(asyncio.gather(client.gone, server.gone), WAIT)
        await endpoint.stop()
        assert client.lost == [None]
        assert server.lost == [None]
        assert len(side.handlers) == 1

    run(scenario, loop_kind)


@pytest.mark.parametrize(("kind", "loop_kind"), TRANSPORTS)
def test_server_pushes_then_closes(kind: str, loop_kind: str, cert_pair: tuple[str, str]) -> None:
    """The server's frames written just before its close all arrive, then both ends hear the loss."""
    sent = frames_to_send(FRAMES)

    async def scenario() -> None:
        side = ServerSide(echo=False)
        client = Recorder(expect_frames=FRAMES)
        endpoint = Endpoint(kind, cert_pair)
        await endpoint.start(side, client)
        assert client.stream is not None
        client.stream.write(encode_frame(0x02, 1, b""))  # QUIC: the server sees the stream on first data
        server = await side.first()
        # TCP: closing a socket with unread input sends RST, which may destroy the reply in flight.
        for _ in range(int(WAIT * 100)):
            if server.frames:
                break
            await asyncio.sleep(0.01)
        assert server.stream is not None
        for frame in sent:
            server.stream.write(frame)
        server.stream.close()
        assert server.stream.is_closing()
        await asyncio.wait_for(asyncio.gather(client.gone, server.gone), WAIT)
        assert (client.lost, server.lost, len(client.frames)) == ([None], [None], FRAMES)
        assert [encode_frame(*f) for f in client.frames] == sent
        await endpoint.stop()
        assert client.lost == [None]
        assert server.lost == [None]

    run(scenario, loop_kind)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_quic_listener_close_reaches_both_handlers_once(loop_kind: str, cert_pair: tuple[str, str]) -> None:
    async def scenario() -> None:
        side = ServerSide(echo=True)
        client = Recorder(expect_frames=1)
        endpoint = Endpoint("quic", cert_pair)
        await endpoint.start(side, client)
        assert client.stream is not None
        client.stream.write(encode_frame(0x02, 1, b""))
        await asyncio.wait_for(client.received_all, WAIT)
        server = await side.first()
        endpoint.server.close()
        assert server.lost == [None]
        await asyncio.wait_for(client.gone, WAIT)
        await endpoint.stop()
        assert client.lost == [None]
        assert server.lost == [None]

    run(scenario, loop_kind)


def test_quic_rejects_an_untrusted_certificate(cert_pair: tuple[str, str], tmp_path: Path) -> None:
    other_cert, _ = ensure_certificate(tmp_path / "other")

    async def scenario() -> None:
        side = ServerSide(echo=True)
        server = await serve_quic("127.0.0.1", 0, side.factory, certfile=cert_pair[0], keyfile=cert_pair[1])
        client = Recorder()
        try:
            with pytest.raises(QuicConnectionClosed) as info:
                await connect_quic("127.0.0.1", server.address[1], client, cafile=str(other_cert))
            assert "certificate" in info.value.reason.lower() or info.value.error_code
            assert not client.made.done()
            assert client.lost == []
        finally:
            server.close()
            await server.wait_closed()

    run(scenario, "asyncio")


def test_quic_without_verification_accepts_a_self_signed_certificate(cert_pair: tuple[str, str]) -> None:
    async def scenario() -> None:
        side = ServerSide(echo=True)
        server = await serve_quic("127.0.0.1", 0, side.factory, certfile=cert_pair[0], keyfile=cert_pair[1])
        client = Recorder(expect_frames=1)
        conn = await connect_quic("localhost", server.address[1], client, verify=False)
        assert client.stream is not None
        client.stream.write(encode_frame(0x02, 7, b""))
        await asyncio.wait_for(client.received_all, WAIT)
        assert client.frames == [Frame(0x02, 7, b"")]
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), WAIT)
        assert client.lost == [None]
        server.close()
        await server.wait_closed()

    run(scenario, "asyncio")


class PausingRecorder(Recorder):
    """A server handler that notes the transport's flow-control calls."""

    def __init__(self) -> None:
        super().__init__()
        self.flow: list[str] = []

    def pause_writing(self) -> None:
        self.flow.append("pause")

    def resume_writing(self) -> None:
        self.flow.append("resume")


def test_quic_pauses_and_resumes_a_handler_that_writes_more_than_the_high_water_mark(
    cert_pair: tuple[str, str],
) -> None:
    big = encode_frame(0x45, 1, b"j" * (6 * 2**20))

    async def scenario() -> None:
        handlers: list[PausingRecorder] = []

        def factory() -> StreamHandler:
            handlers.append(PausingRecorder())
            return handlers[-1]

        server = await serve_quic("127.0.0.1", 0, factory, certfile=cert_pair[0], keyfile=cert_pair[1])
        client = Recorder(expect_frames=1)
        conn = await connect_quic("127.0.0.1", server.address[1], client, cafile=cert_pair[0])
        assert client.stream is not None
        client.stream.write(encode_frame(0x05, 1, b""))
        for _ in range(int(WAIT * 100)):
            if handlers and handlers[0].frames:
                break
            await asyncio.sleep(0.01)
        stream = handlers[0].stream
        assert stream is not None
        stream.write(big)
        await asyncio.wait_for(client.received_all, WAIT)
        assert encode_frame(*client.frames[0]) == big
        for _ in range(int(WAIT * 100)):  # the last acknowledgements may trail the data
            if handlers[0].flow == ["pause", "resume"]:
                break
            await asyncio.sleep(0.01)
        assert handlers[0].flow == ["pause", "resume"]
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), WAIT)
        server.close()
        await server.wait_closed()

    run(scenario, "asyncio")
