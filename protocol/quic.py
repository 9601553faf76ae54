"""QUIC transport (aioquic): the same `StreamHandler` seam as `tcp.py`, over one bidirectional stream.

A Spitfire QUIC connection (ALPN ``spitfire/1``, TLS 1.3) carries exactly one stream: the client's
first bidirectional stream (id 0). The server makes the connection's handler when the first bytes
arrive on it; bytes on any other stream close the connection with `APP_PROTOCOL_ERROR`.

Writes are batched: every `ByteStream.write` of one loop iteration is joined into one
``send_stream_data`` and one ``transmit`` (scheduled with ``call_soon`` once per iteration), so
many small pipelined frames share packets instead of each paying for a datagram.

Closing mirrors a TCP close: the end that closes sends the bytes it has queued and then FIN on
the stream; the other end, on FIN, sends its own FIN and closes the QUIC connection (application
error 0). The closing end closes the connection itself if the peer has not done so within
`CLOSE_LINGER` seconds. Each end's ``handler.connection_lost`` runs exactly once: on FIN from the
peer, on the connection's termination (``None`` for a clean close, else `QuicConnectionClosed`),
when the listener closes, or after a handler callback raised.

Flow control: when more than `WRITE_HIGH_WATER` bytes written to the stream are unacknowledged, the
handler's optional ``pause_writing`` is called, and ``resume_writing`` once they drop to
`WRITE_LOW_WATER` (the asyncio TCP protocol's contract), so a server can stop serving a client that
does not read its answers. Meanwhile reading stops too, as TCP's ``pause_reading``: received stream
data waits here instead of reaching the handler, and no new stream credit is granted, so the peer
can send at most `RECEIVE_WINDOW` bytes more. Stream credit follows what the handler consumed
(`RECEIVE_WINDOW` ahead of it), not aioquic's default of doubling the window as data arrives,
which lets a peer that does not read its answers make the receiver buffer without bound.

Bounds on the server (`serve_quic`): past ``max_connections`` live QUIC connections, Initial
packets of new ones are dropped (no connection state is made; the client's connect times out), with
one log line per burst; a connection that has not opened its stream within ``stream_timeout``
seconds is closed. On termination a server connection drops its timers and aioquic's callbacks to
it, and each end forgets its handler once ``connection_lost`` ran, so that nothing keeps a closed
connection's handler (and its buffers) alive until the garbage collector runs.

Clock and timers: aioquic is driven with `time.monotonic` (kept non-decreasing per connection), not
``loop.time()``, and its timer is armed with ``call_later``. uvloop's ``loop.time()`` counts whole
milliseconds and is frozen for a loop iteration, so with it a timer due a fraction of a millisecond
later fired, found nothing due, re-armed itself at once and spun until the clock ticked, and the
packet pacer, whose token bucket refills only as the clock moves, sent at most a bucketful (often
one packet) per tick. A timer that fires early (uvloop rounds delays to milliseconds) runs as if on
time: the connection's clock moves forward to the deadline, so no interval aioquic measures is ever
negative.

The client learns that the handshake completed from the HandshakeCompleted event itself, not from
aioquic's ``wait_connected``, which misses the event if it arrives before it is first awaited.

Loopback: when both ends are on this machine (the server is bound to, or the client dials, a
loopback address), datagrams carry up to `LOOPBACK_DATAGRAM_SIZE` bytes instead of
`MAX_DATAGRAM_SIZE`, and packets are not paced (see `_Unpaced`); elsewhere aioquic's pacing stands.

The client sends a QUIC PING every `KEEPALIVE_INTERVAL` seconds so an idle but healthy connection
outlives the `IDLE_TIMEOUT` of both ends, while a vanished peer is noticed within it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from typing import Any

from aioquic._buffer import Buffer
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic import connection as _aioquic_connection
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.packet import QuicFrameType, QuicPacketType, pull_quic_header
from aioquic.quic.recovery import QuicPacketPacer

from .frames import DEFAULT_MAX_FRAME
from .transport import HandlerFactory, StreamHandler

log = logging.getLogger("spitfire.protocol.quic")


def _demote_aioquic(record: logging.LogRecord) -> bool:
    """aioquic logs a few INFO lines per connection (ALPN, version, close): routine, so DEBUG here.
    Dropped unless the "quic" logger is enabled for DEBUG (a logger filter runs after the INFO check)."""
    if record.levelno == logging.INFO:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("quic").isEnabledFor(logging.DEBUG)
    return True


logging.getLogger("quic").addFilter(_demote_aioquic)

#: The TLS application protocol name both ends must offer.
ALPN = "spitfire/1"
#: Seconds without a packet after which either end drops the connection.
IDLE_TIMEOUT = 60.0
#: Seconds between the client's keepalive PINGs (a quarter of the idle timeout: three may be lost).
KEEPALIVE_INTERVAL = IDLE_TIMEOUT / 4
#: Seconds an end that sent FIN waits for the peer to close before closing the connection itself.
CLOSE_LINGER = 2.0
#: Seconds `connect_quic` waits for the handshake by default.
CONNECT_TIMEOUT = 10.0
#: Connection-level flow-control window: a whole largest frame can be in flight (aioquic widens it
#: as data arrives; the stream window below is what bounds a peer).
FLOW_CONTROL_WINDOW = 2 * DEFAULT_MAX_FRAME
#: Stream credit granted ahead of what the handler consumed: what a peer can send that this end
#: has not read (e.g. while writing is paused). 16 MiB covers the bandwidth-delay product of a
#: 1 Gbit/s path at 100 ms, so a large frame streams in without waiting on window updates.
RECEIVE_WINDOW = 16 * 2**20
#: QUIC payload bytes per datagram. 1350 fits the 1500-byte Ethernet MTU over IPv6 and common
#: tunnels with room to spare (aioquic does no path MTU discovery) and carries 12% more per packet
#: than the 1200-byte minimum.
MAX_DATAGRAM_SIZE = 1350
#: QUIC payload bytes per datagram between two ends on loopback (whose MTU is 64 KiB, so nothing is
#: fragmented). Every packet costs aioquic the same Python work (header, AEAD, header protection,
#: ACK bookkeeping at both ends) whatever its size, so fewer, larger packets carry the same frames
#: for much less CPU: the requests a client writes in one loop iteration leave in one packet instead
#: of two or three. Below 16383 because aioquic writes frame and packet lengths as 2-byte varints.
LOOPBACK_DATAGRAM_SIZE = 16000
#: Application close codes (CONNECTION_CLOSE of type 0x1d).
APP_NO_ERROR = 0
#: The peer used a stream other than the connection's one bidirectional stream.
APP_PROTOCOL_ERROR = 1
#: A handler callback raised; the connection cannot continue.
APP_INTERNAL_ERROR = 2
#: The only stream a Spitfire connection uses: the client's first bidirectional stream.
STREAM_ID = 0
#: Bytes written but not yet acknowledged by the peer above which the handler's optional
#: ``pause_writing`` is called (as asyncio does for TCP), and below which ``resume_writing`` follows.
WRITE_HIGH_WATER = 4 * 2**20
WRITE_LOW_WATER = 2**20


class QuicConnectionClosed(ConnectionError):
    """The QUIC connection ended with an error (``error_code`` non-zero), or by idle timeout.

    ``error_code``, ``frame_type`` and ``reason`` are the CONNECTION_CLOSE frame's fields.
    """

    def __init__(self, error_code: int, frame_type: int | None, reason: str) -> None:
        self.error_code = error_code
        self.frame_type = frame_type
        self.reason = reason
        super().__init__(f"QUIC connection closed (code 0x{error_code:x}): {reason or 'no reason given'}")


def make_configuration(*, is_client: bool, loopback: bool = False) -> QuicConfiguration:
    """The QUIC settings both ends use: ALPN, idle timeout, large flow-control windows, and the
    datagram size (`LOOPBACK_DATAGRAM_SIZE` when ``loopback``: every peer is on this machine)."""
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=IDLE_TIMEOUT,
        max_data=FLOW_CONTROL_WINDOW,
        max_stream_data=RECEIVE_WINDOW,
        max_datagram_size=LOOPBACK_DATAGRAM_SIZE if loopback else MAX_DATAGRAM_SIZE,
    )


def is_loopback(host: str) -> bool:
    """True for a loopback IP address (127.0.0.0/8, ::1, IPv4-mapped loopback); False for anything
    else, names included."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class _Unpaced(QuicPacketPacer):
    """A pacer that never holds a packet back (installed on loopback connections only).

    aioquic paces at congestion window / smoothed RTT, which on loopback measures the two event
    loops, not a network: it only adds timer wake-ups and delays between packets no queue needs.
    The congestion window still bounds what is in flight.
    """

    # aioquic annotates ``-> float`` but its own pacer returns None for "send now", which is what
    # the connection tests for.
    def next_send_time(self, now: float) -> float | None:  # type: ignore[override]
        return None

    def update_after_send(self, now: float) -> None:
        pass

    def update_rate(self, congestion_window: int, smoothed_rtt: float) -> None:
        pass


