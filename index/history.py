"""Retention of finished jobs: each finished state of a queue keeps its jobs for a while, then forgets
them, oldest first, by age and by count.

A queue has one `History` per finished state (succeeded, dead, cancelled). Jobs are appended as they
enter that state (so the deque is in finish order) with their ``seq``; an entry whose job has since
changed (retried, deleted, or finished again) carries an old ``seq`` and is skipped. `Retention` holds
the rules of all three, and the idempotency key retention that goes with them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .idempotency import DEFAULT_RETENTION as DEFAULT_KEY_RETENTION
from .job import Job, JobState

#: Seconds a succeeded job is kept unless configured otherwise (24 hours).
DEFAULT_RETAIN_SUCCEEDED = 24 * 3600.0
#: Seconds a dead job is kept unless configured otherwise (7 days: time to look at it and retry it).
DEFAULT_RETAIN_DEAD = 7 * 24 * 3600.0
#: Seconds a cancelled job is kept unless configured otherwise (7 days, as dead ones).
DEFAULT_RETAIN_CANCELLED = 7 * 24 * 3600.0
#: Jobs kept per queue in each finished state unless configured otherwise.
DEFAULT_RETAIN_MAX_PER_STATE = 100_000

#: Never compact a history smaller than this (rebuilding tiny deques buys nothing).
MIN_COMPACT_SIZE = 1024

#: The states whose jobs retention forgets.
FINISHED_STATES = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a queue remembers finished jobs and idempotency keys; checked at construction.

    A finished job is forgotten once it has been in its state for that state's age, or sooner when
    more than ``max_per_state`` jobs of the queue are in that state (the oldest go first; the limit
    applies to each finished state separately). An idempotency key names its job while the job
    exists, and for ``keys`` seconds after the job finished even when the job was forgotten sooner.
    """

    #: Seconds a succeeded job is kept.
    succeeded: float = DEFAULT_RETAIN_SUCCEEDED
    #: Seconds a dead job is kept.
    dead: float = DEFAULT_RETAIN_DEAD
    #: Seconds a cancelled job is kept.
    cancelled: float = DEFAULT_RETAIN_CANCELLED
    #: Most jobs kept per queue in each finished state (0: forget them at once).
    max_per_state: int = DEFAULT_RETAIN_MAX_PER_STATE
    #: Seconds an idempotency key is remembered after its job finished.
    keys: float = DEFAULT_KEY_RETENTION

    def __post_init__(self) -> None:
        for name in ("succeeded", "dead", "cancelled"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"Retention.{name} must be a finite number of seconds, 0 or more")
        if not (self.keys > 0 and math.isfinite(self.keys)):
            raise ValueError("Retention.keys must be a finite number of seconds above zero")
        if self.max_per_state < 0:
            raise ValueError("Retention.max_per_state must not be negative")

    def max_age(self, state: JobState) -> float:
        """Seconds a job in the finished ``state`` is kept."""
        if state is JobState.SUCCEEDED:
            return self.succeeded
        if state is JobState.DEAD:
            return self.dead
        if state is JobState.CANCELLED:
            return self.cancelled
        raise ValueError(f"{state.label} is not a finished state: only finished jobs are retained")


class History:
    """The jobs of one queue in one finished state, oldest first, and when to forget them."""

    __slots__ = ("_jobs", "_seqs", "max_age", "max_count", "state")

    def __init__(
        self,
        state: JobState = JobState.SUCCEEDED,
        max_count: int = DEFAULT_RETAIN_MAX_PER_STATE,
        max_age: float = DEFAULT_RETAIN_SUCCEEDED,
    ) -> None:
        if state not in FINISHED_STATES:
            raise ValueError(f"{state.label} is not a finished state: only finished jobs are retained")
        if max_count < 0:
            raise ValueError("max_count must not be negative")
        if max_age < 0:
            raise ValueError("max_age must not be negative")
        self.state = state
        self.max_count = max_count
        self.max_age = max_age
        self._jobs: deque[Job] = deque()
        self._seqs: deque[int] = deque()

    def push(self, job: Job, live_count: int = 0) -> None:
        """Add a job that just entered the state (``job.updated_at`` is when).

        ``live_count`` (the jobs of the queue in the state) lets stale entries be dropped when they
        outnumber live ones, so that a job retried and finished again and again costs no memory.
        """
        self._jobs.append(job)
        self._seqs.append(job.seq)
        if len(self._jobs) > MIN_COMPACT_SIZE and len(self._jobs) > 2 * live_count + 1 and live_count:
            self.compact()

    def extend(self, jobs: list[Job]) -> None:
        """Add many jobs of the state (recovery), oldest first."""
        self._jobs.extend(jobs)
        self._seqs.extend([job.seq for job in jobs])

    def compact(self) -> None:
        """Drop every stale entry (amortised O(1) per push: only called when they are the majority)."""
        live = [(job, seq) for job, seq in zip(self._jobs, self._seqs, strict=True) if job.seq == seq]
        self._jobs = deque(job for job, _ in live)
        self._seqs = deque(seq for _, seq in live)

    def _drop_stale_head(self) -> None:
        jobs, seqs = self._jobs, self._seqs
        # ``seq`` changes on every transition and is 0 once the job is unindexed: an equal ``seq``
        # means the job is still in this state, entered when this entry was pushed.
        while jobs and jobs[0].seq != seqs[0]:
            jobs.popleft()
            seqs.popleft()

    def evict(self, now: float, live_count: int) -> list[Job]:
        """Remove and return the jobs to forget at ``now``, oldest first: beyond ``max_count``, and
        in the state for ``max_age`` or longer. ``live_count`` is the queue's jobs in the state."""
        jobs, seqs = self._jobs, self._seqs
        horizon = now - self.max_age
        out: list[Job] = []
        while True:
            self._drop_stale_head()
            if not jobs:
                break
            job = jobs[0]
            if live_count - len(out) > self.max_count or job.updated_at <= horizon:
                jobs.popleft()
                seqs.popleft()
                out.append(job)
                continue
            break
        return out

    def next_expiry(self, live_count: int = 0) -> float | None:
        """When `evict` next has work (None when the state holds no job): the oldest job's age-out,
        or that job's finish time (already past) when the state holds more than ``max_count``."""
        self._drop_stale_head()
        if not self._jobs:
            return None
        oldest = self._jobs[0].updated_at
        return oldest if live_count > self.max_count else oldest + self.max_age

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return len(self._jobs)

    def clear(self) -> None:
        self._jobs.clear()
        self._seqs.clear()
