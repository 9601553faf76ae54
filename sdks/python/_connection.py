"""One connection to a server: the protocol's ClientSession bound to a TCP or QUIC stream.

Requests are pipelined: each gets the next request id and a future in ``pending``; answers may
come back in any order and resolve their future. Frames queued during one event-loop iteration
leave in one write (the flush is scheduled with ``call_soon``). Server pushes (DELIVER,
CANCEL_JOBS, GOAWAY) go to ``on_push``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from spitfire.protocol.messages import Error, ErrorCode, MessageType, Welcome
from spitfire.protocol.session import ClientSession, ProtocolViolation, Response, SessionState
from spitfire.protocol.transport import ByteStream

from ._url import Endpoint
from .errors import (
    ConnectionLost,
    NotConnected,
    ProtocolError,
    SpitfireError,
    TLSVerificationFailed,
    Unauthorized,
    UnsupportedVersion,
    error_from_frame,
)

#: How late, as a share of the request timeout, a request without an answer may be failed.
EXPIRY_SLACK = 0.1
#: ... and at most this many seconds late.
MAX_EXPIRY_DELAY = 1.0

#: Called with every push (request id 0) the server sends.
PushHandler = Callable[[Response], None]

_CLIENT_NAME = f"spitfire-python/{{version}} {socket.gethostname()}:{os.getpid()}"


def client_name(version: str) -> str:
    """What the Hello frame says about this client (shown in server logs and the dashboard)."""
    return _CLIENT_NAME.format(version=version)


#: Queued requests are written at the end of the loop turn, or at once when this many are waiting.
#: With many requests in flight, answers arrive together and every waiting coroutine sends its
#: next request in the same turn; written as one block, the server would only start on them once
#: the client had built them all, and each side would wait for the other in turn. Writing every 16
#: lets the server work while the client builds the rest: 64 in flight, 100,000 enqueues, A/B over
#: 5 interleaved runs on a 2-core VM: 36,200 -> 41,200 jobs/s (medians; each run faster), 8 frames:
#: 39,800. A batch (ENQUEUE_MANY) is written at once for the same reason: 4 batches of 100 in
#: flight, 269,500 -> 283,400 jobs/s (medians of 5 interleaved runs, 4 of 5 faster).
FLUSH_FRAMES = 16


class Connection:
    """The StreamHandler of one connection. Create with `open_connection`.

    With ``request_timeout`` (seconds), a request with no answer after that long has its future
    failed with TimeoutError, at most `EXPIRY_SLACK` of the timeout (and never more than one second)
    late. One timer per connection sweeps the requests in send order instead of a timer per request:
    ``asyncio.timeout`` around each request cost the client 13% of its CPU at 20,000 requests/s.
    """

    def __init__(
        self, session: ClientSession, on_push: PushHandler | None = None, request_timeout: float | None = None
    ) -> None:
        self.session = session
        self.on_push = on_push
        #: request id -> future of its answer (a Response, or an exception).
        self.pending: dict[int, asyncio.Future[Response]] = {}
        self.request_timeout = request_timeout
        #: (deadline, request id) in send order; deadlines only grow since the timeout is fixed.
        self._deadlines: deque[tuple[float, int]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        #: True after GOAWAY: answers to in-flight requests still arrive; send nothing new.
        self.draining = False
        #: Set by `retire`: close once the last answer due has arrived.
        self._retired = False
        self._loop = asyncio.get_running_loop()
        self._stream: ByteStream | None = None
        self._flush_scheduled = False
        self._welcome: asyncio.Future[Welcome] = self._loop.create_future()
        #: Resolves (to the reason, or None) once the connection is gone.
        self.closed: asyncio.Future[SpitfireError | None] = self._loop.create_future()
        #: Set once the transport reported connection_lost (its socket is released).
        self._transport_gone = asyncio.Event()

    # -- StreamHandler ----------------------------------------------------------------------------

    def connection_made(self, stream: ByteStream) -> None:
        self._stream = stream
        stream.write(self.session.data_to_send())  # the Hello

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.session.receive_data(data)
        except ProtocolViolation as exc:
            self._fail(_violation_error(exc))
            return
        if self.session.welcome is not None and not self._welcome.done():
            self._welcome.set_result(self.session.welcome)
        pending = self.pending
        for response in responses:
            rid = response.request_id
            if rid == 0:
                self._push(response)
                continue
            fut = pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(response)
        if self._retired and not pending:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport_gone.set()
        detail = f": {exc}" if exc else ""
        self._fail(ConnectionLost(f"the connection to the server was lost{detail}"))

    # -- use --------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open, past the handshake, and not told to go away."""
        return not self.closed.done() and not self.draining and self.session.state is SessionState.OPEN

    @property
    def welcome(self) -> Welcome:
        assert self.session.welcome is not None
        return self.session.welcome

    async def handshake(self) -> Welcome:
        """Wait for the server's Welcome (or its refusal)."""
        return await self._welcome

    def request(
        self, message_type: int, message: msgspec.Struct, timeout: float | None = None
    ) -> tuple[int, asyncio.Future[Response]]:
        """Queue a request; its future resolves to the answer frame (ERROR included).

        ``timeout`` replaces the connection's request timeout for this request (WAIT: answered late).
        :raises ConnectionLost: the connection is already closed.
        """
        if self.closed.done():
            raise self.closed.result() or ConnectionLost("the connection is closed")
        rid = self.session.request(message_type, message)
        fut: asyncio.Future[Response] = self._loop.create_future()
        self.pending[rid] = fut
        if timeout is not None:
            # Its own timer: the sweep's deadlines must stay in send order (one fixed timeout).
            self._loop.call_later(timeout, _expire_one, fut)
        elif self.request_timeout is not None:
            self._deadlines.append((self._loop.time() + self.request_timeout, rid))
            if self._sweep is None:
                self._arm_sweep()
        if self.session.queued_frames >= FLUSH_FRAMES or message_type == MessageType.ENQUEUE_MANY:
            self._flush()  # the server starts on these while this turn queues the rest
        else:
            self._schedule_flush()
        return rid, fut

    def send(self, message_type: int, message: msgspec.Struct) -> None:
        """Queue a frame that takes no answer (CREDIT, START); dropped if the connection is gone."""
        if self.closed.done():
            return
        self.session.request(message_type, message)
        self._schedule_flush()

    def retire(self) -> None:
        """Send nothing new here (the server does not lead: `usable` is False from now on); close
        once the answers still due have arrived, so that requests in flight are not cut."""
        self.draining = True
        self._retired = True
        if not self.pending:
            self.close()

    def close(self) -> None:
        """Send what is queued, then close; pending requests fail with ConnectionLost."""
        self._flush()
        if self._stream is not None:
            self._stream.close()
        self._fail(ConnectionLost("the connection was closed by this client"))

    async def aclose(self, timeout: float = 2.0) -> None:
        """`close`, then wait (up to ``timeout``) until the transport has released its socket, so
        that nothing of it is left when the event loop closes (QUIC lingers a little)."""
        self.close()
        if self._stream is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._transport_gone.wait()

    # -- internals --------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.session.data_to_send()
        if data and self._stream is not None and not self._stream.is_closing():
            self._stream.write(data)

    def _arm_sweep(self) -> None:
        assert self.request_timeout is not None
        interval = min(MAX_EXPIRY_DELAY, self.request_timeout * EXPIRY_SLACK)
        self._sweep = self._loop.call_later(interval, self._expire)

    def _expire(self) -> None:
        """Fail the requests past their deadline; forget the answered ones at the front."""
        self._sweep = None
        now, pending, deadlines = self._loop.time(), self.pending, self._deadlines
        while deadlines:
            deadline, rid = deadlines[0]
            fut = pending.get(rid)
            if fut is not None and not fut.done():
                if deadline > now:
                    break
                fut.set_exception(TimeoutError())
            pending.pop(rid, None)
            deadlines.popleft()
        if deadlines and not self.closed.done():
            self._arm_sweep()

    def _push(self, response: Response) -> None:
        if response.type is MessageType.ERROR:
            # ERROR with request id 0: the server is closing this connection.
            self._fail(_connection_error(response.message))
            if self._stream is not None:
                self._stream.close()
            return
        if response.type is MessageType.GOAWAY:
            self.draining = True
        if self.on_push is not None:
            self.on_push(response)

    def _fail(self, error: SpitfireError) -> None:
        if not self._welcome.done():
            self._welcome.set_exception(error)
            self._welcome.exception()  # retrieved here so an unawaited handshake does not warn
        if not self.closed.done():
            self.closed.set_result(error)
        pending, self.pending = self.pending, {}
        self._deadlines.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)


