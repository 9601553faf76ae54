"""Binds protocol sessions to the service: one `Connection` per TCP or QUIC connection.

The transport hands bytes to `Connection.data_received`; the session turns them into requests; the
service answers them into the session's outgoing queue; the connection writes that queue once per
loop turn (at the end of `data_received` for answers ready at once, and in one `call_soon` for
answers that became ready later in the turn: commits, pushes). A malformed frame gets an ERROR
frame, one log line and the connection is closed; nothing else is affected.

Bounds on clients that never authenticate: a connection must finish its HELLO within the hub's
``handshake_timeout`` (the session holds the deadline; the connection arms the timer), and past
``max_connections`` open connections a new one gets an ERROR frame (BUSY) and is closed at once,
with one log line per burst of refusals. On close every reference between a `Connection` and its
transport's stream, its worker and its timers is dropped, so that the connection, and the buffer
of a frame it had half received, is freed by reference counting at once: the server raises the
garbage collector's thresholds, so a cycle could hold that memory for a long time.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from typing import Any

import msgspec

from spitfire.protocol.messages import ErrorCode, GoAway, MessageType, Welcome
from spitfire.protocol.session import HANDSHAKE_TIMEOUT, ProtocolViolation, Request, ServerSession
from spitfire.protocol.transport import ByteStream

from .dispatcher import Worker
from .options import DEFAULT_MAX_CONNECTIONS
from .service import Service

log = logging.getLogger("spitfire.server.listener")

_ids = itertools.count(1)

#: The ``retry_after`` a refused connection is told (seconds).
REFUSED_RETRY_AFTER = 1.0


class Connection:
    """The server side of one client connection (a `StreamHandler` for any transport)."""

    def __init__(self, hub: ConnectionHub) -> None:
        self.hub = hub
        self.id = next(_ids)
        self._loop = asyncio.get_running_loop()
        self.session = ServerSession(
            hub.welcome,
            hub.token,
            hub.welcome.max_frame,
            now=self._loop.time(),
            handshake_timeout=hub.handshake_timeout,
        )
        self.stream: ByteStream | None = None
        self.worker: Worker | None = None
        #: The client does not read fast enough: requests wait in ``_backlog`` (TCP only).
        self.paused = False
        self._backlog: collections.deque[Request] = collections.deque()
        self._flush: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._peer = "?"

    # -- StreamHandler ----------------------------------------------------------------------------------

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        self._peer = stream.peer()
        if not self.hub.admit(self):
            self.session.error(
                0,
                ErrorCode.BUSY,
                f"the server has {len(self.hub.connections)} connections open, its limit "
                "(--max-connections): retry later",
                retry_after=REFUSED_RETRY_AFTER,
            )
            self.close()
            return
        self._arm_timer()

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
        if self._timer is not None and self.session.timer() is None:  # the handshake succeeded
            self._timer.cancel()
            self._timer = None
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
        """Forget the stream, timers, backlog and buffers: nothing refers back to this connection."""
        for handle in (self._flush, self._timer):
            if handle is not None:
                handle.cancel()
        self._flush = self._timer = None
        self._backlog.clear()
        self.session.close()
        self.stream = None
        self.hub.closed(self)

    # -- handshake deadline -----------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self.session.timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._timer_due)

    def _timer_due(self) -> None:
        self._timer = None
        try:
            self.session.handle_timer(self._loop.time())
        except ProtocolViolation as exc:
            log.warning("closing connection %d from %s: %s", self.id, self.peer, exc)
            self.close()
            return
        self._arm_timer()  # (the loop fired early: wait for the rest)

    # -- output -----------------------------------------------------------------------------------------

    @property
    def peer(self) -> str:
        """The client's address, for logs (kept after the connection closed)."""
        return self._peer

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

    def __init__(
        self,
        service: Service,
        welcome: Welcome,
        token: str | None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.service = service
        self.welcome = welcome
        self.token = token
        #: Open connections past which new ones are refused.
        self.max_connections = max_connections
        #: Seconds a connection has to complete its HELLO.
        self.handshake_timeout = handshake_timeout
        self.connections: dict[int, Connection] = {}
        #: Set on shutdown: disconnecting workers keep their jobs leased (they are ready again
        #: after the restart) instead of having an attempt counted.
        self.shutting_down = False
        #: Connections refused since the limit was last reached (0: not refusing).
        self.refused = 0

    def factory(self) -> Connection:
        """The transports' handler factory."""
        return Connection(self)

    def admit(self, conn: Connection) -> bool:
        """Register a new connection, or return False when ``max_connections`` are open already.

        Refusals are logged once per burst: when the first is refused, and once a connection is
        admitted again (with the count), never once per connection.
        """
        if len(self.connections) >= self.max_connections:
            if not self.refused:
                log.warning(
                    "refusing new connections: %d are open, the limit (--max-connections %d)",
                    len(self.connections),
                    self.max_connections,
                )
            self.refused += 1
            return False
        if self.refused:
            log.info("accepting connections again (%d were refused at the limit)", self.refused)
            self.refused = 0
        self.connections[conn.id] = conn
        self.service.connections = len(self.connections)
        log.debug("connection %d from %s", conn.id, conn.peer)
        return True

    def closed(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is None:
            return  # refused at the limit: it was never registered
        self.service.connections = len(self.connections)
        self.service.connection_closed(conn)
        worker, conn.worker = conn.worker, None  # (the worker's sink is the connection: a cycle)
        if worker is not None:
            self.service.dispatcher.remove(worker, release=not self.shutting_down)
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
