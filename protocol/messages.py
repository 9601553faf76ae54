"""Message bodies of the binary protocol (PROTOCOL.md, "Messages").

Every body is a msgspec Struct encoded as msgpack. Request and hot-path bodies are msgpack arrays
(``array_like``: compact and fast); fields are only ever appended, with defaults, so an old body
still decodes. Bodies describing jobs, statistics and schedules (`JobInfo`, `QueueInfo`, `StatsInfo`,
`ScheduleInfo`) are msgpack maps keyed by field name, so SDKs in any language read them by name and
ignore keys they do not know.

Times are float seconds since the Unix epoch; durations are float seconds. Payloads and results
are opaque bytes (msgpack by convention of the SDKs).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

#: The protocol version this module speaks (Hello.version / Welcome.version).
PROTOCOL_VERSION = 1
#: Versions a server built from this module accepts.
SUPPORTED_VERSIONS = frozenset({1})


class MessageType(enum.IntEnum):
    """The frame's type byte. Client-to-server types are below 0x40, server-to-client from 0x40."""

    HELLO = 0x01
    PING = 0x02
    ENQUEUE = 0x03
    ENQUEUE_MANY = 0x04
    GET = 0x05
    CANCEL = 0x06
    RETRY = 0x07
    DELETE = 0x08
    STATS = 0x09
    PAUSE = 0x0A
    RESUME = 0x0B
    SUBSCRIBE = 0x0C
    CREDIT = 0x0D
    UNSUBSCRIBE = 0x0E
    START = 0x0F
    ACK = 0x10
    FAIL = 0x11
    HEARTBEAT = 0x12
    RELEASE = 0x13
    DELETE_QUEUE = 0x14
    PUT_SCHEDULE = 0x15
    GET_SCHEDULE = 0x16
    LIST_SCHEDULES = 0x17
    DELETE_SCHEDULE = 0x18
    PAUSE_SCHEDULE = 0x19
    RESUME_SCHEDULE = 0x1A
    TRIGGER_SCHEDULE = 0x1B
    # Admin requests of the CLI, numbered down from the end of 0x20-0x27.
    LIST_WORKERS = 0x24
    SET_DURABILITY = 0x25
    PURGE = 0x26
    LIST_JOBS = 0x27
    # 0x28..0x2F: job definitions from the start of the range, results and progress from its end.
    REGISTER_JOBS = 0x28
    LIST_JOB_DEFINITIONS = 0x29
    PROGRESS = 0x2E
    WAIT = 0x2F

    WELCOME = 0x40
    PONG = 0x41
    OK = 0x42
    ENQUEUED = 0x43
    ENQUEUED_MANY = 0x44
    JOB = 0x45
    STATS_REPLY = 0x46
    SUBSCRIBED = 0x47
    DELIVER = 0x48
    DONE = 0x49
    HEARTBEAT_OK = 0x4A
    CANCEL_JOBS = 0x4B
    GOAWAY = 0x4C
    SCHEDULE = 0x4D
    SCHEDULES = 0x4E
    WORKERS = 0x55
    PURGED = 0x56
    JOBS = 0x57
    DEFINITIONS = 0x58
    ERROR = 0x7F


class ErrorCode(enum.StrEnum):
    """Stable error codes of `Error` frames. (The HTTP API answers with the engine's finer codes, e.g.
    INVALID_ARGUMENT, INVALID_STATE; each engine error names its protocol code: `EngineError.kind`.)"""

    #: The request is malformed or an argument is invalid (``field`` names it).
    BAD_REQUEST = "BAD_REQUEST"
    #: No such job, queue or schedule.
    NOT_FOUND = "NOT_FOUND"
    #: The auth token is missing or wrong.
    UNAUTHORIZED = "UNAUTHORIZED"
    #: Backpressure: the server holds too many jobs or bytes; retry after ``retry_after`` seconds.
    BUSY = "BUSY"
    #: The disk is full: new jobs are refused while outcomes still commit.
    NO_SPACE = "NO_SPACE"
    #: A payload, result or frame is over its limit.
    TOO_LARGE = "TOO_LARGE"
    #: The server does not speak the client's protocol version.
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    #: The job's state does not allow the operation (retrying a succeeded job), or the worker no
    #: longer holds the job's lease.
    CONFLICT = "CONFLICT"
    #: A bug in the server; the request may or may not have taken effect.
    INTERNAL = "INTERNAL"
    #: A cluster member that does not lead: nothing was done; ``field`` is the leader's address
    #: (``host:port``; None while no leader is known): send the request there.
    NOT_LEADER = "NOT_LEADER"


