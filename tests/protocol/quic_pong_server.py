"""A QUIC server on uvloop answering HELLO with WELCOME and PING with PONG (run as a script).

``python quic_pong_server.py CERTFILE KEYFILE`` prints the UDP port it listens on, then serves until
SIGTERM or SIGINT. `test_quic_uvloop.py` starts it in its own process, as the real server runs apart
from its clients.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

from spitfire.protocol import messages as m
from spitfire.protocol.quic import serve_quic
from spitfire.protocol.session import ServerSession
from spitfire.protocol.transport import ByteStream

WELCOME = m.Welcome(1, "test", 64 * 2**20, 2**20, 10.0)


class PongServer:
    """Answers HELLO with WELCOME (the session does) and every PING with PONG."""

    def __init__(self) -> None:
        self.session = ServerSession(WELCOME)
        self.stream: ByteStream | None = None

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream

    def data_received(self, data: bytes) -> None:
        for request in self.session.receive_data(data):
            self.session.reply(request, m.Pong())
        assert self.stream is not None
        self.stream.write(self.session.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        pass


async def main(certfile: str, keyfile: str) -> None:
    listener = await serve_quic("127.0.0.1", 0, PongServer, certfile=certfile, keyfile=keyfile)
    print(listener.address[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    await listener.wait_closed()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2]))
