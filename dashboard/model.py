"""The HTTP API's JSON shapes (msgspec Structs) and their conversions to and from the engine's model.

Request bodies are decoded and validated by msgspec (types and ranges); the engine validates the
rest (names, sizes, times) and raises `ValidationError` naming the field. Payloads and results
travel as msgpack between SDKs and the server: a JSON value sent over HTTP is stored as its msgpack
encoding (what the Python SDK sends for the same value), and stored msgpack is answered as JSON.
Times are float seconds since the Unix epoch, as everywhere else in Spitfire.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from spitfire.index.job import MAX_PRIORITY, Backoff, BackoffKind, Job
from spitfire.protocol.jsonvalue import msgpack_to_json
from spitfire.server.errors import ValidationError
from spitfire.server.service import job_info
from spitfire.server.waiting import JobProgress

#: A queue, handler or worker name.
Name = Annotated[str, Meta(min_length=1, max_length=200)]
#: An HTTP worker's name (its engine id is ``http:<name>``, at most 200 characters).
WorkerName = Annotated[str, Meta(min_length=1, max_length=195)]
Key = Annotated[str, Meta(min_length=1, max_length=256)]
Millis = Annotated[int, Meta(ge=0, le=2**53)]
PositiveMillis = Annotated[int, Meta(ge=1, le=12 * 3600 * 1000)]
Priority = Annotated[int, Meta(ge=0, le=MAX_PRIORITY)]
Attempts = Annotated[int, Meta(ge=1, le=1_000_000)]
#: Epoch seconds, or an RFC 3339 date-time (a naive one is taken as UTC).
Time = Annotated[float, Meta(ge=0, le=1e11)] | datetime
Seconds = Annotated[float, Meta(ge=0, le=1e9)]

_BACKOFF_KINDS = {k.name.lower(): k for k in BackoffKind}
_FIELD_AT = re.compile(r"at `\$\.?([^`]*)`")
_FIELD_NAMED = re.compile(r"field `([^`]*)`")


class BackoffIn(msgspec.Struct, forbid_unknown_fields=True):
    """Retry delay policy: exponential min(cap, base * factor ** (attempt - 1)), fixed base,
    linear base * attempt, or ``delays``: an explicit list, ``delays[attempt - 1]`` (the last one
    repeats; no cap); ``jitter`` draws the delay from [delay / 2, delay]."""

    kind: Literal["exponential", "fixed", "linear", "delays"] = "exponential"
    base: Seconds = 1.0
    factor: Annotated[float, Meta(ge=1, le=1000)] = 2.0
    cap: Seconds = 3600.0
    jitter: bool = False
    #: Seconds before each retry, for kind ``delays`` (e.g. ``[1, 5, 30, 300]``).
    delays: Annotated[list[Seconds], Meta(min_length=1, max_length=100)] | None = None


class EnqueueIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/queues/{queue}/jobs."""

    name: Name
    payload: Any = None
    priority: Priority = 0
    delay_ms: Millis | None = None
    run_at: Time | None = None
    max_attempts: Attempts | None = None
    backoff: BackoffIn | None = None
    timeout_ms: PositiveMillis | None = None
    idempotency_key: Key | None = None
    headers: dict[str, str] | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/queues/{queue}/jobs:batch: one job per payload, all with the same options."""

    name: Name
    payloads: Annotated[list[Any], Meta(min_length=1, max_length=10_000)]
    priority: Priority = 0
    delay_ms: Millis | None = None
    run_at: Time | None = None
    max_attempts: Attempts | None = None
    backoff: BackoffIn | None = None
    timeout_ms: PositiveMillis | None = None
    #: One key (or null) per payload.
    idempotency_keys: list[Key | None] | None = None
    headers: dict[str, str] | None = None


class ClaimIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/queues/{queue}/claim."""

    #: Your worker's name; leases are held by ``http:<name>`` (a random name when absent).
    worker: WorkerName | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 1
    #: Lease length; at least the job's own timeout.
    lease_ms: PositiveMillis | None = None
    #: Long poll: when no job is ready, wait up to this long for one.
    wait_ms: Annotated[int, Meta(ge=0, le=30_000)] = 0


class AckIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/jobs/{id}/ack."""

    worker: WorkerName
    result: Any = None


class FailIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/jobs/{id}/fail. A longer ``error`` than 64 KiB or ``traceback`` than
    1 MiB (UTF-8) is kept cut, with a marker saying how many bytes were cut, never refused."""

    worker: WorkerName
    error: str
    traceback: str | None = None
    #: False: the job goes dead at once.
    retryable: bool = True
    #: Run again after this long without counting the attempt (a snooze).
    retry_in_ms: Millis | None = None


class HeartbeatIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/jobs/{id}/heartbeat."""

    worker: WorkerName
    lease_ms: PositiveMillis | None = None


JobId = Annotated[str, Meta(max_length=64)]
BulkAction = Literal["retry", "requeue", "cancel", "delete"]
JobState = Literal[
    "scheduled", "enqueued", "reserved", "running", "succeeded", "retrying", "dead", "cancelled"
]
#: A bound on creation: epoch seconds, an RFC 3339 date-time (a naive one is UTC), or a job id.
Bound = Annotated[float, Meta(ge=0, le=1e11)] | str


class BulkFilterIn(msgspec.Struct, forbid_unknown_fields=True):
    """Which jobs a bulk action is about: every field given must match (none: every job)."""

    queue: Name | None = None
    #: One state or several.
    state: JobState | Annotated[list[JobState], Meta(min_length=1, max_length=8)] | None = None
    name: Name | None = None
    #: Created after / before (exclusive): a time or a job id.
    after: Bound | None = None
    before: Bound | None = None


class BulkIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/jobs:bulk: ``ids`` or ``filter``, not both."""

    action: BulkAction
    ids: Annotated[list[JobId], Meta(min_length=1, max_length=10_000)] | None = None
    filter: BulkFilterIn | None = None


class QueueUpdateIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of PUT /api/queues/{queue}: the settings to change (only ``durability`` today)."""

    durability: Literal["sync", "group", "async"]


# -- answers ----------------------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    retry_after: float | None = None


class ErrorOut(msgspec.Struct):
    error: ErrorBody


class BackoffOut(msgspec.Struct, omit_defaults=True):
    kind: str
    base: float
    factor: float
    cap: float
    jitter: bool
    #: Kind ``delays`` only.
    delays: list[float] | None = None


def backoff_out(b: Backoff | None) -> BackoffOut | None:
    """A definition's or a schedule's backoff as the API shows it (its kind by name)."""
    if b is None:
        return None
    delays = None if b.delays is None else list(b.delays)
    return BackoffOut(b.kind.name.lower(), b.base, b.factor, b.cap, b.jitter, delays)


def millis(seconds: float | None) -> int | None:
    """Seconds as whole milliseconds (None stays None)."""
    return None if seconds is None else round(seconds * 1000)


class AttemptOut(msgspec.Struct):
    attempt: int
    at: float
    error: str
    traceback: str | None


class TransitionOut(msgspec.Struct):
    state: str
    at: float


class ProgressOut(msgspec.Struct):
    """The last progress a running job reported (in memory: gone once the job is final)."""

    value: float | None
    message: str | None
    at: float


class JobOut(msgspec.Struct):
    """A job with every field of the job model; ``history`` holds each transition after creation."""

    id: str
    queue: str
    name: str
    payload: Any
    state: str
    priority: int
    created_at: float
    updated_at: float
    run_at: float | None
    attempts: int
    max_attempts: int
    backoff: BackoffOut | None
    timeout: float
    idempotency_key: str | None
    headers: dict[str, str] | None
    errors: list[AttemptOut]
    result: Any
    history: list[TransitionOut]
    lease_until: float | None
    worker: str | None
    #: The last progress of a job not final yet; null when none.
    progress: ProgressOut | None = None


class JobPage(msgspec.Struct):
    jobs: list[JobOut]
    #: Pass as ``cursor`` for the next page; null on the last page.
    next_cursor: str | None


class JobList(msgspec.Struct):
    jobs: list[JobOut]


class BatchOut(msgspec.Struct):
    ids: list[str]
    #: Per id: false when its idempotency key named an existing job.
    created: list[bool]


class QueueOut(msgspec.Struct):
    name: str
    paused: bool
    durability: str
    #: Jobs per state (every state present).
    counts: dict[str, int]
    total: int
    #: Age in seconds of the oldest job waiting to be delivered (0 when none).
    latency: float
    #: Jobs created and finished per second over the last minute.
    enqueued_per_s: float
    processed_per_s: float


class QueueDeletedOut(msgspec.Struct):
    """Answer of DELETE /api/queues/{queue}: the queue is gone, durably."""

    queue: str
    #: Jobs deleted with it, whatever their state (its history included).
    jobs: int
    #: Of them, pending jobs dropped (0 unless ``?force=true``).
    pending: int


class PurgeOut(msgspec.Struct):
    """Answer of POST /api/queues/{queue}/purge: what was deleted, durably."""

    queue: str
    #: Jobs in the asked states when the purge began.
    matched: int
    deleted: int
    #: Of them, jobs gone meanwhile.
    failed: int


class QueueList(msgspec.Struct):
    queues: list[QueueOut]


class WorkerOut(msgspec.Struct):
    id: str
    name: str
    #: "protocol" (an SDK connection) or "http" (the HTTP worker API).
    kind: str
    queues: list[str]
    #: Jobs it holds a lease on (the same as ``in_flight``, kept for existing clients).
    jobs: int
    active: bool
    credits: int | None
    #: When it was last heard from (subscribe, heartbeat, credit; for HTTP workers any request).
    last_seen: float | None
    #: What an SDK worker said of itself when it subscribed (null: not said; HTTP workers: null).
    host: str | None = None
    pid: int | None = None
    concurrency: int | None = None
    #: Jobs it holds a lease on.
    in_flight: int = 0
    #: When it subscribed (protocol) or first made a request (HTTP).
    connected_at: float | None = None


class WorkerList(msgspec.Struct):
    workers: list[WorkerOut]
    #: Reserved or running jobs whose lease holder is gone or quiet (at most 100, oldest lease
    #: first): they run again when their lease ends.
    possibly_aborted: list[JobOut] = msgspec.field(default_factory=list)


class BulkOut(msgspec.Struct):
    """Answer of POST /api/jobs:bulk."""

    #: Jobs the ids or the filter named (unknown ids are not counted).
    matched: int
    #: Of them, the jobs the action was done to, durably.
    done: int
    #: Of them, the jobs it does not apply to (e.g. retrying a succeeded job).
    failed: int


class ServerOut(msgspec.Struct):
    """One server process."""

    #: ``host:port`` of its binary protocol listener: stable across restarts.
    id: str
    host: str
    pid: int
    version: str
    started_at: float
    #: Default durability of its queues: sync, group or async.
    durability: str
    #: Binary protocol URLs (tcp://..., quic://...).
    listen: list[str]
    #: The HTTP API's base URL.
    http: str
    #: ``--trace-url-template``: a trace's URL with ``{trace_id}`` in it (None: not given).
    trace_url_template: str | None = None


class Totals(msgspec.Struct):
    """Counts since the server started."""

    enqueued: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    cancelled: int
    deleted: int


class StatsOut(msgspec.Struct):
    total_jobs: int
    counts: dict[str, int]
    queues: int
    workers: int
    connections: int
    totals: Totals
    uptime: float
    #: This server; ``servers``: every server online (this one until servers form a cluster).
    server: ServerOut | None = None
    servers: list[ServerOut] = msgspec.field(default_factory=list)


class ClaimOut(msgspec.Struct):
    #: Pass this as ``worker`` to ack, fail and heartbeat.
    worker: str
    jobs: list[JobOut]


class LeaseOut(msgspec.Struct):
    id: str
    lease_until: float


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


# -- conversions ------------------------------------------------------------------------------------------


def field_of(exc: msgspec.DecodeError) -> str:
    """The field a msgspec validation error is about (dotted path), or "body"."""
    text = str(exc)
    match = _FIELD_AT.search(text) or _FIELD_NAMED.search(text)
    return (match.group(1).replace("[...]", "") or "body") if match else "body"


def backoff_in(b: BackoffIn | None) -> Backoff | None:
    """The engine's policy from the JSON one (the engine checks the combination)."""
    if b is None:
        return None
    delays = None if b.delays is None else tuple(b.delays)
    return Backoff(_BACKOFF_KINDS[b.kind], b.base, b.factor, b.cap, b.jitter, delays)