class Body(msgspec.Struct, array_like=True):
    """Base of message bodies encoded as msgpack arrays. Encoders write every field; decoders fill
    missing trailing fields from their defaults (so older peers' shorter arrays still decode)."""


class Backoff(msgspec.Struct, frozen=True, array_like=True):
    """Retry delay policy: ``kind`` is "exponential" (default), "fixed", "linear" or "delays".

    delay(attempt) = min(cap, base * factor ** (attempt - 1)) for exponential, base for fixed,
    base * attempt for linear, ``delays[attempt - 1]`` for delays (the last one repeats; no cap);
    with ``jitter`` drawn uniformly from [delay / 2, delay].
    """

    kind: str = "exponential"
    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = False
    #: The delays of kind "delays", in seconds (appended: older peers' 5-element arrays still decode).
    delays: list[float] | None = None

    @classmethod
    def of_delays(cls, delays: list[float] | tuple[float, ...], *, jitter: bool = False) -> Backoff:
        """An explicit schedule of retry delays: ``Backoff.of_delays([1, 5, 30, 300])``."""
        return cls("delays", jitter=jitter, delays=[float(d) for d in delays])


# -- client to server ---------------------------------------------------------------------------------


class Hello(Body):
    """First frame of every connection; the server answers `Welcome` or `Error` (then closes)."""

    version: int = PROTOCOL_VERSION
    #: Who is connecting, for logs and the dashboard (e.g. "spitfire-python/0.1.0 host:pid").
    client: str = ""
    #: The server's auth token, when it has one.
    token: str | None = None


class Ping(Body):
    """Liveness check; answered with `Pong`."""


class Enqueue(Body):
    """Add one job; answered with `Enqueued` once the job is durable (by the queue's mode)."""

    queue: str
    name: str
    payload: bytes
    priority: int = 0
    #: Seconds from now until the job may run (exclusive with ``run_at``).
    delay: float | None = None
    #: When the job may run (exclusive with ``delay``).
    run_at: float | None = None
    #: None: the server's default.
    max_attempts: int | None = None
    backoff: Backoff | None = None
    #: Lease (visibility timeout) in seconds; None: the server's default.
    timeout: float | None = None
    idempotency_key: str | None = None
    headers: dict[str, str] | None = None
    #: A short random request id (1..64 bytes) that makes a resend of this request safe: a server that
    #: already committed a request with it answers that request's job instead of adding one. Not an
    #: idempotency key: kept minutes, never shown. The SDKs send one only where they may resend.
    request_token: bytes | None = None


class EnqueueMany(Body):
    """Add many jobs of one handler with the same options, in one record and one fsync.

    Answered with `EnqueuedMany`; either every new job is added or none is.
    """

    queue: str
    name: str
    payloads: list[bytes]
    priority: int = 0
    delay: float | None = None
    run_at: float | None = None
    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    #: One key (or None) per payload, or None for no keys.
    idempotency_keys: list[str | None] | None = None
    headers: dict[str, str] | None = None
    #: As in `Enqueue`: a resend answers the first attempt's jobs.
    request_token: bytes | None = None


class JobRef(Body):
    """Names a job: the body of GET, CANCEL, RETRY and DELETE (each answered with `Job`)."""

    job_id: str


