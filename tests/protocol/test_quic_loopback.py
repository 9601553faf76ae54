"""QUIC between two ends on loopback: large datagrams, no pacing; other addresses keep the defaults."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop
from aioquic.quic.connection import QuicConnection
from aioquic.quic.recovery import QuicPacketPacer

from spitfire.protocol import quic
from spitfire.protocol.frames import FrameReader, encode_frame
from spitfire.protocol.quic import (
    LOOPBACK_DATAGRAM_SIZE,
    MAX_DATAGRAM_SIZE,
    connect_quic,
    is_loopback,
    make_configuration,
    serve_quic,
)
from spitfire.protocol.transport import ByteStream, StreamHandler
from spitfire.server.tls import ensure_certificate

#: Upper bound on any single wait; generous because the machine is shared.
WAIT = 30.0
#: Bytes the transfer test sends in one write.
TRANSFER = 2**20


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    cert, key = ensure_certificate(Path(tmp_path_factory.mktemp("tls")))
    return str(cert), str(key)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("fe80::1%eth0", False),
        ("localhost", False),  # a name: not resolved here, so the safe defaults apply
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_datagram_size_is_large_on_loopback_only() -> None:
    assert make_configuration(is_client=True, loopback=True).max_datagram_size == LOOPBACK_DATAGRAM_SIZE
    assert make_configuration(is_client=False).max_datagram_size == MAX_DATAGRAM_SIZE
    # aioquic writes frame and packet lengths as 2-byte varints: a datagram must stay below 2**14.
    assert MAX_DATAGRAM_SIZE < LOOPBACK_DATAGRAM_SIZE < 2**14


def test_the_loopback_pacer_never_holds_a_packet_back() -> None:
    conn = QuicConnection(configuration=make_configuration(is_client=True, loopback=True))
    paced = conn._loss._pacer
    # aioquic's own pacer, at a rate it would reach on loopback, holds packets back once its
    # bucket is empty -- the behaviour the override removes.
    paced.update_rate(congestion_window=20 * LOOPBACK_DATAGRAM_SIZE, smoothed_rtt=0.002)
    for _ in range(100):
        paced.update_after_send(now=1.0)
    assert paced.next_send_time(now=1.0) is not None

    quic._disable_pacing(conn)
    pacer = conn._loss._pacer
    assert isinstance(pacer, QuicPacketPacer)
    pacer.update_rate(congestion_window=20 * LOOPBACK_DATAGRAM_SIZE, smoothed_rtt=0.002)
    for _ in range(100):
        pacer.update_after_send(now=1.0)
    assert pacer.next_send_time(now=1.0) is None


class Sink:
    """Counts the bytes of frames received; ``done`` once ``expect`` frames arrived."""

    def __init__(self, expect: int) -> None:
        self.reader = FrameReader(max_frame=2 * TRANSFER)
        self.expect = expect
        self.frames = 0
        self.stream: ByteStream | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream

    def data_received(self, data: bytes) -> None:
        self.frames += len(self.reader.feed(data))
        if self.frames >= self.expect and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_loopback_transfer_uses_large_unpaced_datagrams(loop_kind: str, cert_pair: tuple[str, str]) -> None:
    """1 MiB client to server over loopback: about TRANSFER / LOOPBACK_DATAGRAM_SIZE packets (not the
    ~780 that 1350-byte datagrams need), and the pacer never set a send time."""
    frame = encode_frame(0x05, 1, b"p" * TRANSFER)

    async def scenario() -> None:
        sinks: list[Sink] = []

        def factory() -> StreamHandler:
            sinks.append(Sink(expect=1))
            return sinks[-1]

        server = await serve_quic("127.0.0.1", 0, factory, certfile=cert_pair[0], keyfile=cert_pair[1])
        client = Sink(expect=0)
        conn = await connect_quic("127.0.0.1", server.address[1], client, cafile=cert_pair[0])
        protocol = conn._conn
        assert isinstance(protocol._quic._loss._pacer, quic._Unpaced)
        sent_before = protocol._quic._packet_number
        assert client.stream is not None
        client.stream.write(frame)
        for _ in range(int(WAIT * 100)):
            if sinks:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(sinks[0].done, WAIT)
        packets = protocol._quic._packet_number - sent_before
        assert packets < 3 * TRANSFER // LOOPBACK_DATAGRAM_SIZE, f"{packets} packets for 1 MiB"
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), WAIT)
        server.close()
        await server.wait_closed()

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), WAIT * 2)

    if loop_kind == "uvloop":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(bounded())
    else:
        asyncio.run(bounded())
