"""What the client returns: `Job` (a job's full record), `Stats` and `Schedule`, decoded from the
protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import msgspec

from spitfire.protocol.messages import Backoff, JobInfo, JobList, QueueInfo, ScheduleInfo, StatsInfo
from spitfire.protocol.messages import WorkerInfo as WireWorker

from . import _pydantic

__all__ = [
    "AsyncJobId",
    "AttemptError",
    "Backoff",
    "Job",
    "JobId",
    "JobPage",
    "Progress",
    "PurgeResult",
    "QueueStats",
    "Schedule",
    "ScheduleOptions",
    "Stats",
    "Transition",
    "WorkerInfo",
    "decode_value",
]

_decode = msgspec.msgpack.decode


def enc_hook(obj: Any) -> Any:
    """msgspec's hook for what it cannot encode itself: ``str`` subclasses (a `JobId` in a payload)
    as plain strings, pydantic models as their JSON data (``model_dump(mode="json", by_alias=True)``).

    :raises TypeError: anything else, or a model that cannot be dumped as JSON.
    """
    if isinstance(obj, str):
        return str(obj)
    dumped = _pydantic.encode(obj)
    if dumped is not _pydantic.NOT_A_MODEL:
        return dumped
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")


def decode_value(data: bytes | None) -> Any:
    """A msgpack payload or result as Python objects; bytes that are not msgpack, or nested past the
    interpreter's recursion limit, come back as-is (a producer in another language may send any bytes)."""
    if data is None:
        return None
    try:
        return _decode(data)
    except (msgspec.DecodeError, RecursionError):
        return data


@dataclass(frozen=True, slots=True)
class AttemptError:
    """One failed attempt: its number, when it failed, the error ("ExcType: message") and traceback."""

    attempt: int
    at: float
    error: str
    traceback: str | None


@dataclass(frozen=True, slots=True)
class Transition:
    """The job entered ``state`` at ``at`` (epoch seconds)."""

    state: str
    at: float


@dataclass(frozen=True, slots=True)
class Progress:
    """The last progress a running job reported (``ctx.progress``): ``value`` 0.0 to 1.0 or None,
    a ``message``, and when the server received it (``at``, epoch seconds)."""

    value: float | None
    message: str | None
    at: float


class _OutcomeId(str):
    """A job id that says whether the enqueue created the job and holds the client's wait."""

    created: bool
    _wait: Callable[..., Any] | None

    def __new__(cls, value: str, created: bool = True, wait: Callable[..., Any] | None = None) -> Self:
        self = super().__new__(cls, value)
        self.created = created
        self._wait = wait
        return self

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, (str(self),))

    def _waiter(self, hint: str) -> Callable[..., Any]:
        if self._wait is None:
            raise TypeError(f"this {type(self).__name__} has no client to wait with; use {hint}")
        return self._wait


class JobId(_OutcomeId):
    """A job's id as `Client.enqueue` returns it: a plain ``str`` (compare, store and serialize it as
    one; it pickles as a plain ``str``) that also says whether the enqueue ``created`` the job (False:
    its idempotency key named an existing job) and can `wait` for its outcome."""

    def wait(self, timeout: float | None = None) -> Any:
        """`Client.wait` for this job: its result once it succeeded.

        :raises JobFailed: it went dead. :raises JobCancelled: it was cancelled.
        :raises WaitTimeout: ``timeout`` seconds passed first.
        """
        return self._waiter("client.wait(job_id)")(str(self), timeout=timeout)


class AsyncJobId(_OutcomeId):
    """`JobId` as `AsyncClient.enqueue` returns it: ``await job_id.wait()``."""

    async def wait(self, timeout: float | None = None) -> Any:
        """`AsyncClient.wait` for this job (see `JobId.wait`)."""
        return await self._waiter("await client.wait(job_id)")(str(self), timeout=timeout)


@dataclass(frozen=True, slots=True)
class Job:
    """Everything the server knows about a job (a snapshot; call `get` again for fresh state).

    ``payload`` and ``result`` are decoded from msgpack; ``raw_payload``/``raw_result`` hold the bytes.
    ``state`` is one of scheduled, enqueued, reserved, running, succeeded, retrying, dead, cancelled.
    Times are float seconds since the epoch.
    """

    id: str
    queue: str
    name: str
    state: str
    priority: int
    payload: Any
    result: Any
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    run_at: float | None
    timeout: float
    backoff: Backoff | None
    idempotency_key: str | None
    headers: dict[str, str]
    #: Every failed attempt, oldest first.
    errors: tuple[AttemptError, ...]
    #: Every state transition, oldest first.
    history: tuple[Transition, ...]
    lease_until: float | None
    #: The worker holding the job's lease, if any.
    worker: str | None
    raw_payload: bytes
    raw_result: bytes | None
    #: The last progress of a job not finished yet (None when it reported none).
    progress: Progress | None = None

    @property
    def finished(self) -> bool:
        """True in a terminal state: succeeded, dead or cancelled."""
        return self.state in ("succeeded", "dead", "cancelled")

    @property
    def last_error(self) -> str | None:
        """The error of the latest failed attempt, if any."""
        return self.errors[-1].error if self.errors else None

    @classmethod
    def from_info(cls, info: JobInfo) -> Job:
        """Decode the protocol's JobInfo."""
        return cls(
            id=info.id,
            queue=info.queue,
            name=info.name,
            state=info.state,
            priority=info.priority,
            payload=decode_value(info.payload),
            result=decode_value(info.result),
            attempts=info.attempts,
            max_attempts=info.max_attempts,
            created_at=info.created_at,
            updated_at=info.updated_at,
            run_at=info.run_at,
            timeout=info.timeout,
            backoff=info.backoff,
            idempotency_key=info.idempotency_key,
            headers=dict(info.headers or {}),
            errors=tuple(AttemptError(e.attempt, e.at, e.error, e.traceback) for e in info.errors),
            history=tuple(Transition(t.state, t.at) for t in info.history),
            lease_until=info.lease_until,
            worker=info.worker,
            raw_payload=info.payload,
            raw_result=info.result,
            progress=None
            if info.progress is None
            else Progress(info.progress.value, info.progress.message, info.progress.at),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``spitfire get`` prints); raw bytes are left out."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if not f.startswith("raw_")}
        out["backoff"] = msgspec.structs.asdict(self.backoff) if self.backoff else None
        out["errors"] = [_as_dict(e) for e in self.errors]
        out["history"] = [_as_dict(t) for t in self.history]
        out["progress"] = None if self.progress is None else _as_dict(self.progress)
        return out