class QueueRef(Body):
    """Names a queue: the body of PAUSE and RESUME (answered with `Ok`) and STATS (None: all)."""

    queue: str | None = None


class DeleteQueue(Body):
    """Delete a queue with its jobs, history and files; answered with `Ok` once durable.

    Refused with CONFLICT while the queue has pending jobs unless ``force`` (they are dropped; the
    workers holding them get CANCEL_JOBS); NOT_FOUND for an unknown queue.
    """

    queue: str
    force: bool = False


class Subscribe(Body):
    """Become a worker for ``queues``; answered with `Subscribed`, then `Deliver` pushes follow.

    ``credits`` is how many jobs the server may push before the worker grants more with `Credit`
    (its free concurrency). A connection subscribes at most once.
    """

    queues: list[str]
    credits: int
    #: A human name for the dashboard (e.g. "host:pid"); the server assigns the worker id.
    name: str = ""
    #: Where the worker runs, for the dashboard (added after 1.0: older clients send none, and
    #: their 3-field frames still decode): the host name ("" unknown), the process id (0 unknown)
    #: and how many jobs it runs at once (0 unknown).
    host: str = ""
    pid: int = 0
    concurrency: int = 0
    #: The ``worker_id`` a `Subscribed` gave this worker on an earlier connection (None: a new
    #: worker): the jobs still leased to that id become this connection's (a cluster's new leader
    #: continues the leases the old one replicated), and `Subscribed` answers with that id.
    resume: str | None = None


class Credit(Body):
    """Grant ``credits`` more deliveries (no answer; request id 0)."""

    credits: int


class Unsubscribe(Body):
    """Stop pushing jobs to this connection; held jobs stay leased to it. Answered with `Ok`."""


class JobIds(Body):
    """Job ids: the body of START (no answer), RELEASE (answered with `Done`) and CANCEL_JOBS."""

    job_ids: list[str]


class AckItem(Body):
    """One successful job, with its optional result."""

    job_id: str
    result: bytes | None = None


class Ack(Body):
    """Report successes; answered with `Done` once every one is durable."""

    items: list[AckItem]


class FailItem(Body):
    """One failed attempt.

    ``retryable`` False makes the job dead at once (the worker's `Permanent`). ``retry_at`` set
    means "run again at this time" without counting the attempt (the worker's `RetryAfter`).
    """

    job_id: str
    error: str
    traceback: str | None = None
    retryable: bool = True
    retry_at: float | None = None


class Fail(Body):
    """Report failures; answered with `Done` once every one is durable."""

    items: list[FailItem]


class Heartbeat(Body):
    """Extend leases: with ``job_ids`` None every job this worker holds, else those jobs.

    ``seconds`` None extends each lease by its job's timeout. Answered with `HeartbeatOk`.
    """

    job_ids: list[str] | None = None
    seconds: float | None = None


class ScheduleOptions(msgspec.Struct, frozen=True, array_like=True):
    """The options of the job each tick of a schedule enqueues: ENQUEUE's fields of the same names
    (and wire shapes), without a delay. None: the server's default."""

    priority: int = 0
    max_attempts: int | None = None
    backoff: Backoff | None = None
    #: Lease (visibility timeout) in seconds.
    timeout: float | None = None
    headers: dict[str, str] | None = None


class PutSchedule(Body):
    """Create a recurring schedule, or with ``replace`` create or replace it; answered with `ScheduleReply`.

    Without ``replace`` an existing schedule of that name with an identical definition is answered
    as it is (``created`` false) and a different one is CONFLICT; with ``replace`` it is replaced.
    """

    #: 1..128 characters, the queue-name rule.
    name: str
    #: 5 fields, 6 with seconds last, or an alias such as ``@hourly``.
    cron: str
    queue: str
    #: The handler name of each tick's job.
    job: str
    #: An IANA timezone the cron expression is read in.
    timezone: str = "UTC"
    #: The job's payload (SDKs: msgpack); None: an empty msgpack map.
    payload: bytes | None = None
    options: ScheduleOptions = ScheduleOptions()
    #: After downtime: "skip" (default), "once" or "all" (at most 100 missed ticks).
    misfire: str = "skip"
    replace: bool = False


