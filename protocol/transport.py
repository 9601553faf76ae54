"""The seam between sessions and sockets: what a transport gives a connection handler, and back.

TCP (`tcp.py`) and QUIC (`quic.py`) both deliver an ordered byte stream per connection, so one
handler class serves both: the transport calls `StreamHandler.connection_made` with a `ByteStream`
to write to, then `data_received` for every chunk, then `connection_lost` once, after which it
drops its reference to the handler (and a handler should drop its `ByteStream`), so that a closed
connection is freed by reference counting, not by a later garbage collection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ByteStream(Protocol):
    """The writing end of one connection."""

    def write(self, data: bytes) -> None:
        """Queue bytes for sending (never blocks; the transport buffers)."""

    def close(self) -> None:
        """Send what is queued, then close the connection."""

    def is_closing(self) -> bool:
        """True once `close` was called or the connection was lost."""

    def peer(self) -> str:
        """The remote address as text, for logs."""


class StreamHandler(Protocol):
    """Receives one connection's events from a transport.

    A handler may also define ``pause_writing()`` and ``resume_writing()``: transports call them when
    too much written data waits to be sent, and once it drained (TCP also stops reading meanwhile,
    unless the handler's ``paused`` attribute says it still is).
    """

    def connection_made(self, stream: ByteStream) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


#: Builds the handler of each new server-side connection.
HandlerFactory = Callable[[], StreamHandler]
