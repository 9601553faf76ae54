"""Binds protocol sessions to the service: one `Connection` per TCP or QUIC connection.

The transport hands bytes to `Connection.data_received`; the session turns them into requests; the
service answers them into the session's outgoing queue; the connection writes that queue once per
loop turn (at the end of `data_received` for answers ready at once, and in one `call_soon` for
answers that became ready later in the turn: commits, pushes). A malformed frame gets an ERROR
frame, one log line and the connection is closed; nothing else is affected.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from typing import Any

import msgspec

from spitfire.protocol.messages import GoAway, MessageType, Welcome
from spitfire.protocol.session import ProtocolViolation, Request, ServerSession
from spitfire.protocol.transport import ByteStream

from .dispatcher import Worker
from .service import Service

log = logging.getLogger("spitfire.server.listener")

_ids = itertools.count(1)


class Connection:
    """The server side of one client connection (a `StreamHandler` for any transport)."""

    def __init__(self, hub: ConnectionHub) -> None:
        self.hub = hub
        self.id = next(_ids)
        self.session = ServerSession(hub.welcome, hub.token, hub.welcome.max_frame)
        self.stream: ByteStream | None = None
        self.worker: Worker | None = None
        #: The client does not read fast enough: requests wait in ``_backlog`` (TCP only).
        self.paused = False
        self._backlog: collections.deque[Request] = collections.deque()
        self._flush: asyncio.Handle | None = None
        self._loop = asyncio.get_running_loop()

    # -- StreamHandler ----------------------------------------------------------------------------------

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        self.hub.opened(self)

    def data_received(self, data: bytes) -> None:
        try:
            requests = self.session.receive_data(data)
        except ProtocolViolation as exc:
            log.warning("closing connection %d from %s: %s", self.id, self.peer, exc)
            self.close()
            return
        except Exception:
            log.exception("closing connection %d from %s: the session failed", self.id, self.peer)
            self.close()
            return
        if self._backlog:
            self._backlog.extend(requests)
        else:
            handle = self.hub.service.handle
            for i, request in enumerate(requests):
                handle(self, request)
                if self.paused:  # a large answer filled the send buffer: the rest waits for it
                    self._backlog.extend(requests[i + 1 :])
                    break
        self.flush()

    def pause_writing(self) -> None:
        """The transport's send buffer is full: stop serving this connection's requests."""
        self.paused = True

    def resume_writing(self) -> None:
        """The send buffer drained: serve the requests that waited."""
        self.paused = False
        backlog = self._backlog
        handle = self.hub.service.handle
        while backlog and not self.paused:
            handle(self, backlog.popleft())
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._backlog.clear()
        self.hub.closed(self)

    # -- output -----------------------------------------------------------------------------------------

    @property
    def peer(self) -> str:
        return "?" if self.stream is None else self.stream.peer()

    def flush(self) -> None:
        """Write every queued frame now, in one write."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        data = self.session.data_to_send()
        if data and self.stream is not None:
            self.stream.write(data)

    def schedule_flush(self) -> None:
        """Write queued frames once, at the end of this loop turn (frames of one turn share a write)."""
        if self._flush is None:
            self._flush = self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush = None
        self.flush()

    def push(self, message_type: int, message: msgspec.Struct) -> None:
        """Queue an unsolicited frame (DELIVER, CANCEL_JOBS, GOAWAY)."""
        self.session.push(message_type, message)
        self.schedule_flush()

    def close(self) -> None:
        """Send what is queued, then close."""
        self.flush()
        if self.stream is not None:
            self.stream.close()


class ConnectionHub:
    """Every open connection of the server, and what they share (service, handshake answer)."""

    def __init__(self, service: Service, welcome: Welcome, token: str | None) -> None:
        self.service = service
        self.welcome = welcome
        self.token = token
        self.connections: dict[int, Connection] = {}
        #: Set on shutdown: disconnecting workers keep their jobs leased (they are ready again
        #: after the restart) instead of having an attempt counted.
        self.shutting_down = False

    def factory(self) -> Connection:
        """The transports' handler factory."""
        return Connection(self)

    def opened(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        self.service.connections = len(self.connections)
        log.debug("connection %d from %s", conn.id, conn.peer)

    def closed(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        self.service.connections = len(self.connections)
        if conn.worker is not None:
            self.service.dispatcher.remove(conn.worker, release=not self.shutting_down)
        log.debug("connection %d from %s closed", conn.id, conn.peer)

    def goaway(self, reason: str) -> None:
        """Tell every connection the server is going away (answers to in-flight requests follow)."""
        for conn in list(self.connections.values()):
            conn.push(MessageType.GOAWAY, GoAway(reason))

    def close_all(self) -> None:
        """Flush and close every connection."""
        for conn in list(self.connections.values()):
            conn.close()


class Listeners:
    """The servers accepting connections (TCP, and QUIC when available)."""

    def __init__(self) -> None:
        self._servers: list[Any] = []
        #: What is served, e.g. ["tcp://127.0.0.1:7878", "quic://127.0.0.1:7878"].
        self.urls: list[str] = []

    def add(self, server: Any, url: str) -> None:
        self._servers.append(server)
        self.urls.append(url)

    def close(self) -> None:
        """Stop accepting new connections (open ones stay)."""
        for server in self._servers:
            server.close()