class ScheduleRef(Body):
    """Names a schedule: GET_, DELETE_, PAUSE_, RESUME_SCHEDULE (answered with `ScheduleReply`)
    and TRIGGER_SCHEDULE (answered with `Enqueued`)."""

    name: str


class ListSchedules(Body):
    """Every schedule; answered with `ScheduleList`."""


class Wait(Body):
    """Wait until a job is final (succeeded, dead or cancelled); answered with `Job` then, or when
    ``timeout`` seconds have passed (the job as it is: not final), whichever comes first.

    A job already final is answered at once; ``timeout`` 0 is a `GET`. NOT_FOUND for an unknown job
    or one deleted while waited on; BUSY past the server's limits on waiters (per connection and
    in total). Waiters end with their connection.
    """

    job_id: str
    #: Seconds, 0 to 3600.
    timeout: float = 30.0


class Progress(Body):
    """A running job's progress, from the worker holding its lease (request id 0, no answer).

    Kept in the server's memory only (not logged: a restart forgets it) until the job is final;
    ignored when the sender does not hold the job's lease or a field is out of range.
    """

    job_id: str
    #: 0.0 to 1.0, or None for a message alone.
    value: float | None = None
    #: At most 1000 characters.
    message: str | None = None


class JobDefinitionSpec(Body):
    """One job's definition as a worker registers it: the defaults of every enqueue of the job
    (options an enqueue leaves nil, priority 0) and the JSON Schema of its payload."""

    #: The job (handler) name: the definition's key.
    name: str
    #: The queue its jobs go to (shown; every enqueue still names its queue).
    queue: str | None = None
    priority: int = 0
    max_attempts: int | None = None
    backoff: Backoff | None = None
    #: Lease (visibility timeout) in seconds.
    timeout: float | None = None
    #: JSON Schema (Draft 2020-12) of the payload as JSON text, at most 64 KiB; None: none known.
    schema: str | None = None
    #: The server checks every payload of the job against ``schema`` at enqueue.
    validate: bool = False


class RegisterJobs(Body):
    """REGISTER_JOBS: create or replace the definitions of these jobs (the others stay), all or
    nothing; answered with `Ok` once durable. Identical definitions are not written again."""

    definitions: list[JobDefinitionSpec]


class ListJobDefinitions(Body):
    """LIST_JOB_DEFINITIONS: every job definition; answered with `JobDefinitionList`."""


# -- server to client ---------------------------------------------------------------------------------


class ListJobs(Body):
    """LIST_JOBS: a page of jobs, newest (created) first unless ``newest_first`` is false; answered
    with `JobList`. Every field set must match: ``queue`` (None: every queue), ``states`` (labels such
    as "enqueued" or "dead"; None: every state)."""

    queue: str | None = None
    states: list[str] | None = None
    #: 1 to 1000.
    limit: int = 50
    #: The ``cursor`` of the previous page's `JobList` (None: the first page).
    cursor: str | None = None
    newest_first: bool = True


class Purge(Body):
    """PURGE: delete every job of ``queue`` in one of ``states`` (labels; at least one) that exists
    when the request arrives, in durable chunks; answered with `Purged`. Workers holding a purged job
    get CANCEL_JOBS. NOT_FOUND for an unknown queue."""

    queue: str
    states: list[str]


class SetDurability(Body):
    """SET_DURABILITY: set a queue's durability mode ("sync", "group" or "async"), creating the queue
    if needed; answered with `Ok` once the change is durable."""

    queue: str
    mode: str


class ListWorkers(Body):
    """LIST_WORKERS: the workers subscribed over the binary protocol; answered with `WorkerList`."""


