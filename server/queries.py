"""Read-only questions about the engine's state: jobs, pages, searches, counts.

Everything here reads memory, which reflects only durable records (see `server/state.py`): a job
being enqueued is not found until its commit, a cancel in flight is not seen until it is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spitfire.index.ids import is_job_id
from spitfire.index.job import Job, JobState
from spitfire.wal.api import Durability

from . import validation as v
from .config import EngineConfig
from .errors import JobNotFound, QueueNotFound, ValidationError
from .state import Queue, StateMachine

#: State labels in state value order (1, 2, ...): the keys of `QueueStats.counts`.
_STATE_LABELS = tuple(s.label for s in sorted(JobState))


@dataclass(slots=True)
class QueueStats:
    name: str
    paused: bool
    durability: Durability
    #: Jobs per state label ("enqueued": 3, ...), every state present.
    counts: dict[str, int]
    total: int


@dataclass(slots=True)
class EngineStats:
    total_jobs: int
    queues: dict[str, QueueStats] = field(default_factory=dict)


class Queries:
    """The engine's read side (the `Engine` is one)."""

    def __init__(self, state: StateMachine, config: EngineConfig) -> None:
        self.state = state
        self.config = config

    def _queue(self, name: str) -> Queue:
        q = self.state.queues.get(name)
        if q is None:
            raise QueueNotFound(name)
        return q

    def _job(self, job_id: str) -> tuple[Queue, Job]:
        job = self.state.table.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise JobNotFound(str(job_id))
        return self.state.queues[job.queue], job

    def get(self, job_id: str) -> Job:
        """:raises JobNotFound:"""
        return self._job(job_id)[1]

    def find_by_key(self, queue: str, key: str) -> Job | None:
        """The job an idempotency key names in a queue (None if unknown, expired, or gone)."""
        q = self.state.queues.get(queue)
        if q is None:
            return None
        entry = q.index.keys.entry(key)
        return self.state.table.get(entry[0]) if entry is not None else None

    def search(self, q: str, limit: int = 50, before: str | None = None) -> list[Job]:
        """Jobs matching ``q`` as an id, an idempotency key (any queue) or a handler name; newest
        first. ``before`` (a job id) pages through handler-name matches."""
        v.check_limit(limit)
        table = self.state.table
        out: list[Job] = []
        seen: set[str] = set()

        def add(job: Job | None) -> None:
            if job is not None and job.id not in seen and len(out) < limit:
                seen.add(job.id)
                out.append(job)

        if before is None:
            if is_job_id(q):
                add(table.get(q))
            for queue in self.state.queues.values():
                entry = queue.index.keys.entry(q)
                if entry is not None:
                    add(table.get(entry[0]))
        for job in table.by_name(q, limit, before):
            add(job)
        return out

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        cursor: str | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> tuple[list[Job], str | None]:
        """A page of a queue's jobs in ``state`` (by when they entered it) and the next cursor."""
        q = self._queue(queue)
        if not isinstance(state, JobState):
            raise ValidationError("state", "must be a job state")
        v.check_limit(limit, most=1000)
        position: int | None = None
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.isdigit():
                raise ValidationError("cursor", "must come from a previous page")
            position = int(cursor)
        jobs, nxt = q.index.page(state, position, limit, newest_first)
        return jobs, (None if nxt is None else str(nxt))

    def held_by(self, worker_id: str) -> list[Job]:
        """The jobs a worker holds leases on."""
        return list(self.state.workers.get(worker_id, {}).values())

    def queues(self) -> list[str]:
        return sorted(self.state.queues)

    def queue_stats(self, queue: str) -> QueueStats:
        q = self._queue(queue)
        counts = dict(zip(_STATE_LABELS, q.index.counts[1:], strict=True))
        return QueueStats(q.name, q.paused, q.log.durability, counts, sum(counts.values()))

    def pending(self, queue: str | None = None) -> int:
        """Pending (not finished) jobs of ``queue``, or of every queue (None); 0 for an unknown
        queue. Exact and O(1): the index counts jobs as they enter and leave the pending states."""
        if queue is None:
            return self.state.table.pending_jobs
        q = self.state.queues.get(queue)
        return 0 if q is None else q.index.pending

    def pending_figures(self, queue: str) -> tuple[int, int, int, int]:
        """(pending jobs of ``queue``, their payload bytes, pending jobs of every queue, their
        bytes): what backpressure reads on each enqueue, in one call. New jobs still waiting for
        their commit count too, so a burst within one commit group cannot overshoot a limit."""
        state = self.state
        table = state.table
        total_jobs, total_bytes = (
            table.pending_jobs + state.inflight_jobs,
            table.pending_bytes + state.inflight_bytes,
        )
        q = state.queues.get(queue)
        if q is None:
            return 0, 0, total_jobs, total_bytes
        index = q.index
        return (
            index.pending + q.inflight_jobs,
            index.pending_bytes + q.inflight_bytes,
            total_jobs,
            total_bytes,
        )

    def pending_bytes(self, queue: str | None = None) -> int:
        """Payload bytes of the pending jobs of ``queue``, or of every queue (None); exact, O(1)."""
        if queue is None:
            return self.state.table.pending_bytes
        q = self.state.queues.get(queue)
        return 0 if q is None else q.index.pending_bytes

    def stats(self) -> EngineStats:
        queues = {name: self.queue_stats(name) for name in sorted(self.state.queues)}
        return EngineStats(len(self.state.table), queues)

    def is_paused(self, queue: str) -> bool:
        return self._queue(queue).paused