def _expire_one(fut: asyncio.Future[Response]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _violation_error(exc: ProtocolViolation) -> SpitfireError:
    if exc.code == ErrorCode.UNAUTHORIZED:
        return Unauthorized(
            f"the server refused the connection: {exc.message}"
            if "SPITFIRE_AUTH_TOKEN" in exc.message
            else f"the server refused the connection: {exc.message} "
            "(pass auth_token=... or set SPITFIRE_AUTH_TOKEN)"
        )
    if exc.code == ErrorCode.UNSUPPORTED_VERSION:
        return UnsupportedVersion(f"the server refused the connection: {exc.message}")
    return ProtocolError(f"the connection failed: {exc.message}")


def _connection_error(error: Error) -> SpitfireError:
    err = error_from_frame(error)
    if isinstance(err, Unauthorized | UnsupportedVersion):
        return err
    return ConnectionLost(f"the server closed the connection: {error.code}: {error.message}")


async def open_connection(
    endpoint: Endpoint,
    *,
    token: str | None,
    client: str,
    on_push: PushHandler | None = None,
    tls_ca: str | None = None,
    timeout: float = 10.0,
    request_timeout: float | None = None,
) -> Connection:
    """Connect and complete the handshake (within ``timeout`` seconds); requests on the connection
    fail with TimeoutError after ``request_timeout`` seconds without an answer (see `Connection`).

    :raises NotConnected: the server cannot be reached.
    :raises Unauthorized, UnsupportedVersion: the server refused the handshake.
    """
    conn = Connection(ClientSession(client=client, token=token), on_push, request_timeout)
    try:
        async with asyncio.timeout(timeout):
            await _connect_transport(endpoint, conn, tls_ca)
            await conn.handshake()
    except (OSError, TimeoutError) as exc:
        conn.close()
        if endpoint.scheme == "quic" and "certificate" in str(exc).lower():
            raise TLSVerificationFailed(
                f"cannot connect to {endpoint.url}: the server's TLS certificate was refused ({exc}); "
                "pass tls_ca= the server's CA file, e.g. <data-dir>/tls/cert.pem for its self-signed one"
            ) from None
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise NotConnected(
            f"cannot connect to {endpoint.url}: {reason}; is spitfire-server running there? "
            "(set the address with url=... or SPITFIRE_URL)"
        ) from None
    except ConnectionLost as exc:
        raise NotConnected(f"cannot connect to {endpoint.url}: {exc.message}") from None
    return conn


async def _connect_transport(endpoint: Endpoint, conn: Connection, tls_ca: str | None) -> None:
    if endpoint.scheme == "tcp":
        from spitfire.protocol.tcp import connect_tcp

        await connect_tcp(endpoint.host, endpoint.port, conn)
        return
    connect_quic = _load_quic()
    verify, cafile = quic_verify(endpoint, tls_ca)
    await connect_quic(endpoint.host, endpoint.port, conn, verify=verify, cafile=cafile)


def quic_verify(endpoint: Endpoint, tls_ca: str | None) -> tuple[bool, str | None]:
    """How a QUIC connection checks the server's certificate (README.md), as
    ``(verify, cafile)`` for ``connect_quic``.

    ``tls_ca`` given: verify against that CA file. Loopback host: accept the server's self-signed
    certificate (no verification: nothing but this machine can answer on loopback). Elsewhere:
    verify against the system CAs.
    """
    if tls_ca is not None:
        return True, tls_ca
    return not endpoint.is_loopback, None


def _load_quic() -> Any:
    # Imported lazily: aioquic is only needed by quic:// users, and keeps `import spitfire` light.
    try:
        from spitfire.protocol import quic
    except ImportError as exc:
        raise NotConnected(
            f"quic:// URLs need spitfire.protocol.quic, which cannot be imported here ({exc}); "
            "use a tcp:// URL instead"
        ) from None
    return quic.connect_quic