class Welcome(Body):
    """The handshake succeeded."""

    version: int
    #: e.g. "spitfire-server/0.1.0".
    server: str
    #: Largest frame the server accepts (bytes after the length field).
    max_frame: int
    #: Largest payload the server accepts.
    max_payload: int
    #: How often a worker should send `Heartbeat`, in seconds.
    heartbeat_interval: float


class Pong(Body):
    """Answer to `Ping`."""


class Ok(Body):
    """The request took effect (and is durable, where it changed state)."""


class Enqueued(Body):
    """Answer to `Enqueue`."""

    job_id: str
    #: False when the idempotency key already named this job (nothing was added).
    created: bool
    #: The job's state label ("enqueued", "scheduled", or the existing job's state).
    state: str


class EnqueuedMany(Body):
    """Answer to `EnqueueMany`: one id and one created flag per payload, in order."""

    job_ids: list[str]
    created: list[bool]


class Subscribed(Body):
    """Answer to `Subscribe`."""

    #: The id the server gave this worker (shown on the dashboard; leases are held by it).
    worker_id: str


class Delivery(Body):
    """One job pushed to a worker, leased to it until it reports an outcome or the lease ends."""

    job_id: str
    queue: str
    name: str
    payload: bytes
    #: 1 for the first run.
    attempt: int
    max_attempts: int
    #: The lease in seconds: heartbeats must come more often than this.
    timeout: float
    headers: dict[str, str] | None = None
    created_at: float = 0.0
    priority: int = 0


class Deliver(Body):
    """Pushed jobs (request id 0); each used one credit."""

    jobs: list[Delivery]


class ItemError(Body):
    """Why one item of an ACK, FAIL or RELEASE did not take effect."""

    #: Position of the item in the request.
    index: int
    code: str
    message: str


class Done(Body):
    """Answer to ACK, FAIL and RELEASE: every item not listed in ``errors`` took effect durably."""

    errors: list[ItemError] = msgspec.field(default_factory=list)


class HeartbeatOk(Body):
    """Answer to `Heartbeat`."""

    #: How many leases were extended.
    extended: int


class GoAway(Body):
    """The server is shutting down (request id 0): finish or hand back held jobs, then reconnect."""

    reason: str


class Error(Body):
    """A request failed; with request id 0 the connection failed and the server closes it."""

    code: str
    message: str
    #: The argument at fault, for BAD_REQUEST and TOO_LARGE.
    field: str | None = None
    #: Seconds to wait before retrying, for BUSY.
    retry_after: float | None = None


class AttemptInfo(msgspec.Struct, kw_only=True):
    """One failed attempt of a job (a msgpack map)."""

    attempt: int
    at: float
    error: str
    traceback: str | None = None


class Transition(msgspec.Struct, kw_only=True):
    """The job entered ``state`` at ``at`` (a msgpack map)."""

    state: str
    at: float


class ProgressInfo(msgspec.Struct, kw_only=True):
    """The last progress a running job reported (a msgpack map)."""

    value: float | None
    message: str | None
    #: When the server received it.
    at: float


class JobInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything known about a job (a msgpack map: the job model of PROTOCOL.md).

    Keys with defaults (added after 1.0) are left out while they hold their default, so a job without
    them encodes as before.
    """

    id: str
    queue: str
    name: str
    payload: bytes
    state: str
    priority: int
    created_at: float
    updated_at: float
    run_at: float | None
    attempts: int
    max_attempts: int
    backoff: Backoff | None
    timeout: float
    idempotency_key: str | None
    headers: dict[str, str] | None
    errors: list[AttemptInfo]
    result: bytes | None
    history: list[Transition]
    lease_until: float | None
    worker: str | None
    #: The last progress of a job not final yet (PROGRESS); absent when none.
    progress: ProgressInfo | None = None


class Job(Body):
    """Answer to GET, CANCEL, RETRY and DELETE."""

    job: JobInfo


class QueueInfo(msgspec.Struct, kw_only=True):
    """One queue's state (a msgpack map)."""

    name: str
    paused: bool
    durability: str
    #: Jobs per state label; every state is present.
    counts: dict[str, int]
    total: int


