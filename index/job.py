"""The job model held in memory (one model everywhere: WAL, protocol, HTTP JSON, dashboard).

`Job` is a msgspec Struct with ``gc=False``: a million pending jobs must neither cost a garbage
collector pass nor carry a GC header each. Jobs therefore never hold reference cycles.
Timestamps are float seconds since the Unix epoch; the engine passes them in (no clock here).
"""

from __future__ import annotations

import enum

import msgspec

#: Highest priority; 0 is the lowest and the default. Higher runs first, FIFO within one.
MAX_PRIORITY = 10
#: Attempts a job gets unless it says otherwise (Sidekiq and River use 25 as well).
DEFAULT_MAX_ATTEMPTS = 25
#: Seconds a delivered job stays leased to its worker without a heartbeat.
DEFAULT_TIMEOUT = 60.0


class JobState(enum.IntEnum):
    """Where a job is in its life. Values are stable: they are written to disk."""

    #: Waiting for its ``run_at``.
    SCHEDULED = 1
    #: Ready to be delivered.
    ENQUEUED = 2
    #: Delivered to a worker and leased to it; the worker has not reported it started.
    RESERVED = 3
    #: The worker reported it started.
    RUNNING = 4
    #: Finished successfully (terminal; kept in bounded history).
    SUCCEEDED = 5
    #: Failed with attempts left; waits for its backoff, then is enqueued again.
    RETRYING = 6
    #: Out of attempts, or failed permanently (terminal until retried or deleted).
    DEAD = 7
    #: Cancelled by a user (terminal; never retried on its own).
    CANCELLED = 8

    @property
    def label(self) -> str:
        """The lower-case name used in JSON, the dashboard and the protocol."""
        return self.name.lower()


#: States a job can still leave without a user's action.
ACTIVE_STATES = frozenset(
    {JobState.SCHEDULED, JobState.ENQUEUED, JobState.RESERVED, JobState.RUNNING, JobState.RETRYING}
)
#: States a job holds a lease in.
LEASED_STATES = frozenset({JobState.RESERVED, JobState.RUNNING})


class BackoffKind(enum.IntEnum):
    """How the delay before a retry grows. Values are written to disk."""

    EXPONENTIAL = 1
    FIXED = 2
    LINEAR = 3
    #: An explicit list of delays, one per retry (the last one repeats).
    DELAYS = 4


class Backoff(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A retry delay policy. Deterministic unless ``jitter`` is set.

    delay(attempt) = min(cap, base * factor ** (attempt - 1)) for EXPONENTIAL,
    base for FIXED, base * attempt for LINEAR, ``delays[attempt - 1]`` for DELAYS (the last delay
    for later attempts; ``cap`` does not apply); with ``jitter`` the delay is drawn uniformly from
    [delay / 2, delay].
    """

    kind: BackoffKind = BackoffKind.EXPONENTIAL
    #: Seconds before the first retry.
    base: float = 1.0
    #: Growth factor of EXPONENTIAL.
    factor: float = 2.0
    #: Upper bound of the delay, in seconds.
    cap: float = 3600.0
    #: Randomise the delay (opt-in; the default is deterministic).
    jitter: bool = False
    #: The delays of DELAYS, in seconds (None for the other kinds).
    delays: tuple[float, ...] | None = None


DEFAULT_BACKOFF = Backoff()


class AttemptError(msgspec.Struct, array_like=True, gc=False):
    """What went wrong in one attempt."""

    #: The attempt number (1 for the first run).
    attempt: int
    #: When the failure was recorded.
    at: float
    #: The error message (e.g. "ValueError: bad address", or "lease expired").
    error: str
    #: The formatted traceback, if the worker sent one.
    traceback: str | None = None


class Job(msgspec.Struct, array_like=True, gc=False):
    """One job and everything known about it.

    Field order is part of the on-disk format (snapshots and records encode Jobs as msgpack
    arrays): add new fields at the end, with defaults, and never reorder.
    """

    #: Server-assigned, unique, time-ordered id.
    id: str
    #: The queue it belongs to.
    queue: str
    #: Handler name.
    name: str
    #: Arguments, msgpack-encoded (opaque to the server).
    payload: bytes
    state: JobState
    #: When the job was created.
    created_at: float
    #: 0..MAX_PRIORITY, higher first.
    priority: int = 0
    #: When a SCHEDULED or RETRYING job becomes ENQUEUED (None: not waiting).
    run_at: float | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: None means DEFAULT_BACKOFF.
    backoff: Backoff | None = None
    #: Lease (visibility timeout) in seconds, extended by heartbeats.
    timeout: float = DEFAULT_TIMEOUT
    idempotency_key: str | None = None
    #: String map: trace context, user tags.
    headers: dict[str, str] | None = None
    #: Deliveries so far (the attempt number of the current or last run).
    attempts: int = 0
    #: Errors of failed attempts, oldest first.
    errors: list[AttemptError] | None = None
    #: Result of a succeeded job, msgpack-encoded.
    result: bytes | None = None
    #: Every state the job was in and when it entered it: flat pairs [state, at, state, at, ...],
    #: the creation state at ``created_at`` first. None until the first transition (the job is in
    #: its creation state); read it with `transitions`.
    history: list[float] | None = None
    #: When the current lease ends (RESERVED and RUNNING only).
    lease_until: float | None = None
    #: The worker holding the lease.
    worker: str | None = None
    #: LSN of the last log record applied to this job (makes replay idempotent).
    lsn: int = 0
    #: When the job reached its current state.
    updated_at: float = 0.0
    #: Per-queue sequence number of the job's latest state change (the index's lazy-deletion check:
    #: an index entry is live iff it carries the job's current ``seq``; 0 means not indexed).
    seq: int = 0


_CREATION_STATES = (float(JobState.SCHEDULED), float(JobState.ENQUEUED))


def transitions(job: Job) -> list[tuple[JobState, float]]:
    """Every state the job was in, oldest first, with when it entered it, its creation state first.

    ``history`` stays None until the first transition (enqueue pays nothing for it): the job is
    then still in its creation state, entered at ``created_at``. The first transition seeds the
    history with that pair. A history written before seeding existed (it starts with a transition)
    gets its creation state derived: SCHEDULED when the first transition was a promotion to
    ENQUEUED, else ENQUEUED.
    """
    flat = job.history
    if flat is None:
        return [(job.state, job.created_at)]
    out = [(JobState(int(flat[i])), flat[i + 1]) for i in range(0, len(flat) - 1, 2)]
    if not (flat[0] in _CREATION_STATES and flat[1] == job.created_at):
        first = JobState.SCHEDULED if flat[0] == float(JobState.ENQUEUED) else JobState.ENQUEUED
        out.insert(0, (first, job.created_at))
    return out
