"""`Client`: the synchronous client, thread-safe, for scripts, web apps and notebooks.

For ``tcp://`` URLs (the default) it talks to the server over one blocking socket shared by every
thread that uses the client (`_blocking.BlockingConnection`): the calling thread writes its request
and reads the answers itself, with no event loop and no hand-off to another thread, so a call costs
one round trip plus the encoding. Calls from many threads at once are pipelined on that connection.

For ``quic://`` URLs it drives an `AsyncClient` on a private event loop, which runs in one daemon
thread shared by every `Client` of the process (`run_sync`); that thread is also how ``@app.job``
``fn.enqueue`` reaches a quic:// server and how `Client.async_client` is driven from sync code.
Both work in any program: scripts, threads, web frameworks, and Jupyter notebooks (whose own
loop is already running in the main thread), and in a child process after ``fork``.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import weakref
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar, Unpack

import msgspec

from spitfire.protocol.messages import (
    DeleteQueue,
    JobDefinitionSpec,
    JobRef,
    ListJobDefinitions,
    ListWorkers,
    MessageType,
    Ping,
    QueueRef,
    RegisterJobs,
    Wait,
)

from . import _admin
from . import tracing as _tracing
from ._blocking import BlockingConnection, Unsent, connect
from ._connection import client_name
from ._servers import FAILOVER_BACKOFF_MAX, FAILOVER_CONNECT_TIMEOUT
from .client import (
    _NOT_LEADER,
    BACKOFF_FACTOR,
    BACKOFF_FIRST,
    BACKOFF_MAX,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    MAX_FAILOVER_RESENDS,
    MAX_RESENDS,
    AsyncClient,
    BatchOptions,
    EnqueueOptions,
    encode_payload,
    enqueue_many_message,
    enqueue_message,
    lost_in_flight,
    outcome,
    timeout_error,
    wait_chunk,
)
from .errors import (
    ConnectionLost,
    NotConnected,
    TLSVerificationFailed,
    Unauthorized,
    UnsupportedVersion,
    error_from_frame,
)
from .models import Job, JobDefinition, JobId, JobPage, PurgeResult, Stats, WorkerInfo
from .schedules import Schedules

__all__ = ["Client", "run_sync"]

T = TypeVar("T")


class _LoopThread:
    """One event loop in a daemon thread, started on first use and again after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child inherits the loop object but not the thread running it.
            if self._loop is None or self._pid != os.getpid() or not self._alive():
                self._start()
            assert self._loop is not None
            return self._loop

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="spitfire-client-loop", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread, self._pid = loop, thread, os.getpid()

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread


_LOOP = _LoopThread()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the shared client loop and wait for its result (used by Client and App)."""
    if _LOOP.in_loop_thread():
        coro.close()
        raise RuntimeError(
            "a synchronous spitfire call was made from the client's own event loop thread; "
            "use AsyncClient (await) there instead"
        )
    fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, _LOOP.loop())
    return fut.result()


#: Every live Client, so that a forked child can reset their locks and connections at once.
_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child: a lock another parent thread held stays held
    # forever, and the parent's socket must not be used here. Each client starts afresh.
    for client in list(_CLIENTS):
        client._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """A synchronous client of one spitfire-server (or a cluster): the methods of `AsyncClient`,
    without await.

    ``url`` (one address or a cluster's several), ``auth_token``, ``timeout``, ``connect_timeout``,
    ``tls_ca`` and ``tracing`` are as in `AsyncClient`, and so are reconnection (with backoff, for up
    to ``connect_timeout``), request timeouts (`RequestTimeout` after ``timeout`` seconds without an
    answer), which requests are resent after a dropped connection, and following a cluster's leader.
    Thread-safe: share one `Client` between threads; their requests are pipelined on one connection.
    After ``os.fork`` the child's first call opens its own connection (the parent's is left untouched).

    Use it as ``with Client(...) as client:`` or call `close`.
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        auth_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        tls_ca: str | None = None,
        tracing: bool = True,
    ) -> None:
        # The AsyncClient parses and checks the arguments; quic:// calls go through it.
        self._async = AsyncClient(
            url, auth_token=auth_token, timeout=timeout, connect_timeout=connect_timeout, tls_ca=tls_ca,
            tracing=False,  # this client traces its own calls, in the caller's thread and context
        )  # fmt: skip
        #: Enqueues run in a PRODUCER span and carry its trace context (spitfire.tracing).
        self.tracing = tracing and _tracing.AVAILABLE
        #: True: every call goes through the AsyncClient on the loop thread (quic://).
        self._bridge = self._async.endpoint.scheme != "tcp"
        self.timeout = timeout
        self._conn: BlockingConnection | None = None
        self._dial_lock = threading.Lock()
        self._closed = False
        self._schedules = Schedules(self)
        _CLIENTS.add(self)

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def async_client(self) -> AsyncClient:
        """An AsyncClient with this client's settings, living on the private loop thread: drive it
        with `run_sync`. For quic:// URLs it is the one this client's calls use; for tcp:// it has
        a connection of its own, opened on its first use."""
        return self._async

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    @property
    def schedules(self) -> Schedules:
        """Recurring schedules kept by the server: ``client.schedules.add(...)``, ``put``, ``get``,
        ``list``, ``remove``, ``pause``, ``resume``, ``trigger`` (see `Schedules`)."""
        return self._schedules

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of `async_client` on the private loop thread (quic:// calls)."""
        return run_sync(coro)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- connection -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect now instead of on first use (see `AsyncClient.connect`)."""
        if self._bridge:
            run_sync(self._async.connect())
        else:
            self._connection()

    def close(self) -> None:
        """Close the connection; calls still in flight fail with ConnectionLost. Idempotent."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if self._bridge or self._async._conn is not None:
            run_sync(self._async.close())
        else:
            self._async._closed = True  # never used: no need to start the loop thread to close it

    def _forked(self) -> None:
        self._dial_lock = threading.Lock()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abandon()

    def _connection(self) -> BlockingConnection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        with self._dial_lock:
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            if self._closed:
                raise NotConnected("this client is closed; create a new one")
            # A connection told to go away keeps serving the answers still due on it, then closes.
            self._conn = conn = self._dial()
            return conn

    def _dial(self) -> BlockingConnection:
        """Connect, retrying with exponential backoff for up to ``connect_timeout`` seconds (every
        address in turn on each try, when there are several)."""
        a = self._async
        deadline = time.monotonic() + a.connect_timeout
        wait = BACKOFF_FIRST
        longest = FAILOVER_BACKOFF_MAX if a.servers.multi else BACKOFF_MAX
        while True:
            left = deadline - time.monotonic()
            try:
                return self._connect_any(max(0.1, min(left, self.timeout)))
            except (Unauthorized, UnsupportedVersion, TLSVerificationFailed):
                raise
            except NotConnected:
                if time.monotonic() + wait > deadline:
                    raise
            # Jitter spreads reconnects of many clients after a server restart.
            time.sleep(wait * random.uniform(0.8, 1.2))
            wait = min(longest, wait * BACKOFF_FACTOR)

    def _connect_any(self, timeout: float) -> BlockingConnection:
        """One attempt to each address in turn (see `AsyncClient.open_any`)."""
        from . import __version__

        a = self._async
        servers = a.servers
        if servers.multi:
            timeout = min(timeout, FAILOVER_CONNECT_TIMEOUT)
        failed: list[str] = []
        for endpoint in servers.order():
            try:
                conn = connect(
                    endpoint,
                    token=a.auth_token,
                    client=client_name(__version__),
                    timeout=timeout,
                    request_timeout=self.timeout,
                )
            except NotConnected as exc:
                if not servers.multi:
                    raise
                failed.append(exc.message)
                continue
            servers.connected(endpoint)
            return conn
        raise NotConnected(f"cannot connect to any of {servers.url}: {'; '.join(failed)}")

    def _follow(self, conn: BlockingConnection, leader: str | None, hops: int, wait: float) -> float:
        """`AsyncClient.follow`, blocking."""
        if not conn.draining:
            self._async.servers.follow(leader)
            conn.retire()
        if leader is None or hops > 1:
            time.sleep(wait * random.uniform(0.8, 1.2))
            return min(FAILOVER_BACKOFF_MAX, wait * BACKOFF_FACTOR)
        return wait

    def _call(
        self,
        message_type: MessageType,
        message: msgspec.Struct,
        *,
        resend: bool = False,
        job_id: str | None = None,
        queue: str | None = None,
        schedule: str | None = None,
        extra: float = 0.0,
    ) -> Any:
        """Send one request and return the answer's body; raise the mapped error for ERROR.

        ``extra`` seconds are added to the request's timeout (WAIT: the server answers that late).
        """
        resends = unsent = hops = 0
        timeout = self.timeout + extra
        multi = self._async.servers.multi
        max_resends = MAX_FAILOVER_RESENDS if multi else MAX_RESENDS
        failover: float | None = None  # as in `AsyncClient._call`
        wait = BACKOFF_FIRST
        while True:
            conn = self._connection()
            try:
                response = conn.call(message_type, message, time.monotonic() + timeout)
            except Unsent as exc:
                # It never left: always safe on the next connection, but not forever.
                unsent += 1
                if unsent > max_resends or self._closed:
                    raise ConnectionLost(f"{exc.message}; {message_type.name} was not sent") from None
                continue
            except ConnectionLost as exc:
                if resend and resends < max_resends and not self._closed:
                    resends += 1
                    continue
                raise lost_in_flight(exc, message_type) from None
            if response is None:
                raise timeout_error(message_type, self.url, timeout)
            if response.type is MessageType.ERROR:
                error = response.message
                if multi and error.code == _NOT_LEADER and not self._closed:
                    now = time.monotonic()
                    failover = failover or now + self._async.connect_timeout
                    if now < failover:
                        hops += 1
                        wait = self._follow(conn, error.field, hops, wait)
                        continue
                raise error_from_frame(error, job_id=job_id, queue=queue, schedule=schedule)
            return response.message

    def _max_payload(self) -> int | None:
        conn = self._conn
        return None if conn is None else conn.welcome.max_payload

    # -- jobs -------------------------------------------------------------------------------------

    def enqueue(self, queue: str, name: str, payload: Any = None, **options: Unpack[EnqueueOptions]) -> JobId:
        """Add a job; returns its id once durable. See `AsyncClient.enqueue`.

        The id is a ``str`` (a `JobId`) that also carries ``created`` and ``wait()`` (see `wait`).
        """
        return self.enqueue_raw(queue, name, encode_payload(payload), **options)

    def enqueue_raw(self, queue: str, name: str, data: bytes, **options: Unpack[EnqueueOptions]) -> JobId:
        """`enqueue` with a payload that is already msgpack bytes. See `AsyncClient.enqueue_raw`."""
        if self.tracing and _tracing.configured():
            return self._enqueue_traced(queue, name, data, options)
        if self._bridge:
            got = run_sync(self._async.enqueue_raw(queue, name, data, **options))
            return JobId(got, got.created, self.wait)
        message, resend = enqueue_message(
            queue, name, data, options, self._max_payload(), self._async._token()
        )
        reply = self._call(MessageType.ENQUEUE, message, resend=resend, queue=queue)
        return JobId(reply.job_id, reply.created, self.wait)

    def _enqueue_traced(self, queue: str, name: str, data: bytes, options: EnqueueOptions) -> JobId:
        e = self._async.endpoint
        send = _tracing.start_send(queue, options.get("headers"), e.host, e.port)
        try:
            traced: EnqueueOptions = {**options, "headers": send.headers}
            if self._bridge:  # its AsyncClient does not trace: this span is the one
                got = run_sync(self._async.enqueue_raw(queue, name, data, **traced))
                job_id, created = str(got), got.created
            else:
                token = self._async._token()
                message, resend = enqueue_message(queue, name, data, traced, self._max_payload(), token)
                reply = self._call(MessageType.ENQUEUE, message, resend=resend, queue=queue)
                job_id, created = reply.job_id, reply.created
        except BaseException as exc:
            send.failed(exc)
            raise
        send.done(job_id)
        return JobId(job_id, created, self.wait)

    def enqueue_many_raw(
        self, queue: str, name: str, payloads: Sequence[bytes], **options: Unpack[BatchOptions]
    ) -> list[str]:
        """`enqueue_many` with payloads that are already msgpack bytes. See `AsyncClient.enqueue_many_raw`."""
        return self._enqueue_many(queue, name, payloads, options, raw=True)

    def _enqueue_many(
        self, queue: str, name: str, payloads: Sequence[Any], options: BatchOptions, *, raw: bool
    ) -> list[str]:
        send = None
        if self.tracing and _tracing.configured():
            payloads = list(payloads)  # counted for the span (any iterable works untraced too)
            if payloads:
                e = self._async.endpoint
                send = _tracing.start_send(queue, options.get("headers"), e.host, e.port, len(payloads))
                options = {**options, "headers": send.headers}
        try:
            if self._bridge:
                if raw:
                    ids = run_sync(self._async.enqueue_many_raw(queue, name, payloads, **options))
                else:
                    ids = run_sync(self._async.enqueue_many(queue, name, payloads, **options))
            else:
                limit, token = self._max_payload(), self._async._token()
                built = enqueue_many_message(queue, name, payloads, options, limit, raw=raw, token=token)
                if built is None:
                    return []
                message, resend = built
                ids = list(self._call(MessageType.ENQUEUE_MANY, message, resend=resend, queue=queue).job_ids)
        except BaseException as exc:
            if send is not None:
                send.failed(exc)
            raise
        if send is not None:
            send.done()
        return ids

    def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait until the job finishes; returns its result or raises `JobFailed`, `JobCancelled` or
        `WaitTimeout` (each carrying ``.job``). Pushed by the server, not polled. See `AsyncClient.wait`."""
        return outcome(self.wait_job(job_id, timeout), timeout)

    def wait_job(self, job_id: str, timeout: float | None = None) -> Job:
        """`wait`, returning the job's record (finished, or as it is at the timeout). See
        `AsyncClient.wait_job`."""
        if self._bridge:
            return run_sync(self._async.wait_job(job_id, timeout))
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be at least 0 seconds (or None: no limit)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = wait_chunk(deadline)
            reply = self._call(MessageType.WAIT, Wait(job_id, chunk), resend=True, job_id=job_id, extra=chunk)
            job = Job.from_info(reply.job)
            if job.finished or chunk == 0 or (deadline is not None and time.monotonic() >= deadline):
                return job

    def enqueue_many(
        self, queue: str, name: str, payloads: Sequence[Any], **options: Unpack[BatchOptions]
    ) -> list[str]:
        """Add one job per payload in one request; returns their ids. See `AsyncClient.enqueue_many`."""
        return self._enqueue_many(queue, name, payloads, options, raw=False)

    def get(self, job_id: str) -> Job:
        """The job's record; `JobNotFound` if unknown. See `AsyncClient.get`."""
        if self._bridge:
            return run_sync(self._async.get(job_id))
        return Job.from_info(self._call(MessageType.GET, JobRef(job_id), resend=True, job_id=job_id).job)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job. See `AsyncClient.cancel`."""
        if self._bridge:
            return run_sync(self._async.cancel(job_id))
        return Job.from_info(self._call(MessageType.CANCEL, JobRef(job_id), job_id=job_id).job)

    def retry(self, job_id: str) -> Job:
        """Run a dead or cancelled job again. See `AsyncClient.retry`."""
        if self._bridge:
            return run_sync(self._async.retry(job_id))
        return Job.from_info(self._call(MessageType.RETRY, JobRef(job_id), job_id=job_id).job)

    def delete(self, job_id: str) -> Job:
        """Delete a job. See `AsyncClient.delete`."""
        if self._bridge:
            return run_sync(self._async.delete(job_id))
        return Job.from_info(self._call(MessageType.DELETE, JobRef(job_id), job_id=job_id).job)

    def stats(self, queue: str | None = None) -> Stats:
        """Jobs per state per queue. See `AsyncClient.stats`."""
        if self._bridge:
            return run_sync(self._async.stats(queue))
        return Stats.from_info(self._call(MessageType.STATS, QueueRef(queue), resend=True, queue=queue).stats)

    def pause(self, queue: str) -> None:
        """Stop delivering the queue's jobs. See `AsyncClient.pause`."""
        if self._bridge:
            return run_sync(self._async.pause(queue))
        self._call(MessageType.PAUSE, QueueRef(queue), resend=True, queue=queue)

    def resume(self, queue: str) -> None:
        """Deliver the queue's jobs again. See `AsyncClient.resume`."""
        if self._bridge:
            return run_sync(self._async.resume(queue))
        self._call(MessageType.RESUME, QueueRef(queue), resend=True, queue=queue)

    def delete_queue(self, queue: str, *, force: bool = False) -> None:
        """Delete a queue and its jobs (pending ones only with ``force``). See
        `AsyncClient.delete_queue`."""
        if self._bridge:
            return run_sync(self._async.delete_queue(queue, force=force))
        self._call(MessageType.DELETE_QUEUE, DeleteQueue(queue, force), queue=queue)

    def list_jobs(
        self,
        queue: str | None = None,
        *,
        states: str | Sequence[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> JobPage:
        """A page of jobs, newest first. See `AsyncClient.list_jobs`."""
        if self._bridge:
            return run_sync(
                self._async.list_jobs(
                    queue, states=states, limit=limit, cursor=cursor, newest_first=newest_first
                )
            )
        message = _admin.list_jobs_request(queue, states, limit, cursor, newest_first)
        return JobPage.from_list(self._call(MessageType.LIST_JOBS, message, resend=True))

    def purge(self, queue: str, *, states: str | Sequence[str]) -> PurgeResult:
        """Delete every job of a queue in the given states. See `AsyncClient.purge`."""
        if self._bridge:
            return run_sync(self._async.purge(queue, states=states))
        reply = self._call(MessageType.PURGE, _admin.purge_request(queue, states), queue=queue)
        return PurgeResult(reply.matched, reply.deleted, reply.failed)

    def set_durability(self, queue: str, mode: str) -> None:
        """Set a queue's durability mode. See `AsyncClient.set_durability`."""
        if self._bridge:
            return run_sync(self._async.set_durability(queue, mode))
        message = _admin.durability_request(queue, mode)
        self._call(MessageType.SET_DURABILITY, message, resend=True, queue=queue)

    def workers(self) -> list[WorkerInfo]:
        """The workers subscribed over the binary protocol. See `AsyncClient.workers`."""
        if self._bridge:
            return run_sync(self._async.workers())
        reply = self._call(MessageType.LIST_WORKERS, ListWorkers(), resend=True)
        return [WorkerInfo.from_info(w) for w in reply.workers]

    def job_definitions(self) -> list[JobDefinition]:
        """Every job definition the server holds. See `AsyncClient.job_definitions`."""
        if self._bridge:
            return run_sync(self._async.job_definitions())
        reply = self._call(MessageType.LIST_JOB_DEFINITIONS, ListJobDefinitions(), resend=True)
        return [JobDefinition.from_info(d) for d in reply.definitions]

    def register_job_definitions(self, definitions: Sequence[JobDefinitionSpec]) -> None:
        """Create or replace the server's definitions of these jobs. See
        `AsyncClient.register_job_definitions`."""
        if self._bridge:
            return run_sync(self._async.register_job_definitions(definitions))
        self._call(MessageType.REGISTER_JOBS, RegisterJobs(list(definitions)), resend=True)
        return None

    def ping(self) -> float:
        """Round trip to the server in seconds."""
        if self._bridge:
            return run_sync(self._async.ping())
        started = time.perf_counter()
        self._call(MessageType.PING, Ping(), resend=True)
        return time.perf_counter() - started
