"""Read-only questions about the engine's state: jobs, pages, searches, counts.

Everything here reads memory, which reflects only durable records (see `server/state.py`): a job
being enqueued is not found until its commit, a cancel in flight is not seen until it is durable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from spitfire.index import listing
from spitfire.index.ids import is_job_id
from spitfire.index.job import LEASED_STATES, Job, JobState
from spitfire.wal.api import Durability

from . import validation as v
from .config import EngineConfig
from .errors import InvalidTransition, JobNotFound, QueueNotFound, ValidationError
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


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a listing or a bulk action is about; every field that is set must match.

    ``after`` and ``before`` are exclusive bounds on creation: a time (epoch seconds) or a job id
    (ids are time-ordered). ``q`` is a search: a job id, an idempotency key or a handler name.
    """

    queue: str | None = None
    #: None: every state.
    states: frozenset[JobState] | None = None
    name: str | None = None
    q: str | None = None
    after: float | str | None = None
    before: float | str | None = None


def _bound(field_name: str, value: float | str | None) -> str | None:
    """A filter's time or job id as an id bound. :raises ValidationError: naming the field."""
    if value is None:
        return None
    if isinstance(value, str):
        if not is_job_id(value):
            raise ValidationError(field_name, "must be a time or a job id")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(field_name, "must be a time (epoch seconds) or a job id")
    if not 0 <= value <= 1e11:
        raise ValidationError(field_name, "must be a time from 0 to 1e11 epoch seconds")
    return listing.time_bound(float(value))


