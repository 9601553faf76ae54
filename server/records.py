"""The engine's log records and snapshot chunks (documented byte by byte in wal/FORMAT.md).

Every record body is a msgpack array (msgspec Structs with ``array_like=True``): fields are written
in declaration order, so new fields go at the end with defaults and nothing is ever reordered. The
record type byte is `RecordType`; its values are stable.

On a single node deliveries (reserve, start, lease extension) are not logged: after a crash a
reserved job is ready again (README.md, "Delivery is at-least-once"), and the hot path is two records
per job: enqueued and finished. A cluster's leader also logs each delivery and lease extension
(JOBS_LEASED, not awaited), so that a new leader continues the leases.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from itertools import chain

import msgspec

from spitfire.index.job import AttemptError, Backoff, Job


class RecordType(enum.IntEnum):
    """Record type bytes. Stable: they are on disk."""

    JOB_ENQUEUED = 1
    JOBS_ENQUEUED = 2
    JOB_SUCCEEDED = 3
    JOB_FAILED = 4
    JOB_REQUEUED = 5
    JOB_CANCELLED = 6
    JOB_RETRIED = 7
    JOB_DELETED = 8
    QUEUE_PAUSED = 9
    QUEUE_RESUMED = 10
    QUEUE_DURABILITY = 11
    JOB_SNOOZED = 12
    JOB_RELEASED = 13
    QUEUE_DELETED = 14
    JOBS_LEASED = 15
    #: Records of the schedules log (``meta/schedules``), never of a queue's.
    SCHEDULE_SET = 20
    SCHEDULE_DELETED = 21
    SCHEDULE_TICKED = 22
    #: Records of the job definitions log (``meta/definitions``), never of a queue's; 32-34 are kept
    #: for it too.
    DEFINITIONS_SET = 30
    DEFINITION_DELETED = 31


class JobsEnqueued(msgspec.Struct, array_like=True, gc=False):
    """A batch from Engine.enqueue_batch (or a single enqueue that carries a request token): one
    record, one commit."""

    jobs: list[Job]
    #: The request-dedupe token of the request that wrote it (server/dedupe.py; None: none). Every
    #: server that applies the record remembers it, so a resend of the request adds no job.
    request_token: bytes | None = None


class JobSucceeded(msgspec.Struct, array_like=True, gc=False):
    id: str
    at: float
    attempts: int
    result: bytes | None = None


class JobFailed(msgspec.Struct, array_like=True, gc=False):
    """An attempt failed: RETRYING until ``retry_at``, or DEAD when ``dead``."""

    id: str
    at: float
    attempt: int
    error: str
    traceback: str | None = None
    retry_at: float | None = None
    dead: bool = False


class JobRequeued(msgspec.Struct, array_like=True, gc=False):
    """The lease ended without an outcome (expired, worker gone): ENQUEUED again, attempt counted.

    Appended without awaiting its commit (leases may be logged lazily).
    """

    id: str
    at: float
    attempts: int
    error: str | None = None


class JobSnoozed(msgspec.Struct, array_like=True, gc=False):
    """The worker asked to run the job again at ``run_at`` (RetryAfter): not counted as a failure."""

    id: str
    at: float
    attempts: int
    run_at: float


class JobEvent(msgspec.Struct, array_like=True, gc=False):
    """JOB_CANCELLED, JOB_RETRIED, JOB_DELETED and JOB_RELEASED: the job, when, and its attempts
    (for JOB_RELEASED already reduced by one: the handed-back delivery does not count)."""

    id: str
    at: float
    attempts: int = 0


class Lease(msgspec.Struct, array_like=True, gc=False):
    """One job's lease in a JOBS_LEASED record: its attempt (this delivery's) and when it ends."""

    id: str
    attempts: int
    until: float


class JobsLeased(msgspec.Struct, array_like=True, gc=False):
    """A cluster leader delivered jobs of one queue to ``worker``, or extended their leases (a
    heartbeat): each lease now ends at its ``until`` (an absolute time, not a local timer, so a new
    leader continues it). Appended without awaiting its commit; applied only by replay (a new leader,
    a restarted member): the leader that wrote it already holds the leases in memory."""

    worker: str
    at: float
    leases: list[Lease]


class QueueEvent(msgspec.Struct, array_like=True, gc=False):
    """QUEUE_PAUSED, QUEUE_RESUMED and QUEUE_DELETED (always the last record of its log)."""

    at: float


class QueueDurability(msgspec.Struct, array_like=True, gc=False):
    mode: str
    at: float


# -- the schedules log (server/schedules.py) ------------------------------------------------------------


class ScheduleOptions(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The options of each tick's job (as `JobOptions`, without the delay)."""

    priority: int = 0
    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    headers: dict[str, str] | None = None