class StatsInfo(msgspec.Struct, kw_only=True):
    """The server's state (a msgpack map)."""

    total_jobs: int
    queues: list[QueueInfo]
    workers: int = 0
    connections: int = 0


class StatsReply(Body):
    """Answer to STATS."""

    stats: StatsInfo


class ScheduleInfo(msgspec.Struct, kw_only=True):
    """A recurring schedule: its definition and where its series stands (a msgpack map)."""

    name: str
    cron: str
    timezone: str
    queue: str
    job: str
    #: As given (an empty msgpack map when none was).
    payload: bytes
    options: ScheduleOptions
    misfire: str
    paused: bool
    created_at: float
    updated_at: float
    #: When it fires next; None while paused.
    next_run_at: float | None
    #: When it last enqueued a job (a tick or a trigger), and that job's id and state (None once the
    #: job is gone).
    last_run_at: float | None
    last_job_id: str | None
    last_job_state: str | None


class ScheduleReply(Body):
    """Answer to PUT_, GET_, DELETE_ (as it was), PAUSE_ and RESUME_SCHEDULE."""

    schedule: ScheduleInfo
    #: PUT_SCHEDULE: true when it made a new schedule; false otherwise.
    created: bool = False


class ScheduleList(Body):
    """Answer to LIST_SCHEDULES: every schedule, by name."""

    schedules: list[ScheduleInfo]


class JobList(Body):
    """Answer to LIST_JOBS: the page, and the cursor of the next one (None on the last)."""

    jobs: list[JobInfo]
    cursor: str | None = None


class Purged(Body):
    """Answer to PURGE: jobs that matched, were deleted, and could not be (gone meanwhile)."""

    matched: int
    deleted: int
    failed: int


class WorkerInfo(msgspec.Struct, kw_only=True):
    """One subscribed worker (a msgpack map)."""

    id: str
    name: str
    queues: list[str]
    #: Jobs it holds (reserved or running).
    held: int
    #: False after UNSUBSCRIBE (draining).
    active: bool
    credits: int
    connected_at: float
    last_seen: float
    host: str | None = None
    pid: int | None = None
    concurrency: int | None = None


class WorkerList(Body):
    """Answer to LIST_WORKERS."""

    workers: list[WorkerInfo]


class JobDefinitionInfo(msgspec.Struct, kw_only=True):
    """A job definition as the server holds it (a msgpack map)."""

    name: str
    queue: str | None
    priority: int
    max_attempts: int | None
    backoff: Backoff | None
    timeout: float | None
    #: JSON text, keys sorted (the server's canonical form of what was registered).
    schema: str | None
    validate: bool
    #: Who registered it last (the HELLO client name; ``http <address>`` over HTTP), and when.
    registered_by: str
    created_at: float
    updated_at: float


class JobDefinitionList(Body):
    """Answer to LIST_JOB_DEFINITIONS (DEFINITIONS): every definition, by job name."""

    definitions: list[JobDefinitionInfo]


