"""QUIC on uvloop at both ends: every connection completes HELLO/WELCOME and its requests.

Regression test for connections that finished the QUIC handshake but never sent HELLO (the client
missed aioquic's HandshakeCompleted when it arrived before ``wait_connected`` ran, which uvloop's
callback order makes likely) and for timers that spun until uvloop's millisecond clock ticked.
Every connection is bounded in time; a lost one fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from spitfire.protocol import messages as m
from spitfire.protocol import quic
from spitfire.protocol.quic import connect_quic
from spitfire.protocol.session import ClientSession
from spitfire.protocol.transport import ByteStream
from spitfire.server.tls import ensure_certificate

#: Connections opened one after the other, and at once.
SEQUENTIAL = 100
CONCURRENT = 20
#: Requests each connection makes after its handshake.
REQUESTS = 5
#: Seconds one connection may take from connect to its last answer (loopback needs milliseconds;
#: the machine is shared, so the bound is generous -- but far below the 60 s idle timeout).
PER_CONNECTION = 10.0
#: Seconds the whole test may take.
OVERALL = 120.0
#: Seconds the server process may take to start or to stop.
START_TIMEOUT = 30.0
#: Timer runs allowed per connection (about 2 are needed: a delayed ACK or two, the close). A timer
#: that spun until uvloop's clock ticked ran some 28 times per connection here.
TIMER_RUNS_PER_CONNECTION = 8
SERVER_SCRIPT = Path(__file__).with_name("quic_pong_server.py")


class PingClient:
    """Sends HELLO, then REQUESTS PINGs one at a time; ``done`` resolves after the last PONG."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.session = ClientSession("test")
        self.stream: ByteStream | None = None
        self.answers = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.gone: asyncio.Future[None] = loop.create_future()

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        stream.write(self.session.data_to_send())  # HELLO

    def data_received(self, data: bytes) -> None:
        responses = self.session.receive_data(data)
        assert self.stream is not None
        if self.session.welcome is not None and self.answers == 0 and not responses:
            self._ping()  # the WELCOME alone: start the requests
        for response in responses:
            assert response.type is m.MessageType.PONG
            self.answers += 1
            if self.answers >= REQUESTS:
                if not self.done.done():
                    self.done.set_result(None)
            else:
                self._ping()

    def _ping(self) -> None:
        assert self.stream is not None
        self.session.request(m.MessageType.PING, m.Ping())
        self.stream.write(self.session.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gone.done():
            self.gone.set_result(None)
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"lost after {self.answers} answers: {exc}"))


async def one_connection(port: int, cafile: str) -> float:
    """Connect, HELLO, REQUESTS round trips, close; returns the seconds it took."""
    started = time.perf_counter()
    client = PingClient()
    async with asyncio.timeout(PER_CONNECTION):
        conn = await connect_quic("127.0.0.1", port, client, cafile=cafile)
        await client.done
        assert client.session.welcome is not None
        conn.close()
        await client.gone
        await conn.wait_closed()
    return time.perf_counter() - started


def run_on_uvloop(make: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(make(), OVERALL)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(bounded())


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    cert, key = ensure_certificate(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


@pytest.fixture(scope="module")
def server_port(cert_pair: tuple[str, str]) -> Iterator[int]:
    """A QUIC server on uvloop in its own process (quic_pong_server.py), stopped by PID.

    Not on the test's loop: one loop would run both ends' callbacks in lockstep and hide the races.
    """
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), *cert_pair], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        assert ready, f"the QUIC test server did not start within {START_TIMEOUT} s"
        yield int(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_sequential_connections_on_uvloop(server_port: int, cert_pair: tuple[str, str]) -> None:
    async def scenario() -> None:
        for i in range(SEQUENTIAL):
            try:
                await one_connection(server_port, cert_pair[0])
            except TimeoutError:
                raise AssertionError(f"connection {i + 1} of {SEQUENTIAL} did not finish") from None

    run_on_uvloop(scenario)


def test_concurrent_connections_on_uvloop(server_port: int, cert_pair: tuple[str, str]) -> None:
    async def scenario() -> None:
        results: list[Any] = await asyncio.gather(
            *(one_connection(server_port, cert_pair[0]) for _ in range(CONCURRENT)),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, f"{len(failed)} of {CONCURRENT} connections failed: {failed[:3]}"

    run_on_uvloop(scenario)


def test_timers_do_not_spin_on_uvloop(
    server_port: int, cert_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection's timer runs a handful of times per round trip, not once per loop iteration
    until uvloop's millisecond clock ticks (its deadline was always a fraction of a tick away)."""
    runs = 0
    handle_timer = quic._Connection._handle_timer

    def counting(self: quic._Connection) -> None:
        nonlocal runs
        runs += 1
        handle_timer(self)

    monkeypatch.setattr(quic._Connection, "_handle_timer", counting)

    async def scenario() -> None:
        for _ in range(10):
            await one_connection(server_port, cert_pair[0])
            await asyncio.sleep(0.01)  # the delayed ACKs of the last answers fall due

    run_on_uvloop(scenario)
    assert runs <= 10 * TIMER_RUNS_PER_CONNECTION, f"{runs} timer runs for 10 connections"