def _as_dict(obj: AttemptError | Transition | Progress) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue: whether it is paused, its durability mode, and its jobs per state."""

    name: str
    paused: bool
    durability: str
    #: Jobs per state label; every state is present.
    counts: dict[str, int]
    total: int

    @classmethod
    def from_info(cls, info: QueueInfo) -> QueueStats:
        return cls(info.name, info.paused, info.durability, dict(info.counts), info.total)


@dataclass(frozen=True, slots=True)
class Stats:
    """The server's state: jobs in total, each queue, connected workers and connections."""

    total_jobs: int
    queues: dict[str, QueueStats]
    workers: int
    connections: int

    @classmethod
    def from_info(cls, info: StatsInfo) -> Stats:
        queues = {q.name: QueueStats.from_info(q) for q in info.queues}
        return cls(info.total_jobs, queues, info.workers, info.connections)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``spitfire stats`` prints)."""
        return {
            "total_jobs": self.total_jobs,
            "workers": self.workers,
            "connections": self.connections,
            "queues": {name: _queue_dict(q) for name, q in self.queues.items()},
        }


def _queue_dict(q: QueueStats) -> dict[str, Any]:
    return {"paused": q.paused, "durability": q.durability, "counts": q.counts, "total": q.total}


@dataclass(frozen=True, slots=True)
class ScheduleOptions:
    """The options of the job each tick of a schedule enqueues (None: the server's default)."""

    priority: int
    max_attempts: int | None
    backoff: Backoff | None
    #: The lease in seconds.
    timeout: float | None
    headers: dict[str, str] | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        backoff = msgspec.structs.asdict(self.backoff) if self.backoff else None
        return {
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "backoff": backoff,
            "timeout": self.timeout,
            "headers": self.headers,
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring schedule as the server holds it (a snapshot; call ``schedules.get`` again for
    fresh state).

    At each time ``cron`` names, read in ``timezone``, the server enqueues a job ``job`` on ``queue``
    with ``payload`` (decoded from msgpack; ``raw_payload`` holds the bytes) and ``options``.
    ``misfire`` says what happens to ticks missed while the server was down: ``skip``, ``once`` or
    ``all``. ``next_run_at`` is None while paused; ``last_job_state`` is None once the last job is
    gone. Times are float seconds since the epoch.
    """

    name: str
    cron: str
    timezone: str
    queue: str
    job: str
    payload: Any
    options: ScheduleOptions
    misfire: str
    paused: bool
    created_at: float
    updated_at: float
    next_run_at: float | None
    last_run_at: float | None
    last_job_id: str | None
    last_job_state: str | None
    raw_payload: bytes

    @classmethod
    def from_info(cls, info: ScheduleInfo) -> Schedule:
        """Decode the protocol's ScheduleInfo."""
        o = info.options
        return cls(
            name=info.name,
            cron=info.cron,
            timezone=info.timezone,
            queue=info.queue,
            job=info.job,
            payload=decode_value(info.payload),
            options=ScheduleOptions(
                o.priority,
                o.max_attempts,
                o.backoff,
                o.timeout,
                None if o.headers is None else dict(o.headers),
            ),
            misfire=info.misfire,
            paused=info.paused,
            created_at=info.created_at,
            updated_at=info.updated_at,
            next_run_at=info.next_run_at,
            last_run_at=info.last_run_at,
            last_job_id=info.last_job_id,
            last_job_state=info.last_job_state,
            raw_payload=info.payload,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``spitfire schedules list`` prints); raw bytes are left out."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if not f.startswith("raw_")}
        out["options"] = self.options.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of `AsyncClient.list_jobs`: the jobs, and the cursor of the next page (None: last)."""

    jobs: list[Job]
    cursor: str | None

    @classmethod
    def from_list(cls, reply: JobList) -> JobPage:
        return cls([Job.from_info(j) for j in reply.jobs], reply.cursor)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What `AsyncClient.purge` did: jobs matched, deleted (durably), and not deleted (gone meanwhile)."""

    matched: int
    deleted: int
    failed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``spitfire queues purge --json`` prints)."""
        return {"matched": self.matched, "deleted": self.deleted, "failed": self.failed}


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker subscribed over the binary protocol, as `AsyncClient.workers` lists it."""

    id: str
    name: str
    queues: list[str]
    #: Jobs it holds (reserved or running).
    held: int
    #: False once it unsubscribed (draining).
    active: bool
    credits: int
    connected_at: float
    last_seen: float
    host: str | None
    pid: int | None
    concurrency: int | None

    @classmethod
    def from_info(cls, w: WireWorker) -> WorkerInfo:
        return cls(
            w.id, w.name, list(w.queues), w.held, w.active, w.credits, w.connected_at, w.last_seen,
            w.host, w.pid, w.concurrency,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``spitfire workers --json`` prints)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}