#: The body type of each message type.
BODY_TYPES: dict[MessageType, type[msgspec.Struct]] = {
    MessageType.HELLO: Hello,
    MessageType.PING: Ping,
    MessageType.ENQUEUE: Enqueue,
    MessageType.ENQUEUE_MANY: EnqueueMany,
    MessageType.GET: JobRef,
    MessageType.CANCEL: JobRef,
    MessageType.RETRY: JobRef,
    MessageType.DELETE: JobRef,
    MessageType.STATS: QueueRef,
    MessageType.PAUSE: QueueRef,
    MessageType.RESUME: QueueRef,
    MessageType.SUBSCRIBE: Subscribe,
    MessageType.CREDIT: Credit,
    MessageType.UNSUBSCRIBE: Unsubscribe,
    MessageType.START: JobIds,
    MessageType.ACK: Ack,
    MessageType.FAIL: Fail,
    MessageType.HEARTBEAT: Heartbeat,
    MessageType.RELEASE: JobIds,
    MessageType.DELETE_QUEUE: DeleteQueue,
    MessageType.PUT_SCHEDULE: PutSchedule,
    MessageType.GET_SCHEDULE: ScheduleRef,
    MessageType.LIST_SCHEDULES: ListSchedules,
    MessageType.DELETE_SCHEDULE: ScheduleRef,
    MessageType.PAUSE_SCHEDULE: ScheduleRef,
    MessageType.RESUME_SCHEDULE: ScheduleRef,
    MessageType.TRIGGER_SCHEDULE: ScheduleRef,
    MessageType.LIST_WORKERS: ListWorkers,
    MessageType.SET_DURABILITY: SetDurability,
    MessageType.PURGE: Purge,
    MessageType.LIST_JOBS: ListJobs,
    MessageType.PROGRESS: Progress,
    MessageType.WAIT: Wait,
    MessageType.REGISTER_JOBS: RegisterJobs,
    MessageType.LIST_JOB_DEFINITIONS: ListJobDefinitions,
    MessageType.WELCOME: Welcome,
    MessageType.PONG: Pong,
    MessageType.OK: Ok,
    MessageType.ENQUEUED: Enqueued,
    MessageType.ENQUEUED_MANY: EnqueuedMany,
    MessageType.JOB: Job,
    MessageType.STATS_REPLY: StatsReply,
    MessageType.SUBSCRIBED: Subscribed,
    MessageType.DELIVER: Deliver,
    MessageType.DONE: Done,
    MessageType.HEARTBEAT_OK: HeartbeatOk,
    MessageType.CANCEL_JOBS: JobIds,
    MessageType.GOAWAY: GoAway,
    MessageType.SCHEDULE: ScheduleReply,
    MessageType.SCHEDULES: ScheduleList,
    MessageType.WORKERS: WorkerList,
    MessageType.PURGED: Purged,
    MessageType.JOBS: JobList,
    MessageType.DEFINITIONS: JobDefinitionList,
    MessageType.ERROR: Error,
}

#: Message types a client sends that get no answer (sent with request id 0).
NO_REPLY = frozenset({MessageType.CREDIT, MessageType.START, MessageType.PROGRESS})


class DecodeError(ValueError):
    """A frame's body does not match its message type."""

    def __init__(self, message_type: int, reason: str) -> None:
        self.message_type = message_type
        super().__init__(f"bad body for message type 0x{message_type:02x}: {reason}")


def _enc_hook(obj: Any) -> Any:
    # ``str`` subclasses (the SDK's JobId, a str carrying more) travel as plain strings; msgspec
    # calls this only for types it does not encode itself, so the hot path pays nothing.
    if isinstance(obj, str):
        return str(obj)
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
encode_body = _encoder.encode
_decoders: dict[int, msgspec.msgpack.Decoder[Any]] = {
    int(t): msgspec.msgpack.Decoder(cls) for t, cls in BODY_TYPES.items()
}


def decode_body(message_type: int, body: bytes) -> Any:
    """The message a frame carries. :raises DecodeError: unknown type or a body that does not fit."""
    decoder = _decoders.get(message_type)
    if decoder is None:
        raise DecodeError(message_type, "unknown message type")
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: e.g. a string that is not UTF-8
        raise DecodeError(message_type, str(exc)) from None


#: The message type of each body class that has exactly one (JobRef and friends have several).
_TYPE_OF: dict[type[msgspec.Struct], MessageType] = {}
for _t, _cls in BODY_TYPES.items():
    if sum(1 for c in BODY_TYPES.values() if c is _cls) == 1:
        _TYPE_OF[_cls] = _t


def type_of(message: msgspec.Struct) -> MessageType:
    """The message type of a body whose class is used by one type only (else pass it explicitly)."""
    try:
        return _TYPE_OF[type(message)]
    except KeyError:
        raise TypeError(f"{type(message).__name__} is used by several message types; name one") from None