class ScheduleSpec(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A schedule's definition: what a user gives. Two definitions are identical when equal."""

    name: str
    cron: str
    queue: str
    job: str
    timezone: str = "UTC"
    #: The job's payload, msgpack (None: `EMPTY_PAYLOAD`).
    payload: bytes | None = None
    options: ScheduleOptions = ScheduleOptions()
    misfire: str = "skip"


class Schedule(msgspec.Struct, array_like=True, gc=False):
    """A schedule as the server holds it: its definition and where its series stands (SCHEDULE_SET)."""

    spec: ScheduleSpec
    paused: bool
    created_at: float
    updated_at: float
    #: The newest tick the series has handled (run or skipped); ticks after it are due.
    last_tick: float
    #: When a job of this schedule was last enqueued (a tick or a trigger), and its id.
    last_run_at: float | None = None
    last_job_id: str | None = None


class ScheduleDeleted(msgspec.Struct, array_like=True, gc=False):
    name: str
    at: float


class ScheduleTicked(msgspec.Struct, array_like=True, gc=False):
    """A tick handled at ``at``: ``tick`` (None for a trigger-now) moves the series on; ``job_id``
    (None when missed ticks were skipped) is the job it enqueued."""

    name: str
    at: float
    tick: float | None
    job_id: str | None


#: Version of the schedules snapshot layout; bump on incompatible changes.
SCHEDULES_SNAPSHOT_VERSION = 1


class SchedulesSnapshot(msgspec.Struct, array_like=True, gc=False):
    version: int
    schedules: list[Schedule]


# -- the job definitions log (server/definitions.py) ------------------------------------------------------


class DefinitionOptions(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A job's default options: what an enqueue of it gets for each option it leaves unset."""

    priority: int = 0
    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None


class DefinitionSpec(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A job's definition as a client registers it. Two definitions are identical when equal."""

    #: The job (handler) name: the key.
    name: str
    #: The queue its jobs go to (shown; every enqueue names its own).
    queue: str | None = None
    options: DefinitionOptions = DefinitionOptions()
    #: The JSON Schema of the job's payload, as JSON text with its keys sorted (None: none known).
    schema: str | None = None
    #: Check every payload against ``schema`` at enqueue.
    validate: bool = False


class JobDefinition(msgspec.Struct, array_like=True, gc=False):
    """A definition as the server holds it: who registered it last and when."""

    spec: DefinitionSpec
    registered_by: str
    created_at: float
    updated_at: float


class DefinitionsSet(msgspec.Struct, array_like=True, gc=False):
    """DEFINITIONS_SET: the definitions one registration created or changed, whole."""

    definitions: list[JobDefinition]


class DefinitionDeleted(msgspec.Struct, array_like=True, gc=False):
    name: str
    at: float


#: Version of the job definitions snapshot layout; bump on incompatible changes.
DEFINITIONS_SNAPSHOT_VERSION = 1


class DefinitionsSnapshot(msgspec.Struct, array_like=True, gc=False):
    version: int
    definitions: list[JobDefinition]


#: Body struct of each record type.
BODY_TYPES: dict[RecordType, type[msgspec.Struct]] = {
    RecordType.JOB_ENQUEUED: Job,
    RecordType.JOBS_ENQUEUED: JobsEnqueued,
    RecordType.JOB_SUCCEEDED: JobSucceeded,
    RecordType.JOB_FAILED: JobFailed,
    RecordType.JOB_REQUEUED: JobRequeued,
    RecordType.JOB_SNOOZED: JobSnoozed,
    RecordType.JOB_CANCELLED: JobEvent,
    RecordType.JOB_RETRIED: JobEvent,
    RecordType.JOB_DELETED: JobEvent,
    RecordType.JOB_RELEASED: JobEvent,
    RecordType.QUEUE_PAUSED: QueueEvent,
    RecordType.QUEUE_RESUMED: QueueEvent,
    RecordType.QUEUE_DURABILITY: QueueDurability,
    RecordType.QUEUE_DELETED: QueueEvent,
    RecordType.JOBS_LEASED: JobsLeased,
    RecordType.SCHEDULE_SET: Schedule,
    RecordType.SCHEDULE_DELETED: ScheduleDeleted,
    RecordType.SCHEDULE_TICKED: ScheduleTicked,
    RecordType.DEFINITIONS_SET: DefinitionsSet,
    RecordType.DEFINITION_DELETED: DefinitionDeleted,
}

#: Shared encoder (msgspec reuses its buffer logic; one per process is enough).
encoder = msgspec.msgpack.Encoder()
encode = encoder.encode
#: One typed decoder per record type, keyed by the plain int (no enum conversion per record).
_decoders: dict[int, msgspec.msgpack.Decoder[msgspec.Struct]] = {
    int(rtype): msgspec.msgpack.Decoder(t) for rtype, t in BODY_TYPES.items()
}
#: Decodes a JOB_ENQUEUED body.
job_decoder = msgspec.msgpack.Decoder(Job)
_job_list_decoder = msgspec.msgpack.Decoder(list[Job])


class UnknownRecordType(ValueError):
    def __init__(self, rtype: int) -> None:
        self.rtype = rtype
        super().__init__(f"unknown record type {rtype}")


def decode(rtype: int, body: bytes) -> msgspec.Struct:
    """Decode a record body of type ``rtype``."""
    decoder = _decoders.get(rtype)
    if decoder is None:
        raise UnknownRecordType(rtype)
    return decoder.decode(body)


def decode_jobs(bodies: Iterable[bytes], count: int) -> list[Job]:
    """Decode ``count`` JOB_ENQUEUED bodies in one call (recovery's bulk path).

    Each body is one msgpack array, so their concatenation behind an array header of ``count``
    elements is a valid msgpack list of Jobs. Raises like `decode` on a malformed body (the caller
    may decode one at a time to find it).
    """
    header = b"\xdd" + count.to_bytes(4, "big")  # msgpack array32
    return _job_list_decoder.decode(b"".join(chain((header,), bodies)))


# -- snapshots ----------------------------------------------------------------------------------------

#: Version of the snapshot chunk layout; bump on incompatible changes.
SNAPSHOT_VERSION = 1


class IdempotencyEntry(msgspec.Struct, array_like=True, gc=False):
    key: str
    job_id: str
    name: str
    expires_at: float
    #: The state its job ended in once retention forgot it (0 while the job exists; snapshots of
    #: older builds carry no such field: succeeded is assumed).
    state: int = 5


class TokenRecord(msgspec.Struct, array_like=True, gc=False):
    """A request-dedupe token a snapshot keeps (server/dedupe.py): it outlives the records compacted
    behind the snapshot for its few minutes."""

    token: bytes
    #: The job (handler) name of its request.
    name: str
    #: The jobs its record created, in request order.
    job_ids: list[str]
    expires_at: float


class QueueMeta(msgspec.Struct, array_like=True, gc=False):
    """The first chunk of every snapshot."""

    version: int
    paused: bool
    durability: str
    #: Idempotency keys in expiry order (they outlive evicted jobs).
    keys: list[IdempotencyEntry]
    #: The newest job id issued when the snapshot started (ids never go below it after recovery).
    last_id: str = ""
    #: Chunk 1 is a `HistoryChunk` (the queue's per-minute counters at the snapshot's LSN); older
    #: snapshots have none.
    history: bool = False
    #: The queue's request-dedupe tokens at the snapshot's LSN (older snapshots have none).
    request_tokens: list[TokenRecord] = []


class JobChunk(msgspec.Struct, array_like=True, gc=False):
    """Every following chunk: a few thousand jobs."""

    jobs: list[Job]


#: Version of the history chunk's layout (`HistoryChunk.version`).
HISTORY_VERSION = 1


class HistoryBlock(msgspec.Struct, array_like=True, gc=False):
    """One hour of a queue's per-minute counters (`spitfire.index.minutes`)."""

    #: Epoch hour (epoch seconds // 3600).
    hour: int
    #: 60 minutes x (enqueued, succeeded, failed), unsigned 64-bit little-endian: 1,440 bytes.
    counts: bytes


class HistoryChunk(msgspec.Struct, array_like=True, gc=False):
    """Chunk 1 of a snapshot whose meta says ``history``: the queue's counters at the snapshot's LSN.

    Its first element is an empty job list, so that a build that knows no history reads it as a
    `JobChunk` of no jobs (and ignores the rest).
    """

    jobs: list[Job]
    version: int
    blocks: list[HistoryBlock]


class RetiredHistory(msgspec.Struct, array_like=True, gc=False):
    """A record of ``meta/history-retired``: the counters of deleted queues (server/history.py)."""

    #: (queue, LSN of its QUEUE_DELETED record, that record's time) of each deletion it holds.
    deletions: list[tuple[str, int, float]]
    blocks: list[HistoryBlock]


meta_decoder = msgspec.msgpack.Decoder(QueueMeta)
chunk_decoder = msgspec.msgpack.Decoder(JobChunk)
history_decoder = msgspec.msgpack.Decoder(HistoryChunk)
retired_decoder = msgspec.msgpack.Decoder(RetiredHistory)

__all__ = [
    "BODY_TYPES",
    "DEFINITIONS_SNAPSHOT_VERSION",
    "HISTORY_VERSION",
    "SNAPSHOT_VERSION",
    "AttemptError",
    "DefinitionDeleted",
    "DefinitionOptions",
    "DefinitionSpec",
    "DefinitionsSet",
    "DefinitionsSnapshot",
    "HistoryBlock",
    "HistoryChunk",
    "IdempotencyEntry",
    "Job",
    "JobChunk",
    "JobDefinition",
    "JobEvent",
    "JobFailed",
    "JobRequeued",
    "JobSnoozed",
    "JobSucceeded",
    "JobsEnqueued",
    "QueueDurability",
    "QueueEvent",
    "QueueMeta",
    "RecordType",
    "RetiredHistory",
    "Schedule",
    "ScheduleDeleted",
    "ScheduleOptions",
    "ScheduleSpec",
    "ScheduleTicked",
    "SchedulesSnapshot",
    "TokenRecord",
    "chunk_decoder",
    "decode",
    "decode_jobs",
    "encode",
    "history_decoder",
    "job_decoder",
    "meta_decoder",
    "retired_decoder",
]
