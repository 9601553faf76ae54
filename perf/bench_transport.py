"""Micro-benchmark: pipelined request/response over TCP vs QUIC on loopback (not part of `make test`).

One process runs a server (a `ServerSession` answering PING with PONG) and a client (a
`ClientSession`) on one event loop, so the figure is the transports' cost per request on top of the
sessions, not the engine's. (One shared loop runs both ends in lockstep: timing effects between
processes -- delayed ACKs, pacing, a late timer -- do not show here; `python -m perf net` measures
those against a real server process.) Two shapes:

- ``window``: 64 requests in flight, a new one sent as each answer arrives (the SDK benchmark's
  shape: ``AsyncClient`` with 64 concurrent enqueues);
- ``burst``: 10,000 requests written at once, then every answer awaited.

Run the comparison and print the QUIC/TCP ratio::

    .venv/bin/python -m perf.bench_transport            # asyncio loop
    .venv/bin/python -m perf.bench_transport --uvloop

or through pytest-benchmark (opt in; `make test` disables benchmarks)::

    .venv/bin/pytest perf/bench_transport.py --benchmark-enable
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from spitfire.protocol import messages as m
from spitfire.protocol.quic import connect_quic, serve_quic
from spitfire.protocol.session import ClientSession, ProtocolViolation, ServerSession
from spitfire.protocol.tcp import connect_tcp, serve_tcp
from spitfire.protocol.transport import ByteStream
from spitfire.server.tls import ensure_certificate

WELCOME = m.Welcome(1, "bench", 64 * 2**20, 2**20, 10.0)
REQUESTS = 20_000
WINDOW = 64
BURST = 10_000


class PongServer:
    """Answers every PING with PONG; flushes once per loop iteration like the real server."""

    def __init__(self) -> None:
        self.session = ServerSession(WELCOME)
        self.stream: ByteStream | None = None

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream

    def data_received(self, data: bytes) -> None:
        try:
            requests = self.session.receive_data(data)
        except ProtocolViolation:
            assert self.stream is not None
            self.stream.write(self.session.data_to_send())
            self.stream.close()
            return
        for request in requests:
            self.session.reply(request, m.Pong())
        out = self.session.data_to_send()
        if out and self.stream is not None:
            self.stream.write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class PingClient:
    """Sends PINGs, keeping ``window`` in flight, until ``total`` answers arrived."""

    def __init__(self, total: int, window: int) -> None:
        self.session = ClientSession("bench")
        self.total = total
        self.window = window
        self.sent = 0
        self.answered = 0
        self.stream: ByteStream | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        self.stream.write(self.session.data_to_send())  # HELLO

    def start(self) -> None:
        self._send(min(self.window, self.total))

    def _send(self, count: int) -> None:
        for _ in range(count):
            self.session.request(m.MessageType.PING, m.Ping())
        self.sent += count
        assert self.stream is not None
        self.stream.write(self.session.data_to_send())

    def data_received(self, data: bytes) -> None:
        answers = len(self.session.receive_data(data))
        self.answered += answers
        more = min(answers, self.total - self.sent)
        if more > 0:
            self._send(more)
        if self.answered >= self.total and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def measure(kind: str, total: int, window: int, cert: tuple[str, str]) -> float:
    """Requests per second of one run of ``total`` PINGs over ``kind`` ("tcp" or "quic")."""
    client = PingClient(total, window)
    conn: Any = None
    if kind == "tcp":
        server: Any = await serve_tcp("127.0.0.1", 0, PongServer)
        await connect_tcp("127.0.0.1", server.sockets[0].getsockname()[1], client)
    else:
        server = await serve_quic("127.0.0.1", 0, PongServer, certfile=cert[0], keyfile=cert[1])
        conn = await connect_quic("127.0.0.1", server.address[1], client, cafile=cert[0])
    while client.session.welcome is None:  # the handshake's answer, before the clock starts
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    client.start()
    await asyncio.wait_for(client.done, 120)
    elapsed = time.perf_counter() - started
    assert client.stream is not None
    client.stream.close()
    await asyncio.wait_for(client.lost, 10)
    if conn is not None:
        await conn.wait_closed()
    server.close()
    await server.wait_closed()
    return total / elapsed


def run(kind: str, total: int, window: int, *, uvloop: bool = False) -> float:
    """One measurement on a fresh event loop (with a throwaway self-signed certificate)."""
    with tempfile.TemporaryDirectory(prefix="spitfire-bench-") as tmp:
        cert, key = ensure_certificate(Path(tmp))
        pair = (str(cert), str(key))
        if uvloop:
            import uvloop as uv

            with asyncio.Runner(loop_factory=uv.new_event_loop) as runner:
                return runner.run(measure(kind, total, window, pair))
        return asyncio.run(measure(kind, total, window, pair))


# -- pytest-benchmark -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "quic"])
@pytest.mark.parametrize(("shape", "window"), [("window", WINDOW), ("burst", BURST)])
def test_pipelined_ping(benchmark: Any, kind: str, shape: str, window: int) -> None:
    rate = benchmark.pedantic(run, args=(kind, REQUESTS, window), rounds=3, iterations=1)
    assert rate > 0


# -- command line ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uvloop", action="store_true", help="run both transports on uvloop (as the server)")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for shape, window in (("window", WINDOW), ("burst", BURST)):
        best: dict[str, float] = {}
        for kind in ("tcp", "quic"):
            best[kind] = max(run(kind, args.requests, window, uvloop=args.uvloop) for _ in range(args.rounds))
        ratio = best["quic"] / best["tcp"]
        print(
            f"{shape:6} (in flight {window:>5}): tcp {best['tcp']:>9,.0f} req/s   "
            f"quic {best['quic']:>9,.0f} req/s   quic/tcp {ratio:.0%}"
        )


if __name__ == "__main__":
    main()