class _ReceiveWindow:
    """Stream credit of one connection's stream, granted `RECEIVE_WINDOW` ahead of what its handler
    consumed (and not at all while reading is paused).

    Installed over aioquic's ``_write_stream_limits`` for that stream (which would double the limit
    whenever half of it was received, whatever the application read). Holds no reference to the
    protocol, so it makes no cycle through it.
    """

    __slots__ = ("consumed", "original", "paused")

    def __init__(self, original: Any) -> None:
        self.original = original
        #: Stream bytes handed to the handler.
        self.consumed = 0
        #: True while reading is paused: no credit is granted.
        self.paused = False

    def __call__(self, builder: Any, space: Any, stream: Any) -> None:
        if stream.stream_id != STREAM_ID:
            self.original(builder=builder, space=space, stream=stream)
            return
        target = self.consumed + RECEIVE_WINDOW
        # Grant in steps of half a window, not one MAX_STREAM_DATA frame per packet.
        if not self.paused and target - stream.max_stream_data_local >= RECEIVE_WINDOW // 2:
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=_aioquic_connection.MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self.original.__self__._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local


def _install_receive_window(quic: QuicConnection) -> _ReceiveWindow | None:
    """Put a `_ReceiveWindow` in charge of ``quic``'s stream credit (None if aioquic's internals
    are not where 1.x keeps them: then aioquic's own policy stands)."""
    original = getattr(quic, "_write_stream_limits", None)
    if (
        original is None
        or not hasattr(quic, "_on_max_stream_data_delivery")
        or not hasattr(_aioquic_connection, "MAX_STREAM_DATA_FRAME_CAPACITY")
    ):
        return None
    window = _ReceiveWindow(original)
    quic._write_stream_limits = window  # type: ignore[method-assign]
    return window