def epoch(value: float | datetime | None) -> float | None:
    """Epoch seconds of a JSON time (a naive date-time is UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return value


def to_msgpack(field: str, value: Any) -> bytes:
    """The msgpack bytes of a JSON value. :raises ValidationError: it cannot be encoded."""
    try:
        return msgspec.msgpack.encode(value)
    except (OverflowError, TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        raise ValidationError(field, f"cannot be stored as msgpack: {exc}") from None


def from_msgpack(data: bytes | None) -> Any:
    """A stored msgpack value as something JSON can carry (`protocol.jsonvalue.msgpack_to_json`):
    the decoded value when it is plain data nested at most `MAX_JSON_DEPTH` (64) containers deep,
    else ``{"$msgpack": "<base64>"}`` (deeper values, extension types, binary map keys, not msgpack)."""
    if data is None:
        return None
    return msgspec.Raw(msgpack_to_json(data))


def job_out(job: Job, progress: JobProgress | None = None) -> JobOut:
    """Every field of a job, payload and result as JSON (conversions of `service.job_info`), with
    its last progress when given."""
    info = job_info(job)
    b = info.backoff
    return JobOut(
        id=info.id,
        queue=info.queue,
        name=info.name,
        payload=from_msgpack(info.payload),
        state=info.state,
        priority=info.priority,
        created_at=info.created_at,
        updated_at=info.updated_at,
        run_at=info.run_at,
        attempts=info.attempts,
        max_attempts=info.max_attempts,
        backoff=None if b is None else BackoffOut(b.kind, b.base, b.factor, b.cap, b.jitter, b.delays),
        timeout=info.timeout,
        idempotency_key=info.idempotency_key,
        headers=info.headers,
        errors=[AttemptOut(e.attempt, e.at, e.error, e.traceback) for e in info.errors],
        result=from_msgpack(info.result),
        history=[TransitionOut(t.state, t.at) for t in info.history],
        lease_until=info.lease_until,
        worker=info.worker,
        progress=None if progress is None else ProgressOut(progress.value, progress.message, progress.at),
    )


class HistoryPointOut(msgspec.Struct):
    """One bucket of GET /api/stats/history: its start and what happened in it."""

    #: Start of the bucket (epoch seconds, a multiple of ``step``).
    at: float
    enqueued: int
    succeeded: int
    #: Attempts that failed (the job went to retrying or dead).
    failed: int


class HistoryOut(msgspec.Struct):
    """GET /api/stats/history: buckets of ``step`` seconds, oldest first, up to the current minute."""

    step: int
    points: list[HistoryPointOut]


def history_out(step: int, points: list[Any]) -> HistoryOut:
    """The answer of GET /api/stats/history from the engine's `server.history.HistoryPoint`s."""
    return HistoryOut(step, [HistoryPointOut(p.at, p.enqueued, p.succeeded, p.failed) for p in points])
