"""`AsyncClient`: enqueue and manage jobs from asyncio code over one pipelined connection."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import msgspec

from spitfire.protocol.messages import (
    Backoff,
    DeleteQueue,
    Enqueue,
    EnqueueMany,
    ErrorCode,
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
from ._coalesce import Coalescer
from ._connection import Connection, PushHandler, client_name, open_connection
from ._servers import FAILOVER_BACKOFF_MAX, FAILOVER_CONNECT_TIMEOUT, Servers, new_token
from ._url import Endpoint, parse_urls
from .errors import (
    ConnectionLost,
    JobCancelled,
    JobFailed,
    NotConnected,
    RequestTimeout,
    TLSVerificationFailed,
    TooLarge,
    Unauthorized,
    UnsupportedVersion,
    WaitTimeout,
    error_from_frame,
)
from .models import AsyncJobId, Job, JobDefinition, JobPage, PurgeResult, Stats, WorkerInfo, enc_hook

if TYPE_CHECKING:
    from .schedules import AsyncSchedules

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "BatchOptions",
    "Delay",
    "EnqueueOptions",
    "JobOptions",
    "RunAt",
    "encode_payload",
    "outcome",
]

#: Seconds a request may wait for its answer by default.
DEFAULT_TIMEOUT = 30.0
#: Seconds the client keeps trying to (re)connect before a request fails with NotConnected.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Reconnect backoff: first wait, growth factor and longest wait, in seconds.
BACKOFF_FIRST, BACKOFF_FACTOR, BACKOFF_MAX = 0.05, 2.0, 2.0
#: How often a request that is safe to resend is resent after the connection drops under it.
MAX_RESENDS = 3
#: ... with several addresses (a cluster: a leader change may cut it more than once).
MAX_FAILOVER_RESENDS = 10
#: Longest WAIT one request asks the server for; `wait` asks again until its own timeout.
WAIT_CHUNK = 300.0

#: A delay: seconds, or a timedelta.
Delay = float | int | timedelta
#: A point in time: epoch seconds, or a datetime (a naive one is local time).
RunAt = float | int | datetime

_encode = msgspec.msgpack.Encoder(enc_hook=enc_hook).encode
_NOT_LEADER = ErrorCode.NOT_LEADER.value


class JobOptions(TypedDict, total=False):
    """Options of a job, each optional (see `AsyncClient.enqueue` for their meaning)."""

    priority: int
    delay: Delay | None
    run_at: RunAt | None
    max_attempts: int | None
    backoff: Backoff | Sequence[float] | None
    timeout: Delay | None
    headers: Mapping[str, str] | None


class EnqueueOptions(JobOptions, total=False):
    """Options of one job: `JobOptions` and its idempotency key."""

    idempotency_key: str | None


class BatchOptions(JobOptions, total=False):
    """Options of a batch of jobs: `JobOptions` and one idempotency key (or None) per payload."""

    idempotency_keys: Sequence[str | None] | None


def check_options(options: Mapping[str, object], allowed: type) -> None:
    """Refuse keyword arguments the options type does not know (a typo must not pass silently)."""
    unknown = set(options).difference(allowed.__annotations__, JobOptions.__annotations__)
    if unknown:
        known = ", ".join(sorted({*allowed.__annotations__, *JobOptions.__annotations__}))
        raise TypeError(f"unexpected option(s) {', '.join(sorted(unknown))}; the options are {known}")


def _wire_options(
    o: JobOptions,
) -> tuple[int, float | None, float | None, int | None, Backoff | None, float | None]:
    """priority, delay, run_at, max_attempts, backoff and timeout as the wire carries them."""
    return (
        o.get("priority", 0),
        _seconds(o.get("delay"), "delay"),
        _epoch(o.get("run_at")),
        o.get("max_attempts"),
        wire_backoff(o.get("backoff")),
        _seconds(o.get("timeout"), "timeout"),
    )


def wire_backoff(backoff: Backoff | Sequence[float] | None) -> Backoff | None:
    """A `Backoff`, or a list of retry delays in seconds (``[1, 5, 30, 300]``: kind "delays")."""
    if backoff is None or isinstance(backoff, Backoff):
        return backoff
    if isinstance(backoff, (str, bytes)) or not isinstance(backoff, Sequence):
        raise TypeError("backoff: give a spitfire.Backoff or a list of delays in seconds, e.g. [1, 5, 30]")
    return Backoff.of_delays(list(backoff))


def encode_payload(payload: Any) -> bytes:
    """msgpack bytes of any msgpack-able object (dicts, lists, str, numbers, bytes, datetimes,
    dataclasses, msgspec Structs...).

    :raises TypeError: the object cannot be encoded.
    """
    try:
        return _encode(payload)
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise TypeError(
            f"the payload cannot be encoded as msgpack: {exc}; pass dicts, lists, strings, numbers, "
            "bytes, datetimes, dataclasses or msgspec Structs"
        ) from None


def encode_payloads(payloads: Iterable[Any]) -> list[bytes]:
    """`encode_payload` of each payload, in order (a batch's).

    :raises TypeError: a payload cannot be encoded (the first such one, as `encode_payload` says).
    """
    items = payloads if isinstance(payloads, list | tuple) else list(payloads)
    try:
        return list(map(_encode, items))  # one C-level pass: the common case of a batch
    except (TypeError, OverflowError, msgspec.EncodeError):
        return [encode_payload(p) for p in items]  # raises for the first payload that fails


def _seconds(value: Delay | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be seconds (a number) or a timedelta, not {type(value).__name__}")
    return float(value)


def _epoch(value: RunAt | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"run_at must be epoch seconds or a datetime, not {type(value).__name__}")
    return float(value)


def _headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if headers is None else dict(headers)


def wait_chunk(deadline: float | None) -> float:
    """The timeout of the next WAIT request of a `wait` ending at ``deadline`` (monotonic; None:
    never)."""
    if deadline is None:
        return WAIT_CHUNK
    return max(0.0, min(WAIT_CHUNK, deadline - time.monotonic()))


def outcome(job: Job, timeout: float | None) -> Any:
    """The result of a finished job, or the error `wait` raises for it.

    :raises JobFailed: dead. :raises JobCancelled: cancelled. :raises WaitTimeout: not finished.
    """
    if job.state == "succeeded":
        return job.result
    if job.state == "dead":
        last = job.errors[-1] if job.errors else None
        why = f" after {last.attempt} attempt(s): {last.error}" if last is not None else ""
        raise JobFailed(f"job {job.id} ({job.name}) failed{why}", job)
    if job.state == "cancelled":
        raise JobCancelled(f"job {job.id} ({job.name}) was cancelled", job)
    raise WaitTimeout(
        f"job {job.id} ({job.name}) is still {job.state} after {timeout:g} s; it goes on (wait again, "
        "or give a longer timeout)",
        job,
    )


def check_sizes(payloads: Sequence[bytes], limit: int | None) -> None:
    """Refuse a payload over the server's ``limit`` (None: not connected yet, the server checks).

    :raises TooLarge: names the payload (``payloads[i]`` in a batch) and the limit.
    """
    if limit is None or not payloads or max(map(len, payloads)) <= limit:
        return  # the common case, checked at C speed; the loop below names the first one over
    for i, p in enumerate(payloads):
        if len(p) > limit:
            where = "payload" if len(payloads) == 1 else f"payloads[{i}]"
            raise TooLarge(
                f"{where} is {len(p)} bytes, over the server's limit of {limit} bytes; store big "
                "data elsewhere and enqueue a reference to it",
                where,
            )


def enqueue_message(
    queue: str, name: str, data: bytes, options: EnqueueOptions, limit: int | None, token: bytes | None = None
) -> tuple[Enqueue, bool]:
    """The ENQUEUE request of one job whose payload is ``data``, and whether it is safe to resend
    after a lost connection (it has an idempotency key, or the request-dedupe ``token``). Shared by
    `AsyncClient` and `Client`.

    :raises TypeError: an unknown option. :raises TooLarge: ``data`` is over ``limit``.
    """
    if not options:  # the common call: nothing to check or convert (64 in flight: ~2 us a call)
        check_sizes([data], limit)
        return Enqueue(queue, name, data, request_token=token), token is not None
    check_options(options, EnqueueOptions)
    check_sizes([data], limit)
    key = options.get("idempotency_key")
    message = Enqueue(
        queue, name, data, *_wire_options(options), key, _headers(options.get("headers")), token
    )
    return message, key is not None or token is not None


def enqueue_many_message(
    queue: str,
    name: str,
    payloads: Sequence[Any],
    options: BatchOptions,
    limit: int | None,
    *,
    raw: bool = False,
    token: bytes | None = None,
) -> tuple[EnqueueMany, bool] | None:
    """The ENQUEUE_MANY request of one job per payload (None when there is none), and whether it is
    safe to resend (every job has an idempotency key, or it carries the request-dedupe ``token``).
    Shared by `AsyncClient` and `Client`.

    :raises TypeError: an unknown option or a payload that cannot be encoded.
    :raises ValueError: ``idempotency_keys`` does not have one key per payload.
    :raises TooLarge: a payload is over ``limit``.
    """
    check_options(options, BatchOptions)
    encoded = list(payloads) if raw else encode_payloads(payloads)
    if not encoded:
        return None
    given = options.get("idempotency_keys")
    keys = None if given is None else list(given)
    if keys is not None and len(keys) != len(encoded):
        raise ValueError(f"idempotency_keys has {len(keys)} keys for {len(encoded)} payloads")
    check_sizes(encoded, limit)
    headers = _headers(options.get("headers"))
    message = EnqueueMany(queue, name, encoded, *_wire_options(options), keys, headers, token)
    return message, token is not None or (keys is not None and all(k is not None for k in keys))


def timeout_error(message_type: MessageType, url: str, timeout: float) -> RequestTimeout:
    """What a request that got no answer within ``timeout`` seconds raises."""
    return RequestTimeout(
        f"{message_type.name} got no answer from {url} within {timeout} s; "
        "the server may be overloaded (raise timeout=...) or unhealthy"
    )


def lost_in_flight(exc: ConnectionLost, message_type: MessageType) -> ConnectionLost:
    """What a request raises when the connection dropped while it was in flight (not resent)."""
    return ConnectionLost(
        f"{exc.message} while {message_type.name} was in flight; it may or may not have "
        "taken effect (use an idempotency key to make enqueues safe to repeat)"
    )


class AsyncClient:
    """An asyncio client of one spitfire-server, or of a cluster.

    ``url`` is ``tcp://host:port`` or ``quic://host:port`` (default: ``$SPITFIRE_URL``, else
    ``tcp://127.0.0.1:7878``), or a cluster's members: ``tcp://h1:7878,h2:7878,h3:7878`` or a list
    of URLs (see "Clusters" below); ``auth_token`` defaults to ``$SPITFIRE_AUTH_TOKEN``. ``timeout`` is
    how long each request waits for its answer; ``connect_timeout`` how long the client keeps
    trying to (re)connect, with exponential backoff, before a request fails with `NotConnected`.
    ``tls_ca`` is a CA file to verify a QUIC server's certificate with; without it a loopback server's
    self-signed certificate is accepted and any other host is verified against the system CAs.
    ``tracing`` False makes enqueues untraced whatever OpenTelemetry's configuration (by default
    they are traced when `opentelemetry-api` is installed and a TracerProvider set: docs/tracing.md).
    ``coalesce`` (default True): untraced `enqueue` calls made while others wait to be written, in
    one pass of the event loop, travel as one ENQUEUE_MANY per run of calls with the same queue,
    name and options; each call still gets its own id, or the error it would have got alone
    (README.md, "Coalesced enqueues"; the rules: spitfire._coalesce). False: one request per call.

    One connection carries every request, pipelined: many coroutines may await requests at once and
    their answers arrive in any order. The connection opens on first use (or with `connect`).

    When the connection drops, the next request reconnects. Requests in flight at that moment
    fail with `ConnectionLost`, except those that are safe to send again, which are resent on the
    new connection: `get`, `wait`, `stats`, `ping`, `pause`, `resume`, and `enqueue`/`enqueue_many` when
    every job has an idempotency key (the key makes a repeat return the same job). `cancel`,
    `retry`, `delete` and `delete_queue` are never resent: a repeat could report a misleading
    error.

    Clusters (several addresses): the client connects to any member and follows the leader. A
    member that does not lead answers ``NOT_LEADER`` (nothing done) naming the leader: the request
    goes there, or, while no leader is known (an election), to the next address after a short pause,
    for up to ``connect_timeout`` seconds before `NotLeader` is raised. Every enqueue then carries
    a random request-dedupe token, so `enqueue` and `enqueue_many` are resent after a connection
    lost to a leader change too: a server that committed the first attempt answers its job ids
    instead of adding jobs (docs/ha.md, "Client side"). With one address none of this happens.

    Use it as ``async with AsyncClient(...) as client:`` or call `close`. It belongs to the event
    loop it is first used on.
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
        coalesce: bool = True,
    ) -> None:
        #: The addresses and the one to use now (leader following: `Servers`).
        self.servers = Servers(parse_urls(url))
        self.auth_token = auth_token if auth_token is not None else os.environ.get("SPITFIRE_AUTH_TOKEN")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be above zero seconds")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tls_ca = tls_ca
        #: Enqueues run in a PRODUCER span and carry its trace context (spitfire.tracing).
        self.tracing = tracing and _tracing.AVAILABLE
        self._conn: Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False
        #: Receives server pushes (used by the worker; plain clients get none).
        self._on_push: PushHandler | None = None
        self._schedules: AsyncSchedules | None = None
        #: Gathers concurrent enqueues into ENQUEUE_MANY requests (None: one request per call).
        self._coalescer = (
            Coalescer(self._send_enqueue, self._send_enqueue_many, self._max_frame, self._token, self._job_id)
            if coalesce
            else None
        )

    @property
    def url(self) -> str:
        """The server's URL (with several addresses, all of them: ``tcp://h1:p1,h2:p2``)."""
        return self.servers.url

    @property
    def endpoint(self) -> Endpoint:
        """The address the client talks to now (the leader's, once known, in a cluster)."""
        return self.servers.current

    def _token(self) -> bytes | None:
        """A request-dedupe token for an enqueue: with several addresses only (those are resent)."""
        return new_token() if self.servers.multi else None

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    @property
    def schedules(self) -> AsyncSchedules:
        """Recurring schedules kept by the server: ``await client.schedules.add(...)``, ``put``,
        ``get``, ``list``, ``remove``, ``pause``, ``resume``, ``trigger`` (see `AsyncSchedules`)."""
        if self._schedules is None:
            from .schedules import AsyncSchedules

            self._schedules = AsyncSchedules(self)
        return self._schedules

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connection -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect now instead of on first use.

        :raises NotConnected, Unauthorized, UnsupportedVersion: see `AsyncClient`.
        """
        await self._connection()

    async def close(self) -> None:
        """Close the connection; requests still in flight fail with ConnectionLost. Idempotent."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    async def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            if self._closed:
                raise NotConnected("this client is closed; create a new one")
            self._conn = await self._dial()
            return self._conn

    async def _dial(self) -> Connection:
        """Connect, retrying with exponential backoff for up to ``connect_timeout`` seconds (every
        address in turn on each try, when there are several)."""
        deadline = time.monotonic() + self.connect_timeout
        wait = BACKOFF_FIRST
        longest = FAILOVER_BACKOFF_MAX if self.servers.multi else BACKOFF_MAX
        while True:
            left = deadline - time.monotonic()
            try:
                return await self.open_any(self._on_push, "", max(0.1, min(left, self.timeout)), self.timeout)
            except (Unauthorized, UnsupportedVersion, TLSVerificationFailed):
                raise
            except NotConnected:
                if time.monotonic() + wait > deadline:
                    raise
            # Jitter spreads reconnects of many clients after a server restart.
            await asyncio.sleep(wait * random.uniform(0.8, 1.2))
            wait = min(longest, wait * BACKOFF_FACTOR)

    async def open_any(
        self, on_push: PushHandler | None, role: str, timeout: float, request_timeout: float | None
    ) -> Connection:
        """One connection attempt (handshake included, within ``timeout``) to each address in turn,
        the current one first; the first that answers is the current one from then on. With several
        addresses each attempt takes at most `FAILOVER_CONNECT_TIMEOUT`. ``role`` is appended to
        the client name the server shows (" worker").

        :raises NotConnected: no address answered. :raises Unauthorized, UnsupportedVersion,
            TLSVerificationFailed: a server refused the handshake.
        """
        from . import __version__

        servers = self.servers
        if servers.multi:
            timeout = min(timeout, FAILOVER_CONNECT_TIMEOUT)
        failed: list[str] = []
        for endpoint in servers.order():
            try:
                conn = await open_connection(
                    endpoint,
                    token=self.auth_token,
                    client=client_name(__version__) + role,
                    on_push=on_push,
                    tls_ca=self.tls_ca,
                    timeout=timeout,
                    request_timeout=request_timeout,
                )
            except NotConnected as exc:
                if not servers.multi:
                    raise
                failed.append(exc.message)
                continue
            servers.connected(endpoint)
            return conn
        raise NotConnected(f"cannot connect to any of {servers.url}: {'; '.join(failed)}")

    async def follow(self, conn: Connection, leader: str | None, hops: int, wait: float) -> float:
        """``conn``'s server answered ``NOT_LEADER`` (nothing done): retire the connection (the
        answers still due on it arrive) and aim at the ``leader`` it named, at once the first time;
        while no leader is known, or after a hop that led nowhere, first pause ``wait`` seconds
        (with jitter). Returns the next pause."""
        if not conn.draining:  # the first request to learn it moves the client; the others follow
            self.servers.follow(leader)
            conn.retire()
        if leader is None or hops > 1:
            await asyncio.sleep(wait * random.uniform(0.8, 1.2))
            return min(FAILOVER_BACKOFF_MAX, wait * BACKOFF_FACTOR)
        return wait

    async def _call(
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
        resends = hops = 0
        multi = self.servers.multi
        max_resends = MAX_FAILOVER_RESENDS if multi else MAX_RESENDS
        #: With several addresses: until when a leader is looked for (from the first NOT_LEADER).
        failover: float | None = None
        wait = BACKOFF_FIRST
        while True:
            conn = await self._connection()
            timeout = self.timeout + extra
            try:
                rid, fut = conn.request(message_type, message, timeout if extra else None)
            except ConnectionLost:
                continue  # closed before anything was sent: always safe to try the next connection
            try:
                response = await fut  # the connection fails it with TimeoutError after the timeout
            except TimeoutError:
                conn.pending.pop(rid, None)
                raise timeout_error(message_type, self.url, timeout) from None
            except ConnectionLost as exc:
                if resend and resends < max_resends and not self._closed:
                    resends += 1
                    continue
                raise lost_in_flight(exc, message_type) from None
            if response.type is MessageType.ERROR:
                error = response.message
                if multi and error.code == _NOT_LEADER and not self._closed:
                    # Nothing was done: any request may go to the leader.
                    now = time.monotonic()
                    failover = failover or now + self.connect_timeout
                    if now < failover:
                        hops += 1
                        wait = await self.follow(conn, error.field, hops, wait)
                        continue
                raise error_from_frame(error, job_id=job_id, queue=queue, schedule=schedule)
            return response.message

    def _max_payload(self) -> int | None:
        conn = self._conn
        if conn is None or conn.session.welcome is None:
            return None  # not connected yet: the server checks
        return conn.welcome.max_payload

    def _max_frame(self) -> int | None:
        conn = self._conn
        if conn is None or conn.session.welcome is None:
            return None
        return conn.welcome.max_frame

    def _job_id(self, job_id: str, created: bool) -> AsyncJobId:
        return AsyncJobId(job_id, created, self.wait)

    async def _send_enqueue(self, message: Enqueue, resend: bool) -> AsyncJobId:
        reply = await self._call(MessageType.ENQUEUE, message, resend=resend, queue=message.queue)
        return AsyncJobId(reply.job_id, reply.created, self.wait)

    async def _send_enqueue_many(self, message: EnqueueMany, resend: bool) -> Any:
        return await self._call(MessageType.ENQUEUE_MANY, message, resend=resend, queue=message.queue)

    # -- jobs -------------------------------------------------------------------------------------

    async def enqueue(
        self, queue: str, name: str, payload: Any = None, **options: Unpack[EnqueueOptions]
    ) -> AsyncJobId:
        """Add a job and return its id once the server has made it durable.

        The id is a ``str`` (an `AsyncJobId`) that also carries ``created`` (False: the idempotency
        key named an existing job) and ``await job_id.wait()`` (see `wait`).

        ``payload`` is any msgpack-able object (see `encode_payload`). Options (`EnqueueOptions`):
        ``priority`` 0..10, higher first. ``delay`` (seconds or timedelta) or ``run_at`` (epoch
        seconds or datetime) postpone it. ``max_attempts``, ``backoff`` and ``timeout`` (the lease a
        worker gets, extended by its heartbeats) default to the job's definition on the server (what
        its worker registered from ``@app.job``; a priority of 0 too), else to the server's;
        ``backoff`` is a `Backoff` or a list of retry delays in seconds (``[1, 5, 30, 300]``).
        With ``idempotency_key``, enqueueing the same key again returns the first job's id and adds
        nothing. ``headers`` is a string map (trace context, tags) handed to the worker.

        :raises TypeError: an unknown option.
        :raises BadRequest: an invalid argument (``field`` names it).
        :raises TooLarge: the payload is over the server's limit.
        :raises Busy: backpressure; retry after ``retry_after`` seconds.
        :raises NoSpace: the server's disk is full.
        :raises Conflict: the queue is paused for enqueues (if the server refuses them).
        """
        return await self.enqueue_raw(queue, name, encode_payload(payload), **options)

    async def enqueue_raw(
        self, queue: str, name: str, data: bytes, **options: Unpack[EnqueueOptions]
    ) -> AsyncJobId:
        """`enqueue` with a payload that is already bytes, sent as they are (not msgpack-encoded
        again): for payloads encoded elsewhere, e.g. by ``@app.job`` argument checking."""
        if self.tracing and _tracing.configured():
            return await self._enqueue_traced(queue, name, data, options)
        message, resend = enqueue_message(queue, name, data, options, self._max_payload(), self._token())
        if self._coalescer is not None:
            return await self._coalescer.enqueue(message, resend)
        return await self._send_enqueue(message, resend)

    async def _enqueue_traced(
        self, queue: str, name: str, data: bytes, options: EnqueueOptions
    ) -> AsyncJobId:
        e = self.endpoint
        send = _tracing.start_send(queue, options.get("headers"), e.host, e.port)
        try:
            traced: EnqueueOptions = {**options, "headers": send.headers}
            message, resend = enqueue_message(queue, name, data, traced, self._max_payload(), self._token())
            reply = await self._call(MessageType.ENQUEUE, message, resend=resend, queue=queue)
        except BaseException as exc:
            send.failed(exc)
            raise
        send.done(reply.job_id)
        return AsyncJobId(reply.job_id, reply.created, self.wait)

    async def enqueue_many(
        self, queue: str, name: str, payloads: Sequence[Any], **options: Unpack[BatchOptions]
    ) -> list[str]:
        """Add one job per payload, all with the same options, in one request and one fsync.

        Either every new job is added or none is. Returns the ids in order (an idempotency key
        that already named a job gives that job's id). The server takes up to 10,000 jobs per call
        by default. Options are as in `enqueue`; ``idempotency_keys`` has one key (or None) per payload.
        """
        return await self._enqueue_many(queue, name, payloads, options, raw=False)

    async def enqueue_many_raw(
        self, queue: str, name: str, payloads: Sequence[bytes], **options: Unpack[BatchOptions]
    ) -> list[str]:
        """`enqueue_many` with payloads that are already msgpack bytes (``@app.job``'s ``enqueue_many``)."""
        return await self._enqueue_many(queue, name, payloads, options, raw=True)

    async def _enqueue_many(
        self, queue: str, name: str, payloads: Sequence[Any], options: BatchOptions, *, raw: bool
    ) -> list[str]:
        send = None
        if self.tracing and _tracing.configured():
            payloads = list(payloads)  # counted for the span (any iterable works untraced too)
            if payloads:
                e = self.endpoint
                send = _tracing.start_send(queue, options.get("headers"), e.host, e.port, len(payloads))
                options = {**options, "headers": send.headers}
        try:
            limit = self._max_payload()
            built = enqueue_many_message(queue, name, payloads, options, limit, raw=raw, token=self._token())
            if built is None:
                return []
            message, resend = built
            reply = await self._call(MessageType.ENQUEUE_MANY, message, resend=resend, queue=queue)
        except BaseException as exc:
            if send is not None:
                send.failed(exc)
            raise
        if send is not None:
            send.done()
        return list(reply.job_ids)

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait until the job finishes and return its result (decoded from msgpack; None when the
        handler returned nothing). The server pushes the outcome when it is durable (no polling);
        ``timeout`` None waits as long as it takes.

        :raises JobFailed: the job went dead (``.job`` holds its record and every attempt's error).
        :raises JobCancelled: the job was cancelled.
        :raises WaitTimeout: ``timeout`` seconds passed first (``.job``: the job then; it goes on).
        :raises JobNotFound: no such job, or it was deleted meanwhile.
        :raises Busy: this client already waits on 1,000 jobs at once (the server's limit).
        """
        return outcome(await self.wait_job(job_id, timeout), timeout)

    async def wait_job(self, job_id: str, timeout: float | None = None) -> Job:
        """`wait`, returning the job's record (finished, or as it is at the timeout) instead of its
        result, and raising nothing for its state."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be at least 0 seconds (or None: no limit)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = wait_chunk(deadline)
            reply = await self._call(
                MessageType.WAIT, Wait(job_id, chunk), resend=True, job_id=job_id, extra=chunk
            )
            job = Job.from_info(reply.job)
            if job.finished or chunk == 0 or (deadline is not None and time.monotonic() >= deadline):
                return job

    async def get(self, job_id: str) -> Job:
        """The job's current record.

        :raises JobNotFound: no such job (never existed, deleted, or aged out of the history).
        """
        reply = await self._call(MessageType.GET, JobRef(job_id), resend=True, job_id=job_id)
        return Job.from_info(reply.job)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not finished. A running job's worker is told at once: an async
        handler is cancelled, a sync one sees ``ctx.cancelled``. The job ends ``cancelled`` and is
        never retried. Returns the job as it is afterwards.

        :raises JobNotFound: no such job.
        :raises Conflict: the job already finished.
        """
        reply = await self._call(MessageType.CANCEL, JobRef(job_id), job_id=job_id)
        return Job.from_info(reply.job)

    async def retry(self, job_id: str) -> Job:
        """Run a dead, cancelled (or retrying) job again now. Returns the job afterwards.

        :raises JobNotFound: no such job.
        :raises Conflict: the job's state does not allow it (e.g. it succeeded or is running).
        """
        reply = await self._call(MessageType.RETRY, JobRef(job_id), job_id=job_id)
        return Job.from_info(reply.job)

    async def delete(self, job_id: str) -> Job:
        """Delete a job (a running one is cancelled first). Returns its last record.

        :raises JobNotFound: no such job.
        """
        reply = await self._call(MessageType.DELETE, JobRef(job_id), job_id=job_id)
        return Job.from_info(reply.job)

    async def stats(self, queue: str | None = None) -> Stats:
        """Counts of jobs per state, per queue (``queue`` None: every queue).

        :raises QueueNotFound: ``queue`` names no queue.
        """
        reply = await self._call(MessageType.STATS, QueueRef(queue), resend=True, queue=queue)
        return Stats.from_info(reply.stats)

    async def pause(self, queue: str) -> None:
        """Stop delivering the queue's jobs to workers (enqueues still succeed). Idempotent.

        :raises QueueNotFound: no such queue.
        """
        await self._call(MessageType.PAUSE, QueueRef(queue), resend=True, queue=queue)

    async def resume(self, queue: str) -> None:
        """Deliver the queue's jobs again after `pause`. Idempotent.

        :raises QueueNotFound: no such queue.
        """
        await self._call(MessageType.RESUME, QueueRef(queue), resend=True, queue=queue)

    async def delete_queue(self, queue: str, *, force: bool = False) -> None:
        """Delete a queue with all its jobs (finished ones too), its idempotency keys and its files,
        once that is durable. The next enqueue to the name creates a new, empty queue; workers
        subscribed to the name keep their subscription.

        Without ``force`` only a queue with no pending job (nothing enqueued, scheduled, retrying,
        reserved or running) is deleted; with it pending jobs are dropped too, and workers running
        them are told to stop (their handlers see a cancel). Not resent after a lost connection:
        check with `stats` whether it took effect.

        :raises QueueNotFound: no such queue.
        :raises Conflict: the queue has pending jobs and ``force`` is false (the message says how many).
        """
        await self._call(MessageType.DELETE_QUEUE, DeleteQueue(queue, force), queue=queue)

    # -- administration ---------------------------------------------------------------------------

    async def list_jobs(
        self,
        queue: str | None = None,
        *,
        states: str | Sequence[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> JobPage:
        """A page of jobs, newest (created) first: of ``queue`` (None: every queue), in one of
        ``states`` (labels such as ``"dead"``; None: every state). Pass the page's ``cursor`` for the
        next one (None: that was the last).

        :raises ValueError: an unknown state, or ``limit`` outside 1..1000 (nothing sent).
        """
        message = _admin.list_jobs_request(queue, states, limit, cursor, newest_first)
        return JobPage.from_list(await self._call(MessageType.LIST_JOBS, message, resend=True))

    async def purge(self, queue: str, *, states: str | Sequence[str]) -> PurgeResult:
        """Delete every job of ``queue`` in one of ``states`` (e.g. ``["succeeded", "dead"]``) that
        exists now, durably, in chunks; workers running a deleted job are told to stop it. Not
        resent after a lost connection: purging again finishes what a broken one left.

        :raises ValueError: no state or an unknown one (nothing sent).
        :raises QueueNotFound: no such queue.
        """
        message = _admin.purge_request(queue, states)
        reply = await self._call(MessageType.PURGE, message, queue=queue)
        return PurgeResult(reply.matched, reply.deleted, reply.failed)

    async def set_durability(self, queue: str, mode: str) -> None:
        """Set a queue's durability mode: ``"sync"`` (fsync before each answer), ``"group"`` (fsyncs
        shared by concurrent writes) or ``"async"`` (answer before the fsync). Creates the queue if
        needed; survives restarts. Idempotent.

        :raises ValueError: another mode (nothing sent).
        """
        message = _admin.durability_request(queue, mode)
        await self._call(MessageType.SET_DURABILITY, message, resend=True, queue=queue)

    async def workers(self) -> list[WorkerInfo]:
        """The workers subscribed over the binary protocol now (HTTP workers are not listed)."""
        reply = await self._call(MessageType.LIST_WORKERS, ListWorkers(), resend=True)
        return [WorkerInfo.from_info(w) for w in reply.workers]

    async def job_definitions(self) -> list[JobDefinition]:
        """Every job definition the server holds, by name: the defaults it gives every enqueue of the
        job that leaves them unset, and the JSON Schema of its payload (docs/job-definitions.md)."""
        reply = await self._call(MessageType.LIST_JOB_DEFINITIONS, ListJobDefinitions(), resend=True)
        return [JobDefinition.from_info(d) for d in reply.definitions]

    async def register_job_definitions(self, definitions: Sequence[JobDefinitionSpec]) -> None:
        """Create or replace the server's definitions of these jobs (the others stay), all or nothing,
        once durable; identical ones are not written again. `App.register_jobs` sends an app's
        (``fn.definition()`` of each ``@app.job``). Safe to resend: the latest registration wins.

        :raises BadRequest: a field the server refuses (``field``: ``definitions[i].<field>``), or a
            server older than job definitions ("unknown message type"); nothing changed.
        :raises TooLarge: a schema over 64 KiB. :raises Conflict: past the server's 10,000 definitions.
        """
        message = RegisterJobs(list(definitions))
        await self._call(MessageType.REGISTER_JOBS, message, resend=True)

    async def ping(self) -> float:
        """Round trip to the server; returns the seconds it took."""
        started = time.perf_counter()
        await self._call(MessageType.PING, Ping(), resend=True)
        return time.perf_counter() - started