def check_filter(f: JobFilter) -> tuple[str | None, str | None]:
    """Validate a filter; returns its (lo, hi) id bounds. :raises ValidationError: naming the field."""
    if not isinstance(f, JobFilter):
        raise ValidationError("filter", "must be a JobFilter")
    for name in ("queue", "name", "q"):
        value = getattr(f, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValidationError(name, "must be a non-empty string")
    if f.states is not None and (not f.states or not all(isinstance(s, JobState) for s in f.states)):
        raise ValidationError("state", "must name at least one job state")
    return _bound("after", f.after), _bound("before", f.before)


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

    def holder(self, job_id: str, operation: str) -> str:
        """The worker holding the job's lease: for an adapter whose outcomes name no worker, which
        acts for the worker that claimed the job (simplequeue's ack, nack and heartbeat).

        :raises JobNotFound: :raises InvalidTransition: (naming ``operation``) the job holds no lease.
        """
        job = self._job(job_id)[1]
        if job.state not in LEASED_STATES or job.worker is None:
            raise InvalidTransition(job.id, job.state.label, operation)
        return job.worker

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

    def list_all(
        self,
        f: JobFilter,
        cursor: str | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> tuple[list[Job], str | None]:
        """A page of the jobs ``f`` matches, across queues, in id (creation) order, and the cursor of
        the next page (None on the last). Jobs created while one pages do not shift later pages.

        Cost: about the jobs returned plus those skipped, from the indexes (`index.listing`): one
        queue's or one handler's id-ordered list, every job's, or, when the states asked for hold at
        most `listing.MAX_GATHER` jobs, those. A page walks at most `listing.MAX_SCAN` entries: it may
        come back short, with a cursor to go on.

        :raises ValidationError: a bad filter field, limit or cursor (naming it).
        """
        lo, hi = check_filter(f)
        v.check_limit(limit, most=1000)
        return self._list(f, lo, hi, cursor, limit, newest_first)

    def _list(
        self,
        f: JobFilter,
        lo: str | None,
        hi: str | None,
        cursor: str | None,
        limit: int,
        newest_first: bool,
    ) -> tuple[list[Job], str | None]:
        """`list_all` with the filter checked and its bounds given as ids (``lo < id < hi``)."""
        if cursor is not None:
            if not isinstance(cursor, str) or not is_job_id(cursor):
                raise ValidationError("cursor", "must come from a previous page")
            if newest_first:
                hi = cursor if hi is None else min(hi, cursor)
            else:
                lo = cursor if lo is None else max(lo, cursor)
        table = self.state.table
        scope: list[Queue]
        if f.queue is not None:
            one = self.state.queues.get(f.queue)
            if one is None:
                return [], None
            scope = [one]
        else:
            scope = list(self.state.queues.values())
        queue, states, name = f.queue, f.states, f.name

        def match(job: Job) -> bool:
            return (
                (states is None or job.state in states)
                and (queue is None or job.queue == queue)
                and (name is None or job.name == name)
            )

        extra: list[Job] = []
        source: list[Job]
        if f.q is not None:
            extra = [j for j in self._exact(f.q) if match(j)]
            source = table.name_in_order(f.q) if name is None or name == f.q else []
        elif name is not None:
            source = table.name_in_order(name)
        elif queue is not None:
            source = scope[0].index.in_order()
        else:
            source = table.all_in_order()
        if states is not None and f.q is None and name is None:
            # Queue by queue: each gathers its few jobs in these states, or walks its own list.
            budget = max(1000, listing.MAX_SCAN // max(1, len(scope)))
            pages = [
                self._queue_page(q, states, match, lo, hi, limit, newest_first, budget)
                for q in scope
                if any(q.index.counts[s] for s in states)
            ]
            return listing.combine(pages, limit, newest_first)
        if states is not None and source:
            held = sum(q.index.counts[s] for q in scope for s in states)
            if held <= listing.MAX_GATHER and held * 4 < len(source):
                gathered = (j for q in scope for s in states for j in q.index.state_jobs(s))
                page = listing.gather(gathered, match, lo, hi, limit, newest_first)
                return listing.merge(page, extra, lo, hi, limit, newest_first)
        page = listing.walk(source, table.is_live, match, lo, hi, limit, newest_first)
        return listing.merge(page, extra, lo, hi, limit, newest_first)

    def _queue_page(
        self,
        q: Queue,
        states: frozenset[JobState],
        match: Callable[[Job], bool],
        lo: str | None,
        hi: str | None,
        limit: int,
        newest_first: bool,
        budget: int,
    ) -> tuple[list[Job], str | None]:
        """One queue's page of jobs in ``states``: gathered from its per-state lists when they hold
        few of its jobs, else walked from its id-ordered list."""
        index = q.index
        source = index.in_order()
        held = sum(index.counts[s] for s in states)
        if held <= listing.MAX_GATHER and held * 4 < len(source):
            gathered = (j for s in states for j in index.state_jobs(s))
            return listing.gather(gathered, match, lo, hi, limit, newest_first)
        return listing.walk(source, self.state.table.is_live, match, lo, hi, limit, newest_first, budget)

    def _exact(self, q: str) -> Iterable[Job]:
        """The jobs ``q`` names as a job id or as an idempotency key (of any queue)."""
        table = self.state.table
        if is_job_id(q) and (job := table.get(q)) is not None:
            yield job
        for queue in self.state.queues.values():
            entry = queue.index.keys.entry(q)
            if entry is not None and (job := table.get(entry[0])) is not None:
                yield job

    def possibly_aborted(
        self, seen: Mapping[str, float], now: float, quiet_after: float, limit: int = 100
    ) -> list[Job]:
        """Up to ``limit`` reserved or running jobs (oldest lease first) whose lease holder may be
        gone: not among the workers connected now (``seen``: worker id -> when it was last heard
        from), or not heard from for longer than ``quiet_after`` seconds at ``now``. They run again
        when their lease ends; until then nothing else takes them."""
        v.check_limit(limit, most=1000)
        cutoff = now - quiet_after
        out = [
            job
            for worker, held in self.state.workers.items()
            if seen.get(worker, float("-inf")) < cutoff
            for job in held.values()
            if job.state in LEASED_STATES
        ]
        out.sort(key=lambda j: (j.lease_until or 0.0, j.id))
        return out[:limit]

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
