"""Typed errors of the queue engine. Each carries the identifiers a client needs and two codes.

``code`` is the error's own code (HTTP JSON errors carry it); ``kind`` is the protocol's coarser
`ErrorCode` (ERROR frames carry it, and the HTTP status follows from it). Every operation validates
first and raises one of these before changing anything.
"""

from __future__ import annotations

from spitfire.protocol.messages import ErrorCode


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    #: The error's own code, used in HTTP JSON errors.
    code = "ERROR"
    #: The protocol's error code for it.
    kind = ErrorCode.INTERNAL


class JobNotFound(EngineError):
    code = "NOT_FOUND"
    kind = ErrorCode.NOT_FOUND

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class QueueNotFound(EngineError):
    code = "QUEUE_NOT_FOUND"
    kind = ErrorCode.NOT_FOUND

    def __init__(self, queue: str, *, deleting: bool = False) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} is being deleted" if deleting else f"no queue named {queue!r}")


class QueueNotEmpty(EngineError):
    """`Engine.delete_queue` without ``force`` on a queue that still has pending jobs."""

    code = "QUEUE_NOT_EMPTY"
    kind = ErrorCode.CONFLICT

    def __init__(self, queue: str, pending: int) -> None:
        self.queue = queue
        self.pending = pending
        super().__init__(
            f"queue {queue!r} has {pending} pending job(s) (enqueued, scheduled, retrying, reserved or "
            "running); let them finish or cancel them first, or delete with force to drop them"
        )


class TooManyQueues(EngineError):
    """Creating a queue would exceed `EngineConfig.max_queues` (``--max-queues``). Not transient:
    answered CONFLICT (HTTP 409), not BUSY, since waiting does not help."""

    code = "TOO_MANY_QUEUES"
    kind = ErrorCode.CONFLICT

    def __init__(self, queue: str, limit: int) -> None:
        self.queue = queue
        self.limit = limit
        super().__init__(
            f"cannot create queue {queue!r}: the server already has its limit of {limit} queues; "
            "delete unused queues (DELETE /api/queues/{queue}) or restart with a higher --max-queues"
        )


class InvalidTransition(EngineError):
    """The job's state does not allow the operation (e.g. retrying a succeeded job)."""

    code = "INVALID_STATE"
    kind = ErrorCode.CONFLICT

    def __init__(self, job_id: str, state: str, operation: str) -> None:
        self.job_id = job_id
        self.state = state
        self.operation = operation
        super().__init__(f"cannot {operation} job {job_id!r}: it is {state}")


class StaleLease(EngineError):
    """The worker does not hold the job's lease any more (it expired, or the job was cancelled)."""

    code = "STALE_LEASE"
    kind = ErrorCode.CONFLICT

    def __init__(self, job_id: str, worker_id: str, holder: str | None, state: str | None = None) -> None:
        self.job_id = job_id
        self.worker_id = worker_id
        self.holder = holder
        self.state = state
        super().__init__(
            f"worker {worker_id!r} does not hold the lease of job {job_id!r} ({_why_stale(holder, state)}); "
            "the result is ignored"
        )


def _why_stale(holder: str | None, state: str | None) -> str:
    """Why a lease is not held, from the job's state now (the HTTP 409's reason)."""
    if holder is not None:
        return f"worker {holder!r} holds it now: this lease expired and the job was delivered again"
    if state == "succeeded":
        return "the job already succeeded: this is a second outcome"
    if state == "dead":
        return "the job already failed and is dead: this is a second outcome"
    if state == "cancelled":
        return "the job was cancelled"
    if state is not None:
        return f"the job is {state}: the lease expired and it waits to run again"
    return "it expired or the job was cancelled"


class ScheduleNotFound(EngineError):
    code = "SCHEDULE_NOT_FOUND"
    kind = ErrorCode.NOT_FOUND

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}")


class ScheduleConflict(EngineError):
    """Creating a schedule whose name exists with a different definition (replace it instead)."""

    code = "CONFLICT"
    kind = ErrorCode.CONFLICT

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a schedule named {name!r} exists with a different definition; replace it (PUT "
            "/api/schedules/{name}, or upsert from the SDK), or pick another name"
        )


class TooManySchedules(EngineError):
    code = "TOO_MANY_SCHEDULES"
    kind = ErrorCode.CONFLICT

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the server already has its limit of {limit} schedules; delete unused ones first")


class DefinitionNotFound(EngineError):
    code = "DEFINITION_NOT_FOUND"
    kind = ErrorCode.NOT_FOUND

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no job definition named {name!r}")


class TooManyDefinitions(EngineError):
    """A registration would pass the server's limit on job definitions (their number, or their
    schemas' bytes). Not transient: CONFLICT (HTTP 409)."""

    code = "TOO_MANY_DEFINITIONS"
    kind = ErrorCode.CONFLICT


class ValidationError(EngineError):
    """A bad argument; ``field`` names it."""

    code = "INVALID_ARGUMENT"
    kind = ErrorCode.BAD_REQUEST

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class PayloadTooLarge(ValidationError):
    code = "PAYLOAD_TOO_LARGE"
    kind = ErrorCode.TOO_LARGE

    def __init__(self, size: int, limit: int, field: str = "payload") -> None:
        self.size = size
        self.limit = limit
        super().__init__(field, f"{size} bytes is more than the limit of {limit} bytes")


class NoSpace(EngineError):
    """The disk is full: new jobs are refused while completions still commit (HTTP 507)."""

    code = "NO_SPACE"
    kind = ErrorCode.NO_SPACE

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"disk full: queue {queue!r} refuses new jobs until space is freed")


class QueuePaused(EngineError):
    code = "QUEUE_PAUSED"
    kind = ErrorCode.CONFLICT

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} is paused")


class Overloaded(EngineError):
    """Backpressure: too many pending jobs or bytes; the client should retry after ``retry_after`` s."""

    code = "BUSY"
    kind = ErrorCode.BUSY

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"{what}; retry in {retry_after:g} s")


class StorageFailed(EngineError):
    """The server's storage failed (an fdatasync did not succeed): it takes no more writes and is
    stopping (fail-stop). What was acknowledged before is durable; a write that got this error may or
    may not be, and recovery on the next start decides. Retry against the restarted server."""

    code = "STORAGE_FAILED"
    kind = ErrorCode.INTERNAL

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"the server's storage failed and it is stopping; this write may not be durable ({reason}). "
            "Retry once the server has restarted"
        )
