"""A blocking TCP connection shared by threads: the sync `Client`'s transport for ``tcp://`` URLs.

No event loop and no helper thread: each calling thread encodes its request and writes it to the
shared socket under a lock, then waits for its answer. Reading is done by the waiting threads
themselves, one at a time (leader/follower): the first waiter that finds nobody reading becomes
the reader, receives every answer that arrives and hands each to its waiter (releasing that
waiter's lock), until its own answer has come; then it passes the reader role to a thread still
waiting, if any. One thread making one call at a time therefore sends and receives on its own
thread with no hand-off at all, and under many threads one ``recv`` serves every answer it holds.

Timeouts: a waiter that is not reading waits on its lock with its deadline. The reader's socket
has a receive timeout (``SO_RCVTIMEO``) of `recv_slice` so that it checks its own deadline at least
that often: a request fails at most `recv_slice` late, as `Connection`'s sweep allows.

An idle connection is read by nobody, so a GOAWAY or the server closing it would only be seen by
the next request after it was sent. A thread that becomes the reader of a connection with nothing
in flight therefore first reads what is already buffered, without waiting: a connection found
gone is replaced before the request is sent on it.

Fork: a child inherits the socket; it must never write, read or shut it down (the parent's
connection would break). `pid` records the process that opened it; the `Client` replaces it in a
child, closing only the child's copy of the descriptor.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
import threading
import time
import weakref

import msgspec

from spitfire.protocol.messages import MessageType, Welcome
from spitfire.protocol.session import ClientSession, ProtocolViolation, Response

from ._connection import EXPIRY_SLACK, MAX_EXPIRY_DELAY, _connection_error, _violation_error
from ._url import Endpoint
from .errors import ConnectionLost, NotConnected, SpitfireError

#: Bytes one ``recv`` asks for: answers to many threads' requests fit in one read.
RECV_SIZE = 256 * 1024


def recv_slice(request_timeout: float) -> float:
    """How long one blocking ``recv`` of the reader lasts before it looks at its deadline."""
    return min(MAX_EXPIRY_DELAY, request_timeout * EXPIRY_SLACK)


class _Waiter:
    """One request's wait: its answer (or error), and a lock its thread sleeps on.

    ``lock`` is held while nobody has signalled the waiter; `BlockingConnection._signal` releases it
    once (``signalled`` says so), when the answer arrives or the reader role passes to this thread.
    """

    __slots__ = ("done", "error", "lock", "response", "signalled")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.signalled = False
        self.done = False
        self.response: Response | None = None
        self.error: SpitfireError | None = None


def _set_socket_timeouts(sock: socket.socket, receive: float, send: float) -> bool:
    """Kernel receive and send timeouts on a blocking socket; False where they cannot be set."""
    try:
        for option, seconds in ((socket.SO_RCVTIMEO, receive), (socket.SO_SNDTIMEO, send)):
            if sys.platform == "win32":
                value = struct.pack("@L", max(1, int(seconds * 1000)))
            else:
                whole = int(seconds)
                value = struct.pack("@ll", whole, int((seconds - whole) * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, option, value)
    except (OSError, AttributeError):
        return False
    return True


class BlockingConnection:
    """One TCP connection whose requests are made by many threads at once. Create with `connect`.

    `call` sends one request and returns its answer frame (ERROR frames included), or None when
    its deadline passed first; see the module docstring for how threads share the reading.
    """

    def __init__(self, sock: socket.socket, session: ClientSession, request_timeout: float) -> None:
        self.session = session
        #: The process that opened the connection (a forked child must not use it).
        self.pid = os.getpid()
        self.request_timeout = request_timeout
        self._sock = sock
        # Dropped unclosed (a Client nobody closed, e.g. an App's): close the descriptor quietly, as
        # the loop-driven client did. A finalizer, not __del__: when a garbage cycle takes the
        # connection with it, the socket's own finalizer (which warns) may otherwise run first.
        finalizer = weakref.finalize(self, sock.close)
        finalizer.atexit = False
        self._slice = recv_slice(request_timeout)
        # Read into one buffer (only the reader uses it): ``recv(256 KiB)`` allocates and shrinks
        # a new bytes object per read, which glibc may serve with mmap + mremap + munmap.
        self._buffer = bytearray(RECV_SIZE)
        self._view = memoryview(self._buffer)
        # Where the kernel cannot time out a blocking recv, the reader selects first.
        self._select_first = not _set_socket_timeouts(sock, self._slice, request_timeout)
        #: Guards the session's request numbering and output, the fields below and every
        #: waiter's flags.
        self._mutex = threading.Lock()
        #: A thread is writing queued frames to the socket (one at a time: frames must not mix).
        self._writing = False
        self._pending: dict[int, _Waiter] = {}
        self._reading = False
        #: The waiter told to take the reader role next (None: nobody was told).
        self._heir: _Waiter | None = None
        self._error: SpitfireError | None = None
        self._sock_closed = False
        #: True after GOAWAY: answers to in-flight requests still arrive; send nothing new.
        self.draining = False
        #: Set by `retire`: closed by the last call that was in flight.
        self._retired = False

    @property
    def welcome(self) -> Welcome:
        assert self.session.welcome is not None
        return self.session.welcome

    @property
    def failed(self) -> bool:
        """The connection is over (lost, refused, or closed by this client)."""
        return self._error is not None

    @property
    def usable(self) -> bool:
        """Open and not told to go away. (Whether it belongs to this process is the caller's to
        check: os.getpid is a system call, too dear for every request; `Client` resets its
        connection in a child from an ``os.register_at_fork`` hook.)"""
        return self._error is None and not self.draining

    # -- requests ---------------------------------------------------------------------------------

    def call(self, message_type: int, message: msgspec.Struct, deadline: float) -> Response | None:
        """Send one request and wait for its answer until ``deadline`` (``time.monotonic``); None
        if it did not come by then (an answer arriving later is dropped).

        :raises Unsent: the request did not leave (the connection was found gone first, or the
            write failed before the whole frame left): always safe to send on another connection.
        :raises ConnectionLost: the connection dropped while the request was in flight.
        """
        waiter = _Waiter()
        reading = self._lead()
        try:
            if reading and not self._pending:
                self._read_buffered()  # an idle connection: see the module docstring
            rid = self._send(message_type, message, waiter)
        except BaseException:
            if reading:
                self._unlead()
            raise
        try:
            return self._wait(waiter, deadline, reading)
        finally:
            with self._mutex:
                self._pending.pop(rid, None)
                # Leaving without reading (timed out, interrupted) after being told to read next:
                # tell another waiter, or nobody would read their answers.
                if not self._reading and (self._heir is None or self._heir is waiter):
                    self._promote(waiter)
            if self._retired and not self._pending:
                self.close()

    def _send(self, message_type: int, message: msgspec.Struct, waiter: _Waiter) -> int:
        """Queue the request's frame and, unless another thread is writing (it then sends this
        frame too, right after its own), write every queued frame. Threads woken by one read
        send their next requests while the first write is in the kernel: their frames leave
        together, reach the server in one read and share one group commit."""
        session = self.session
        with self._mutex:
            if self._error is not None or self.draining:
                raise Unsent(self._error or ConnectionLost("the server asked this client to go away"))
            rid = session.request(message_type, message)
            self._pending[rid] = waiter
            if self._writing:
                return rid
            self._writing = True
            data = session.data_to_send()
        first, partial = True, False
        while True:
            error: SpitfireError | None = None
            try:
                self._sock.sendall(data)
            except BlockingIOError:
                # SO_SNDTIMEO: the server read nothing for a whole request timeout. Part of the
                # frames may have left, so they may run, and the stream cannot go on.
                error = ConnectionLost(f"the server read nothing for {self.request_timeout} s")
                partial = True
            except OSError as exc:
                error = ConnectionLost(f"the connection to the server was lost: {exc}")
            with self._mutex:
                if error is None and self._error is None:
                    data = session.data_to_send()
                    if data:
                        first = False
                        continue
                self._writing = False
            break
        if error is not None:
            self._fail(error)
            if first and not partial:
                # This thread's frame did not leave whole, so the server never runs it. (Frames of
                # other threads written with it fail as lost in flight: the cautious answer.)
                raise Unsent(error)
        elif self.failed:
            self._close_socket()  # failed while this thread wrote: the descriptor is free now
        return rid

    def _wait(self, waiter: _Waiter, deadline: float, reading: bool) -> Response | None:
        while True:
            if reading:
                try:
                    self._read_until(waiter, deadline)
                finally:
                    self._unlead()
            elif not waiter.done:
                left = deadline - time.monotonic()
                woken = left > 0 and waiter.lock.acquire(True, left)
                with self._mutex:
                    if woken:
                        waiter.signalled = False  # the lock is held again: it can be signalled anew
                    elif not waiter.done:
                        return None
            if waiter.done:
                if waiter.error is not None:
                    raise waiter.error
                return waiter.response
            if time.monotonic() >= deadline:
                return None
            reading = self._lead()

    # -- the reader role --------------------------------------------------------------------------

    def _lead(self) -> bool:
        """Become the reader if nobody is; True if this thread now is."""
        with self._mutex:
            if self._reading or self._sock_closed:
                return False
            self._reading = True
            self._heir = None
            return True

    def _unlead(self) -> None:
        """Stop reading; tell one thread still waiting to read in turn."""
        with self._mutex:
            self._reading = False
            self._promote(None)
            close = self._error is not None and not self._sock_closed
        if close:
            self._close_socket()

    def _promote(self, leaving: _Waiter | None) -> None:
        # With the mutex held: wake the oldest waiter still waiting (its answer is due first).
        for waiter in self._pending.values():
            if not waiter.done and waiter is not leaving:
                self._heir = waiter
                self._signal(waiter)
                return
        self._heir = None

    def _signal(self, waiter: _Waiter) -> None:
        # With the mutex held.
        if not waiter.signalled:
            waiter.signalled = True
            waiter.lock.release()

    def _read_until(self, waiter: _Waiter, deadline: float) -> None:
        sock = self._sock
        while not waiter.done:
            if time.monotonic() >= deadline:
                return
            try:
                if self._select_first and not select.select([sock], [], [], self._slice)[0]:
                    continue
                n = sock.recv_into(self._buffer)
            except BlockingIOError:
                continue  # SO_RCVTIMEO: look at the deadline, then read again
            except OSError as exc:
                self._fail(ConnectionLost(f"the connection to the server was lost: {exc}"))
                return
            if not n:
                self._fail(ConnectionLost("the server closed the connection"))
                return
            self._received(self._view[:n])

    def _read_buffered(self) -> None:
        """Read, without waiting, whatever the server sent while nobody was reading."""
        while self._error is None:
            try:
                n = self._sock.recv_into(self._buffer, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                self._fail(ConnectionLost(f"the connection to the server was lost: {exc}"))
                return
            if not n:
                self._fail(ConnectionLost("the server closed the connection"))
                return
            self._received(self._view[:n])

    def _received(self, data: memoryview) -> None:
        try:
            responses = self.session.receive_data(data)
        except ProtocolViolation as exc:
            self._fail(_violation_error(exc))
            return
        self.dispatch(responses)

    def dispatch(self, responses: list[Response]) -> None:
        """Hand answers to their waiters; act on pushes (GOAWAY, ERROR about the connection)."""
        failure: SpitfireError | None = None
        with self._mutex:
            pending = self._pending
            for response in responses:
                rid = response.request_id
                if rid == 0:
                    if response.type is MessageType.ERROR:
                        failure = _connection_error(response.message)
                    elif response.type is MessageType.GOAWAY:
                        self.draining = True
                    continue  # DELIVER and CANCEL_JOBS are for workers: a plain client gets none
                waiter = pending.pop(rid, None)
                if waiter is not None:
                    waiter.response = response
                    waiter.done = True
                    self._signal(waiter)
            if self.draining and not pending and failure is None:
                failure = ConnectionLost("the server asked this client to go away (it is shutting down)")
        if failure is not None:
            self._fail(failure)

    # -- closing ----------------------------------------------------------------------------------

    def _fail(self, error: SpitfireError) -> None:
        """The connection is over: every request in flight fails with ``error``."""
        with self._mutex:
            if self._error is None:
                self._error = error
            pending, self._pending = self._pending, {}
            for waiter in pending.values():
                waiter.error = error
                waiter.done = True
                self._signal(waiter)
            busy = self._reading or self._writing
        if self.pid == os.getpid():
            # Wakes a reader blocked in recv and a writer blocked in sendall; never in a forked
            # child, where it would break the parent's connection.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if not busy:
            self._close_socket()

    def _close_socket(self) -> None:
        # Not while a thread still reads or writes it: its descriptor number could be reused. The
        # last of them to stop closes it.
        with self._mutex:
            if self._sock_closed or self._reading or self._writing:
                return
            self._sock_closed = True
        self._sock.close()

    def retire(self) -> None:
        """Send nothing new here (the server does not lead: `usable` is False from now on); close
        once the calls in flight have their answers, so that none of them is cut."""
        self.draining = True
        self._retired = True
        with self._mutex:
            idle = not self._pending
        if idle:
            self.close()

    def close(self) -> None:
        """Close the connection; requests in flight fail with ConnectionLost. Idempotent."""
        self._fail(ConnectionLost("the connection was closed by this client"))

    def abandon(self) -> None:
        """In a forked child: forget the parent's connection, closing only this process's copy of
        its descriptor (nothing is sent: the parent's connection is untouched). The locks may have
        been held by parent threads that do not exist here, so none is taken."""
        self._error = self._error or ConnectionLost("the connection belongs to the parent process")
        self._pending = {}
        self._sock_closed = True
        self._sock.close()


class Unsent(ConnectionLost):
    """A request did not leave: the connection was found gone first. Safe to send again."""

    def __init__(self, error: SpitfireError) -> None:
        super().__init__(error.message)
        self.error = error


def connect(
    endpoint: Endpoint, *, token: str | None, client: str, timeout: float, request_timeout: float
) -> BlockingConnection:
    """Connect and complete the handshake within ``timeout`` seconds.

    :raises NotConnected: the server cannot be reached.
    :raises Unauthorized, UnsupportedVersion: the server refused the handshake.
    """
    session = ClientSession(client=client, token=token)
    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(session.data_to_send())  # the Hello
        early: list[Response] = []
        give_up = time.monotonic() + timeout
        while session.welcome is None:
            sock.settimeout(max(0.001, give_up - time.monotonic()))
            data = sock.recv(RECV_SIZE)
            if not data:
                raise ConnectionLost("the server closed the connection during the handshake")
            early += session.receive_data(data)
        sock.settimeout(None)  # blocking again: the reader's waits are the kernel's (SO_RCVTIMEO)
    except ProtocolViolation as exc:
        _close(sock)
        raise _violation_error(exc) from None
    except ConnectionLost as exc:
        _close(sock)
        raise NotConnected(f"cannot connect to {endpoint.url}: {exc.message}") from None
    except OSError as exc:  # TimeoutError included
        _close(sock)
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise NotConnected(
            f"cannot connect to {endpoint.url}: {reason}; is spitfire-server running there? "
            "(set the address with url=... or SPITFIRE_URL)"
        ) from None
    conn = BlockingConnection(sock, session, request_timeout)
    if early:
        conn.dispatch(early)
    return conn


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()
