"""Everything one queue knows in memory, kept consistent through one small set of transitions.

`QueueIndex` owns the per-state structures of a queue (ready, waiting, leased, the retention of each
finished state, pagination, idempotency keys, counts) and registers its jobs in the shared
`JobTable`. Every state change goes through `add`, `move` or `remove`, which give the job a fresh
``seq``: that is what makes the lazy deletion of every structure work (an entry is live iff it
carries the job's current ``seq``).
No I/O and no clock: time comes in as ``now``.
"""

from __future__ import annotations

from operator import attrgetter

from .history import FINISHED_STATES, History, Retention
from .idempotency import IdempotencyTable
from .job import Job, JobState
from .pages import StateList
from .ready import ReadyQueue
from .table import JobTable
from .timers import DeadlineHeap, lease_of, run_at_of

#: States of a job that has not finished (what backpressure limits).
PENDING_LABELS = ("scheduled", "enqueued", "reserved", "running", "retrying")

#: Never compact the creation-order list of a queue smaller than this.
MIN_COMPACT_SIZE = 1024

_ENQUEUED = JobState.ENQUEUED
_SCHEDULED = JobState.SCHEDULED
_RETRYING = JobState.RETRYING
_RESERVED = JobState.RESERVED
_RUNNING = JobState.RUNNING
_STATES = len(JobState) + 1
#: Indexed by state value: True for the pending states (scheduled, enqueued, reserved, running,
#: retrying), whose jobs and payload bytes the index counts.
_PENDING = tuple(i in {s.value for s in JobState if s.label in PENDING_LABELS} for i in range(_STATES))
#: Indexed by state value: True for the finished states, whose jobs retention forgets.
_FINISHED = tuple(i in {s.value for s in FINISHED_STATES} for i in range(_STATES))
#: Retention of queues built without one: the documented defaults.
DEFAULT_RETENTION = Retention()


_updated_at = attrgetter("updated_at")
_state_of = attrgetter("state")


