"""TCP transport: adapts asyncio's streaming protocol to `StreamHandler` for both ends.

Nagle's algorithm is off (TCP_NODELAY): sessions already batch frames per loop iteration, and
request latency matters more than packet count.

After ``connection_lost`` the stream forgets its handler (and the handler, by the `ByteStream`
contract, may forget the stream), so the two never form a reference cycle that only the garbage
collector could free.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from .transport import HandlerFactory, StreamHandler


class _TcpStream(asyncio.Protocol):
    """One TCP connection, forwarding to a handler.

    Transports are duck-typed: uvloop's are not ``asyncio.Transport`` instances.
    """

    __slots__ = ("_peer", "_transport", "handler")

    def __init__(self, handler: StreamHandler) -> None:
        #: None once the connection is lost (see the module docstring).
        self.handler: StreamHandler | None = handler
        self._transport: Any = None
        self._peer = "?"

    # ByteStream
    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def is_closing(self) -> bool:
        return self._transport is None or bool(self._transport.is_closing())

    def peer(self) -> str:
        return self._peer

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name: Any = transport.get_extra_info("peername")
        if isinstance(name, tuple) and len(name) >= 2:
            self._peer = f"{name[0]}:{name[1]}"
        if self.handler is not None:
            self.handler.connection_made(self)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.connection_lost(exc)

    # A peer that sends requests but does not read the answers would make us buffer answers without
    # bound: stop reading its input until our output drains, and tell the handler (optional methods).
    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()
        pause = getattr(self.handler, "pause_writing", None)
        if pause is not None:
            pause()

    def resume_writing(self) -> None:
        resume = getattr(self.handler, "resume_writing", None)
        if resume is not None:
            resume()
        transport = self._transport
        if (
            transport is not None
            and not transport.is_closing()
            and not getattr(self.handler, "paused", False)
        ):
            transport.resume_reading()


async def serve_tcp(host: str, port: int, factory: HandlerFactory) -> asyncio.Server:
    """Listen on ``host:port``; every accepted connection gets a handler from ``factory``.

    Works on uvloop and asyncio loops alike."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _TcpStream(factory()), host, port, reuse_address=True)


async def connect_tcp(host: str, port: int, handler: StreamHandler) -> None:
    """Connect to ``host:port``; ``handler.connection_made`` has run when this returns."""
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: _TcpStream(handler), host, port)