def _disable_pacing(quic: QuicConnection) -> None:
    """Give ``quic`` a pacer that never delays (if aioquic still keeps it where 1.x does)."""
    recovery = getattr(quic, "_loss", None)
    if recovery is not None and isinstance(getattr(recovery, "_pacer", None), QuicPacketPacer):
        recovery._pacer = _Unpaced(max_datagram_size=quic._max_datagram_size)


class _QuicByteStream:
    """The `ByteStream` a handler writes to; forwards to its connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    def write(self, data: bytes) -> None:
        self._conn.stream_write(data)

    def close(self) -> None:
        self._conn.stream_close()

    def is_closing(self) -> bool:
        return self._conn.closing or self._conn.lost

    def peer(self) -> str:
        return self._conn.peer


class _Connection(QuicConnectionProtocol):
    """One QUIC connection carrying one handler on one stream (both ends share this logic)."""

    def __init__(self, quic: QuicConnection, handler: StreamHandler | None = None, *, loopback: bool) -> None:
        super().__init__(quic)
        if loopback:
            _disable_pacing(quic)
        #: None once ``connection_lost`` ran (nothing here keeps a closed handler alive).
        self.handler = handler
        self.peer = "?"
        #: True once this end sent FIN (or gave up the connection): writes are dropped.
        self.closing = False
        #: True once ``handler.connection_lost`` ran (or was due and there is no handler).
        self.lost = False
        self.terminated: events.ConnectionTerminated | None = None
        self._stream_open = False
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._linger_handle: asyncio.TimerHandle | None = None
        self._writing_paused = False
        #: Reading is paused (while writing is): stream data waits in ``_inbound``.
        self._reading_paused = False
        self._inbound: list[bytes] = []
        #: The peer's FIN arrived behind data still waiting in ``_inbound``.
        self._inbound_fin = False
        self._window = _install_receive_window(quic)
        #: The connection's clock (see `_now`): the latest time handed to aioquic.
        self._clock = 0.0

    # -- the handler's ByteStream ------------------------------------------------------------------

    def stream_write(self, data: bytes) -> None:
        """Queue bytes; all writes of this loop iteration leave in one transmit."""
        if self.closing or self.lost or not data:
            return
        self._pending.append(data)
        self._schedule_flush()

    def stream_close(self) -> None:
        """Send what is queued, then FIN; the peer answers by closing the connection."""
        if self.closing or self.lost:
            return
        self._send_fin()
        self._linger_handle = self._loop.call_later(CLOSE_LINGER, self._linger_expired)

    # -- sending -----------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self.transmit()

    def _push_pending(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            self._quic.send_stream_data(STREAM_ID, data)
            if not self._writing_paused and self._unacked() > WRITE_HIGH_WATER:
                self._pause_writing()

    def _unacked(self) -> int:
        """Bytes on the stream the peer has not acknowledged (0 if aioquic's internals moved)."""
        stream = getattr(self._quic, "_streams", {}).get(STREAM_ID)
        sender = getattr(stream, "sender", None)
        return int(getattr(sender, "_buffer_stop", 0)) - int(getattr(sender, "_buffer_start", 0))

    def _pause_writing(self) -> None:
        self._writing_paused = True
        self._set_reading_paused(True)
        self._call_handler("pause_writing")

    def _check_resume(self) -> None:
        if self._writing_paused and self._unacked() <= WRITE_LOW_WATER:
            self._writing_paused = False
            self._call_handler("resume_writing")
            # As TCP: read again unless the handler says it is still paused.
            if not self._writing_paused and not getattr(self.handler, "paused", False):
                self._set_reading_paused(False)
                self._drain_inbound()

    def _set_reading_paused(self, paused: bool) -> None:
        self._reading_paused = paused
        if self._window is not None:
            self._window.paused = paused

    def _drain_inbound(self) -> None:
        """Hand the data that waited while reading was paused to the handler (then a pending FIN)."""
        inbound = self._inbound
        while inbound and not self._reading_paused and not self.closing and not self.lost:
            if not self._deliver(inbound.pop(0)):
                return
        if not self._reading_paused:
            inbound.clear()  # (closing: nobody reads it)
            self._schedule_flush()  # grant the credit the handler just freed
            if self._inbound_fin:
                self._inbound_fin = False
                self._peer_finished()

    def _call_handler(self, method: str) -> None:
        """Call an optional flow-control method of the handler (pause_writing / resume_writing)."""
        callback = getattr(self.handler, method, None)
        if callback is not None and not self.lost:
            try:
                callback()
            except Exception as exc:
                self._handler_failed(exc)

    def _send_fin(self) -> None:
        """Queue the pending bytes and FIN, and send them now (before any CONNECTION_CLOSE)."""
        self._push_pending()
        self.closing = True
        self._quic.send_stream_data(STREAM_ID, b"", end_stream=True)
        self.transmit()

    def _now(self) -> float:
        """The time to hand aioquic: `time.monotonic`, but never earlier than a time handed before.

        Not ``loop.time()``: uvloop's has millisecond steps and stays put for a whole loop
        iteration (see the module docstring).
        """
        now = time.monotonic()
        if now > self._clock:
            self._clock = now
        return self._clock

    def transmit(self) -> None:
        """Move queued writes into the stream, send every datagram that is due, re-arm the timer.

        Replaces aioquic's ``transmit`` to use `_now` as the clock and ``call_later`` for the timer.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            self._cancel_timers()
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._push_pending()
        quic = self._quic
        now = self._now()
        sendto = transport.sendto
        for data, addr in quic.datagrams_to_send(now=now):
            sendto(data, addr)
        timer_at = quic.get_timer()
        if timer_at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if timer_at is not None:
                self._timer = self._loop.call_later(max(0.0, timer_at - now), self._handle_timer)
            self._timer_at = timer_at

    def _handle_timer(self) -> None:
        """aioquic's timer is due: run it, then send what it made due.

        The connection's clock moves forward to the deadline if the loop fired early, so aioquic
        finds its deadline reached instead of re-arming the same timer.
        """
        timer_at = self._timer_at
        self._timer = None
        self._timer_at = None
        if timer_at is not None and timer_at > self._clock:
            self._clock = timer_at
        self._quic.handle_timer(now=self._now())
        self._process_events()
        self._check_resume()
        self.transmit()

    def _close_quic(self, error_code: int = APP_NO_ERROR, reason: str = "") -> None:
        """Send CONNECTION_CLOSE (after anything already queued has been transmitted)."""
        self.closing = True
        self._pending.clear()
        self._quic.close(error_code=error_code, reason_phrase=reason)
        self.transmit()

    def _cancel_timers(self) -> None:
        for handle in (self._flush_handle, self._linger_handle, self._timer):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._linger_handle = self._timer = None
        self._timer_at = None

    # -- receiving ---------------------------------------------------------------------------------

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        """Feed one datagram to the QUIC engine; answer at the end of the loop iteration.

        aioquic transmits after every datagram; deferring to ``call_soon`` lets the ACKs and
        replies caused by all the datagrams read in one iteration share packets.
        """
        if self._transport is None or self._transport.is_closing() or not isinstance(data, bytes):
            return
        self._quic.receive_datagram(data, addr, now=self._now())
        self._process_events()
        self._check_resume()
        self._schedule_flush()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        """Route stream data, resets and termination to the handler."""
        if isinstance(event, events.StreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, events.StreamReset):
            if event.stream_id == STREAM_ID:
                self._peer_finished()
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            self.closing = True
            exc = (
                None
                if event.error_code == APP_NO_ERROR
                else QuicConnectionClosed(event.error_code, event.frame_type, event.reason_phrase)
            )
            self._notify_lost(exc)
            self._on_terminated()

    def _on_stream_data(self, event: events.StreamDataReceived) -> None:
        if event.stream_id != STREAM_ID:
            self._abort(APP_PROTOCOL_ERROR, f"stream {event.stream_id} is not used by {ALPN}")
            return
        if not self._stream_open and not self._open_stream():
            return
        if self._reading_paused or self._inbound:  # keep the order: behind what already waits
            if event.data and not self.closing and not self.lost:
                self._inbound.append(event.data)
            self._inbound_fin = self._inbound_fin or event.end_stream
            return
        if event.data and not self.closing and not self.lost and not self._deliver(event.data):
            return
        if event.end_stream:
            self._peer_finished()

    def _deliver(self, data: bytes) -> bool:
        """Hand stream data to the handler and count it consumed; False if the handler failed."""
        assert self.handler is not None
        if self._window is not None:
            self._window.consumed += len(data)
        try:
            self.handler.data_received(data)
        except Exception as exc:
            self._handler_failed(exc)
            return False
        return True

    def _open_stream(self) -> bool:
        """Bind the handler to the stream (server: make it now). False if that failed."""
        self._stream_open = True
        try:
            if self.handler is None:
                self.handler = self._make_handler()
            self.handler.connection_made(_QuicByteStream(self))
        except Exception as exc:
            self._handler_failed(exc)
            return False
        return True

    def _make_handler(self) -> StreamHandler:
        raise RuntimeError("data arrived before the connection was made")

    def _peer_finished(self) -> None:
        """The peer ended (or reset) its stream: end ours, close the connection, tell the handler."""
        if not self.closing:
            self._send_fin()
        self._close_quic()
        self._notify_lost(None)
        self._after_close()

    def _linger_expired(self) -> None:
        self._linger_handle = None
        if not self.lost:
            self._close_quic()
            self._notify_lost(None)
            self._after_close()

    def _abort(self, error_code: int, reason: str, exc: Exception | None = None) -> None:
        """Close the connection at once with an error; the handler hears ``exc``."""
        log.warning("closing QUIC connection from %s: %s", self.peer, reason)
        self._close_quic(error_code, reason)
        self._notify_lost(exc or QuicConnectionClosed(error_code, None, reason))
        self._after_close()

    def _handler_failed(self, exc: Exception) -> None:
        log.error("QUIC connection handler for %s failed", self.peer, exc_info=exc)
        self._abort(APP_INTERNAL_ERROR, "internal error", exc)

    def _notify_lost(self, exc: Exception | None) -> None:
        """Run ``handler.connection_lost`` if the handler was made and has not heard yet."""
        if self.lost:
            return
        self.lost = True
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None
        self._inbound.clear()
        handler, self.handler = self.handler, None
        if handler is not None and self._stream_open:
            try:
                handler.connection_lost(exc)
            except Exception:
                log.exception("QUIC connection handler for %s failed in connection_lost", self.peer)

    def _after_close(self) -> None:
        """Hook: the connection was closed by this end (clients release their socket)."""

    def _on_terminated(self) -> None:
        """Hook: the QUIC engine finished with the connection."""


# -- server --------------------------------------------------------------------------------------------


class _ServerConnection(_Connection):
    """A server-side connection: its handler comes from the listener's factory on first data.

    Closed if its stream has not opened within the listener's ``stream_timeout`` (from then on the
    handler's own handshake deadline applies).
    """

    def __init__(self, quic: QuicConnection, listener: QuicListener) -> None:
        super().__init__(quic, loopback=listener.loopback)
        self._listener = listener
        listener.connections.add(self)
        self._stream_timer: asyncio.TimerHandle | None = None
        if listener.stream_timeout is not None:
            self._stream_timer = self._loop.call_later(listener.stream_timeout, self._no_stream)

    def _no_stream(self) -> None:
        self._stream_timer = None
        if not self._stream_open and not self.closing:
            log.warning(
                "closing QUIC connection from %s: no stream within %g s of connecting",
                self.peer,
                self._listener.stream_timeout,
            )
            self._close_quic(APP_NO_ERROR, "no stream opened in time")
            self._notify_lost(None)

    def _open_stream(self) -> bool:
        if self._stream_timer is not None:
            self._stream_timer.cancel()
            self._stream_timer = None
        return super()._open_stream()

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        if self.peer == "?":
            self.peer = _format_addr(addr)
        super().datagram_received(data, addr)

    def _make_handler(self) -> StreamHandler:
        return self._listener.factory()

    def _on_terminated(self) -> None:
        self._forget()

    def shutdown(self) -> None:
        """The listener is closing: close the connection now and tell the handler."""
        self._close_quic(APP_NO_ERROR, "server shutting down")
        self._notify_lost(None)
        self._forget()

    def _forget(self) -> None:
        """The connection is over: drop every reference that would keep it alive (timers, aioquic's
        callbacks to it, which close a cycle through the protocol) and leave the listener."""
        self._cancel_timers()
        if self._stream_timer is not None:
            self._stream_timer.cancel()
            self._stream_timer = None
        self._connection_id_issued_handler = _ignore_cid
        self._connection_id_retired_handler = _ignore_cid
        self._connection_terminated_handler = _ignore
        self._listener.connections.discard(self)


def _ignore_cid(cid: bytes) -> None:
    pass


def _ignore() -> None:
    pass


class _ListenerEndpoint(QuicServer):
    """aioquic's QUIC server datagram protocol, telling the listener when its socket is gone and
    dropping the Initial packets of new connections while the listener is full."""

    def __init__(self, listener: QuicListener, configuration: QuicConfiguration) -> None:
        def create_protocol(quic: QuicConnection, **_: Any) -> _ServerConnection:
            return _ServerConnection(quic, listener)

        super().__init__(configuration=configuration, create_protocol=create_protocol)
        self._listener = listener

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        if self._listener.full() and isinstance(data, bytes) and self._opens_connection(data):
            self._listener.refuse()
            return
        super().datagram_received(data, addr)

    def _opens_connection(self, data: bytes) -> bool:
        """Whether ``data`` is an Initial packet for a connection this server does not know."""
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self._configuration.connection_id_length
            )
        except ValueError:
            return False
        return header.packet_type == QuicPacketType.INITIAL and header.destination_cid not in self._protocols

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.socket_closed()


class QuicListener:
    """A QUIC server socket: `close` drops every connection and stops listening.

    Past ``max_connections`` live connections new ones are not accepted (their Initial packets are
    dropped); a connection whose stream has not opened within ``stream_timeout`` seconds is closed.
    """

    def __init__(
        self,
        factory: HandlerFactory,
        *,
        loopback: bool = False,
        max_connections: int | None = None,
        stream_timeout: float | None = None,
    ) -> None:
        self.factory = factory
        #: Bound to a loopback address: every peer is on this machine (see `is_loopback`).
        self.loopback = loopback
        self.max_connections = max_connections
        self.stream_timeout = stream_timeout
        #: Live connections (until their QUIC engine terminates or the listener closes).
        self.connections: set[_ServerConnection] = set()
        #: New connections refused since the listener last became full (0: not refusing).
        self.refused = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = asyncio.get_running_loop().create_future()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port), e.g. to learn the port after binding port 0."""
        assert self._transport is not None
        name = self._transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    def full(self) -> bool:
        """Whether ``max_connections`` connections are live (new ones are refused); logs the end of
        a burst of refusals."""
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            return True
        if self.refused:
            log.info("accepting QUIC connections again (%d were refused at the limit)", self.refused)
            self.refused = 0
        return False

    def refuse(self) -> None:
        """Count one refused connection (logged once per burst, not per connection)."""
        if not self.refused:
            log.warning(
                "refusing new QUIC connections: %d are live, the limit (--max-connections %d)",
                len(self.connections),
                self.max_connections,
            )
        self.refused += 1

    def close(self) -> None:
        """Close every connection (each handler hears ``connection_lost(None)``) and the socket."""
        for conn in list(self.connections):
            conn.shutdown()
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed (after `close`)."""
        await asyncio.shield(self._closed)

    def socket_closed(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


async def serve_quic(
    host: str,
    port: int,
    factory: HandlerFactory,
    *,
    certfile: str,
    keyfile: str,
    max_connections: int | None = None,
    stream_timeout: float | None = None,
) -> QuicListener:
    """Listen for QUIC on UDP ``host:port``; each connection's stream gets a handler from ``factory``.

    ``certfile``/``keyfile`` are PEM files (see `spitfire.server.tls.ensure_certificate`).
    ``max_connections`` and ``stream_timeout``: see `QuicListener` (None: no limit).
    :raises OSError: the address cannot be bound. :raises ValueError: the certificate does not load.
    """
    loopback = is_loopback(host)
    configuration = make_configuration(is_client=False, loopback=loopback)
    configuration.load_cert_chain(certfile, keyfile)
    loop = asyncio.get_running_loop()
    listener = QuicListener(
        factory, loopback=loopback, max_connections=max_connections, stream_timeout=stream_timeout
    )
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ListenerEndpoint(listener, configuration), local_addr=(host, port)
    )
    listener._transport = transport
    return listener


# -- client --------------------------------------------------------------------------------------------


class _ClientConnection(_Connection):
    """The client's connection: owns its UDP socket and keeps the connection alive."""

    def __init__(self, quic: QuicConnection, handler: StreamHandler, peer: str, *, loopback: bool) -> None:
        super().__init__(quic, handler, loopback=loopback)
        self.peer = peer
        self.socket_closed: asyncio.Future[None] = self._loop.create_future()
        #: Resolves when the handshake completes; fails with ConnectionError if the connection ends
        #: first. (Not aioquic's ``wait_connected``: it misses a HandshakeCompleted that arrives
        #: before it is first awaited -- on uvloop that happens to a task started just before.)
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self._keepalive: asyncio.TimerHandle | None = None

    def connect(self, addr: NetworkAddress, transmit: bool = True) -> None:
        """Start the handshake with the server at ``addr`` (on this connection's clock)."""
        self._quic.connect(addr, now=self._now())
        if transmit:
            self.transmit()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        """Resolve `handshake` (or fail it if the connection ended), then route as both ends do."""
        if isinstance(event, events.HandshakeCompleted):
            if not self.handshake.done():
                self.handshake.set_result(None)
        elif isinstance(event, events.ConnectionTerminated):
            self._handshake_failed()
        super().quic_event_received(event)

    def _handshake_failed(self) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("the QUIC connection ended during the handshake"))
            self.handshake.exception()  # retrieved: connect_quic reports the reason itself

    def start(self) -> None:
        """The handshake is done: hand the stream to the handler (its errors propagate)."""
        assert self.handler is not None
        if not self._stream_open:  # (else early server bytes already opened it)
            self._stream_open = True
            self.handler.connection_made(_QuicByteStream(self))
        self._keepalive = self._loop.call_later(KEEPALIVE_INTERVAL, self._send_keepalive)

    def _send_keepalive(self) -> None:
        self._keepalive = None
        if not self.closing and not self.lost:
            self._quic.send_ping(0)
            self.transmit()
            self._keepalive = self._loop.call_later(KEEPALIVE_INTERVAL, self._send_keepalive)

    def _after_close(self) -> None:
        self._release()

    def _on_terminated(self) -> None:
        self._release()

    def _release(self) -> None:
        """Close the UDP socket (any CONNECTION_CLOSE has been sent already)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._cancel_timers()
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """The UDP socket is closed: the connection is over."""
        self.closing = True
        self._handshake_failed()
        self._notify_lost(exc)
        self._cancel_timers()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if not self.socket_closed.done():
            self.socket_closed.set_result(None)


class QuicClientConnection:
    """A client's QUIC connection; the handler got its `ByteStream` before this was returned."""

    def __init__(self, conn: _ClientConnection) -> None:
        self._conn = conn

    @property
    def peer(self) -> str:
        """The server's address as text."""
        return self._conn.peer

    def close(self) -> None:
        """Send what is queued and FIN; the handler hears ``connection_lost`` when the server closes."""
        self._conn.stream_close()

    def abort(self) -> None:
        """Close the connection at once (CONNECTION_CLOSE without waiting for the server)."""
        if not self._conn.lost:
            self._conn._close_quic()
            self._conn._notify_lost(None)
            self._conn._release()

    async def wait_closed(self) -> None:
        """Wait until the connection is over and its UDP socket closed."""
        await asyncio.shield(self._conn.socket_closed)