class QueueIndex:
    """The in-memory index of one queue."""

    __slots__ = (
        "_dead_jobs",
        "_jobs",
        "_retention",
        "counts",
        "histories",
        "keys",
        "leases",
        "name",
        "pending",
        "pending_bytes",
        "ready",
        "seq",
        "states",
        "table",
        "waiting",
    )

    def __init__(
        self,
        name: str,
        table: JobTable,
        *,
        retention: Retention = DEFAULT_RETENTION,
    ) -> None:
        """An empty index of queue ``name`` whose jobs are registered in ``table``; ``retention``
        says how long finished jobs and idempotency keys are kept."""
        self.name = name
        self.table = table
        self._retention = retention
        self._reset()

    def _reset(self) -> None:
        """Empty every structure (a new index, or one whose jobs were all dropped)."""
        retention = self._retention
        table = self.table
        self.ready = ReadyQueue()
        #: SCHEDULED and RETRYING jobs by run_at.
        self.waiting = DeadlineHeap(run_at_of)
        #: RESERVED and RUNNING jobs by lease_until.
        self.leases = DeadlineHeap(lease_of)
        self.keys = IdempotencyTable(retention.keys, table.__contains__)
        #: The finished jobs of each finished state, oldest first, indexed by state value (None for
        #: the other states).
        self.histories: list[History | None] = [
            History(JobState(i), retention.max_per_state, retention.max_age(JobState(i)))
            if _FINISHED[i]
            else None
            for i in range(_STATES)
        ]
        self.states = [StateList() for _ in range(_STATES)]
        #: Jobs per state, indexed by the state's value.
        self.counts = [0] * _STATES
        #: The last ``seq`` given to a job of this queue.
        self.seq = 0
        #: Pending jobs of this queue and their payload bytes (exact; see `PENDING_LABELS`).
        self.pending = 0
        self.pending_bytes = 0
        self._jobs: list[Job] = []
        self._dead_jobs = 0

    # -- transitions ---------------------------------------------------------------------------------

    def _enter(self, job: Job, state: JobState) -> None:
        self.seq = seq = self.seq + 1
        job.seq = seq
        job.state = state
        counts = self.counts
        counts[state] += 1
        self.states[state].append(job)
        if state is _ENQUEUED:
            self.ready.push(job)
        elif state is _SCHEDULED or state is _RETRYING:
            self.waiting.push(job, counts[_SCHEDULED] + counts[_RETRYING])
        elif state is _RESERVED or state is _RUNNING:
            self.leases.push(job, counts[_RESERVED] + counts[_RUNNING])
        else:
            history = self.histories[state]
            if history is not None:
                history.push(job, counts[state])

    def add(self, job: Job, *, index_key: bool = True) -> None:
        """Index a new job in its current state (and its idempotency key, if any and ``index_key``)."""
        self.table.add(job)
        # Append only (snapshots rely on it, see `jobs_view`); this is id order too: a queue's jobs
        # are built and appended in one step, with ids from one monotonic generator.
        self._jobs.append(job)
        state = job.state
        if state is _ENQUEUED:  # every plain enqueue: `_enter` inlined
            self.seq = seq = self.seq + 1
            job.seq = seq
            self.counts[_ENQUEUED] += 1
            self.states[_ENQUEUED].append(job)
            self.ready.push(job)
        else:
            self._enter(job, state)
        if _PENDING[state]:
            self._count(1, len(job.payload))
        key = job.idempotency_key
        if key is not None and index_key:
            self.keys.add(key, job.id, job.name, job.created_at)

    def load(self, jobs: list[Job]) -> None:
        """Index many new jobs at once, in order (recovery: several times faster than `add`).

        Their idempotency keys are not indexed: a snapshot restores the key table itself.
        """
        self.table.add_many(jobs)
        self._jobs.extend(jobs)
        for seq, job in enumerate(jobs, self.seq + 1):
            job.seq = seq
        self.seq += len(jobs)
        self._count_new(jobs)
        states = set(map(_state_of, jobs))
        if len(states) == 1:  # the common case (a fresh log of ready jobs): no grouping pass
            self._load_group(states.pop(), jobs)
            return
        groups: list[list[Job]] = [[] for _ in range(_STATES)]
        for job in jobs:
            groups[job.state].append(job)
        for state, group in enumerate(groups):
            if group:
                self._load_group(state, group)

    def _load_group(self, state: int, group: list[Job]) -> None:
        """Index jobs of one state (in ``seq`` order) in its structures."""
        self.counts[state] += len(group)
        self.states[state].extend(group)
        if state == _ENQUEUED:
            self.ready.extend(group)
        elif state in (_SCHEDULED, _RETRYING):
            self.waiting.extend(group)
        elif state in (_RESERVED, _RUNNING):
            self.leases.extend(group)
        else:
            history = self.histories[state]
            if history is not None:
                history.extend(sorted(group, key=_updated_at))

    def add_many(self, jobs: list[Job]) -> None:
        """Index many new jobs without idempotency keys, in order (an enqueue_batch batch)."""
        self.load(jobs)

    def _count(self, jobs: int, nbytes: int) -> None:
        """Jobs entered (or, negative, left) the pending states with ``nbytes`` payload bytes."""
        self.pending += jobs
        self.pending_bytes += nbytes
        table = self.table
        table.pending_jobs += jobs
        table.pending_bytes += nbytes

    def _count_new(self, jobs: list[Job]) -> None:
        pending = _PENDING
        fresh = [job.payload for job in jobs if pending[job.state]]
        if fresh:
            self._count(len(fresh), sum(map(len, fresh)))

    def move(self, job: Job, state: JobState) -> None:
        """Move an indexed job to ``state`` (set ``run_at``/``lease_until`` first where they matter)."""
        old = job.state
        self.counts[old] -= 1
        self.states[old].left()
        if _PENDING[old] is not _PENDING[state]:
            if _PENDING[old]:
                self._count(-1, -len(job.payload))
            else:
                self._count(1, len(job.payload))
        self._enter(job, state)

    def extend_lease(self, job: Job, until: float) -> None:
        """Set a leased job's ``lease_until`` and reschedule its expiry."""
        if job.lease_until == until:
            return
        job.lease_until = until
        self.leases.push(job, self.counts[_RESERVED] + self.counts[_RUNNING])

    def remove(self, job: Job, *, forget_key: bool) -> None:
        """Forget a job. ``forget_key=True`` (the job was deleted) forgets its idempotency key too;
        ``False`` (retention forgot it) keeps the key for the key retention after the job finished."""
        if self._unindex(job):
            self._release_key(job, forget_key, None)

    def _release_key(self, job: Job, forget: bool, now: float | None) -> None:
        key = job.idempotency_key
        if key is None:
            return
        if forget:
            self.keys.remove(key, job.id)
        else:
            self.keys.release(key, job.id, job.updated_at, now, int(job.state))

    def _unindex(self, job: Job) -> bool:
        """Take the job out of every structure; False if it was not indexed."""
        if self.table.get(job.id) is not job:
            return False
        self.counts[job.state] -= 1
        self.states[job.state].left()
        if _PENDING[job.state]:
            self._count(-1, -len(job.payload))
        job.seq = 0
        self.table.remove(job)
        self._dead_jobs += 1
        if self._dead_jobs > MIN_COMPACT_SIZE and self._dead_jobs * 2 > len(self._jobs):
            self._jobs = self.jobs()
            self._dead_jobs = 0
        return True

    def drop(self) -> list[Job]:
        """Forget every job of the queue and every idempotency key (the queue was deleted): each job
        leaves the shared table (and its pending counts), and the index is empty afterwards.
        Returns the jobs that were indexed, in creation order (their ``seq`` is 0 now)."""
        jobs = self.jobs()
        table = self.table
        for job in jobs:
            job.seq = 0
            table.remove(job)
        table.pending_jobs -= self.pending
        table.pending_bytes -= self.pending_bytes
        self._reset()
        return jobs

    # -- queries and maintenance ------------------------------------------------------------------------

    def contains(self, job: Job) -> bool:
        """True while the job is indexed (not deleted or evicted)."""
        return self.table.get(job.id) is job

    def jobs(self) -> list[Job]:
        """Every job of the queue in creation order (a new list)."""
        table = self.table
        return [j for j in self._jobs if table.get(j.id) is j]

    def live_jobs(self, jobs: list[Job], start: int, end: int) -> list[Job]:
        """The jobs of ``jobs[start:end]`` (a `jobs_view` list) that are still indexed.

        Same answer as `contains` for each, without a table lookup per job (a snapshot checks every
        job of the queue): ``seq`` is 0 exactly when a job is not indexed (`remove` zeroes it; `add`
        and `load` give every job a positive one).
        """
        return [job for job in jobs[start:end] if job.seq]

    def in_order(self) -> list[Job]:
        """The creation-order list (id order) itself, removed jobs included (``seq`` 0): for the
        listings, which bisect it by id and read it without awaiting."""
        return self._jobs

    def state_jobs(self, state: JobState) -> list[Job]:
        """The live jobs in ``state`` (a new list, in the order they entered it)."""
        return self.states[state].live()

    def jobs_view(self) -> tuple[list[Job], int]:
        """The creation-order list and its current length, without copying (a snapshot of a million
        jobs must not stall the loop on a copy). The list is only ever appended to (compaction
        builds a new one), so its first ``n`` entries never change; they may include removed jobs:
        check `contains`."""
        return self._jobs, len(self._jobs)

    def pop_ready(self) -> Job | None:
        """The next ready job (still ENQUEUED: the caller moves it), or None."""
        return self.ready.pop()

    def due(self, now: float) -> list[Job]:
        """SCHEDULED/RETRYING jobs whose run_at is <= ``now`` (still in their state)."""
        return self.waiting.due(now)

    def expired(self, now: float) -> list[Job]:
        """Leased jobs whose lease ended at or before ``now`` (still in their state)."""
        return self.leases.due(now)

    def evict(self, now: float) -> list[Job]:
        """Remove and return the finished jobs (succeeded, dead, cancelled) retention no longer keeps
        at ``now``: each state's oldest beyond its count limit, and those in it for its age or longer.

        Their idempotency keys stay until the key retention after they finished (dropped here when
        that has passed); the caller expires the others with ``keys.expire(now)``.
        """
        out: list[Job] = []
        counts = self.counts
        for history in self.histories:
            if history is None:
                continue
            evicted = history.evict(now, counts[history.state])
            for job in evicted:
                if self._unindex(job):
                    self._release_key(job, False, now)
            out.extend(evicted)
        return out

    def next_deadline(self) -> float | None:
        """The earliest time at which `due`, `expired`, `evict` or key expiry has work."""
        counts = self.counts
        candidates = [
            self.waiting.next_deadline(),
            self.leases.next_deadline(),
            self.keys.next_expiry(),
            *(h.next_expiry(counts[h.state]) for h in self.histories if h is not None),
        ]
        found = [t for t in candidates if t is not None]
        return min(found) if found else None

    def history(self, state: JobState) -> History:
        """The retention of the finished ``state`` (:raises ValueError: for another state)."""
        history = self.histories[state]
        if history is None:
            raise ValueError(f"{state.label} is not a finished state: only finished jobs are retained")
        return history

    def page(
        self, state: JobState, cursor: int | None, limit: int, newest_first: bool = True
    ) -> tuple[list[Job], int | None]:
        """A page of the jobs in ``state`` (by when they entered it) and the next page's cursor."""
        return self.states[state].page(cursor, limit, newest_first)

    def count(self, state: JobState) -> int:
        return self.counts[state]

    @property
    def total(self) -> int:
        return sum(self.counts)
