"""A cluster leader serves the binary protocol only while it can confirm that it still leads.

`ConfirmedService` stands between the connections and the `Service` on a cluster's leader: a
request is served at once while the leader's read lease holds (`spitfire.raft.ReadGuard`); else it
waits, in arrival order and bounded, for a heartbeat round that a majority acknowledged after it
arrived, and is answered ``NOT_LEADER`` if none comes in time. Every request but PING goes through
it, writes too: a write commits through the Raft log anyway, and letting nothing overtake a
waiting request keeps each connection's requests in order. Deliveries and the HTTP API are gated
by the same check (`Dispatcher.gate`, `HttpServer.gate`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spitfire.protocol.messages import ErrorCode, MessageType
from spitfire.protocol.session import Request, SessionState

from .dispatcher import Dispatcher
from .service import Peer, Service

__all__ = ["Check", "ConfirmedService", "unconfirmed"]

#: ``check(proceed) -> bool``: True to serve now; else ``proceed(ok)`` is called once, later.
Check = Callable[[Callable[[bool], None]], bool]


class ConfirmedService:
    """`Service.handle` behind a leadership check; everything else is the service's."""

    def __init__(self, service: Service, check: Check, node_id: str) -> None:
        self.service = service
        self._check = check
        self._node_id = node_id

    @property
    def dispatcher(self) -> Dispatcher:
        return self.service.dispatcher

    @property
    def connections(self) -> int:
        return self.service.connections

    @connections.setter
    def connections(self, count: int) -> None:
        self.service.connections = count

    def connection_closed(self, conn: Peer) -> None:
        self.service.connection_closed(conn)

    def handle(self, conn: Peer, request: Request) -> None:
        """Serve ``request`` now if the lease holds, else once confirmed (or refuse it)."""
        if request.type is MessageType.PING or self._check(lambda ok: self._proceed(conn, request, ok)):
            self.service.handle(conn, request)

    def _proceed(self, conn: Peer, request: Request, ok: bool) -> None:
        if conn.session.state is SessionState.CLOSED:
            return  # the connection went while its request waited: nothing to serve or answer
        if ok:
            self.service.handle(conn, request)
        elif request.request_id:  # frames that take no answer (CREDIT, START) are dropped
            conn.session.error(request.request_id, ErrorCode.NOT_LEADER, _message(self._node_id), None)
            conn.schedule_flush()

    def __getattr__(self, name: str) -> Any:  # anything else the hub may read
        return getattr(self.service, name)


def _message(node_id: str) -> str:
    return (
        f"this cluster member ({node_id}) cannot confirm that it still leads (no majority answered in "
        "time); retry, or ask another member"
    )


def resp_unconfirmed(node_id: str) -> str:
    """The text of a RESP ``-NOTLEADER`` error when the leader cannot confirm that it still leads."""
    return f"none ({_message(node_id)})"


def unconfirmed(node_id: str) -> dict[str, Any]:
    """The HTTP API's 503 body when the leader cannot confirm that it still leads."""
    return {"error": {"code": "NOT_LEADER", "message": _message(node_id), "leader": None}}