async def connect_quic(
    host: str,
    port: int,
    handler: StreamHandler,
    *,
    verify: bool = True,
    cafile: str | None = None,
    server_name: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> QuicClientConnection:
    """Connect to a Spitfire QUIC server; ``handler.connection_made`` has run when this returns.

    ``verify`` False accepts any certificate (use only for loopback); else the server's certificate
    must chain to ``cafile`` (default: the system CAs via certifi) and name ``server_name``
    (default ``host``).
    :raises QuicConnectionClosed: the handshake failed (certificate, ALPN), with the reason.
    :raises TimeoutError: no handshake within ``timeout`` seconds.
    :raises OSError: the host does not resolve.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    loopback = is_loopback(str(addr[0]))
    configuration = make_configuration(is_client=True, loopback=loopback)
    configuration.server_name = server_name or host
    configuration.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if cafile is not None:
        configuration.load_verify_locations(cafile)
    quic = QuicConnection(configuration=configuration)
    peer = _format_addr(addr)
    local = ("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0)
    _, protocol = await loop.create_datagram_endpoint(
        lambda: _ClientConnection(quic, handler, peer, loopback=loopback), local_addr=local, family=family
    )
    assert isinstance(protocol, _ClientConnection)
    try:
        protocol.connect(addr)
        await asyncio.wait_for(asyncio.shield(protocol.handshake), timeout)
    except BaseException as exc:
        await _discard(protocol)
        term = protocol.terminated
        if isinstance(exc, ConnectionError) and term is not None:
            raise QuicConnectionClosed(term.error_code, term.frame_type, term.reason_phrase) from None
        raise
    try:
        protocol.start()
    except BaseException:
        await _discard(protocol)
        raise
    return QuicClientConnection(protocol)


async def _discard(protocol: _ClientConnection) -> None:
    """Tear down a connection whose handshake failed (the handler was never made)."""
    protocol.lost = True
    with contextlib.suppress(Exception):
        protocol._close_quic()
    protocol._release()
    await asyncio.shield(protocol.socket_closed)


def _format_addr(addr: Any) -> str:
    """``host:port`` of a socket address (IPv4-mapped IPv6 shown as IPv4)."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0]).removeprefix("::ffff:")
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)


__all__ = [
    "ALPN",
    "QuicClientConnection",
    "QuicConnectionClosed",
    "QuicListener",
    "connect_quic",
    "is_loopback",
    "make_configuration",
    "serve_quic",
]
