"""Ready jobs: highest priority first, FIFO within a priority, with lazy deletion.

One deque of jobs per priority and a parallel deque of the ``seq`` each job had when it was pushed.
A job that leaves the ENQUEUED state for any reason (cancelled, deleted, delivered) is not searched
for: its entry is skipped when it reaches the front, because the job's ``seq`` has moved on.
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter

from .job import MAX_PRIORITY, Job, JobState

_ENQUEUED = JobState.ENQUEUED
_priority_of = attrgetter("priority")
_seq_of = attrgetter("seq")


class ReadyQueue:
    """Ready jobs of one queue by priority (0..MAX_PRIORITY, higher first), FIFO within one."""

    __slots__ = ("_jobs", "_live", "_seqs")

    def __init__(self) -> None:
        self._jobs: list[deque[Job]] = [deque() for _ in range(MAX_PRIORITY + 1)]
        self._seqs: list[deque[int]] = [deque() for _ in range(MAX_PRIORITY + 1)]
        #: Entries pushed and not yet popped or found dead (an upper bound of the live count).
        self._live = 0

    def push(self, job: Job) -> None:
        """Add a job that just became ENQUEUED (its ``seq`` is already set)."""
        priority = job.priority
        self._jobs[priority].append(job)
        self._seqs[priority].append(job.seq)
        self._live += 1

    def extend(self, jobs: list[Job]) -> None:
        """Push many jobs (recovery), in order."""
        priorities = set(map(_priority_of, jobs))
        if len(priorities) == 1:  # the common case: no grouping pass
            priority = priorities.pop()
            self._jobs[priority].extend(jobs)
            self._seqs[priority].extend(map(_seq_of, jobs))
        else:
            groups: list[list[Job]] = [[] for _ in range(MAX_PRIORITY + 1)]
            for job in jobs:
                groups[job.priority].append(job)
            for priority, group in enumerate(groups):
                if group:
                    self._jobs[priority].extend(group)
                    self._seqs[priority].extend(map(_seq_of, group))
        self._live += len(jobs)

    def pop(self) -> Job | None:
        """Remove and return the next live ready job, or None."""
        for priority in range(MAX_PRIORITY, -1, -1):
            jobs = self._jobs[priority]
            seqs = self._seqs[priority]
            while jobs:
                job = jobs.popleft()
                seq = seqs.popleft()
                self._live -= 1
                if job.seq == seq and job.state is _ENQUEUED:
                    return job
        return None

    def peek(self) -> Job | None:
        """The job `pop` would return, without removing it (dead entries in front are dropped)."""
        for priority in range(MAX_PRIORITY, -1, -1):
            jobs = self._jobs[priority]
            seqs = self._seqs[priority]
            while jobs:
                job = jobs[0]
                if job.seq == seqs[0] and job.state is _ENQUEUED:
                    return job
                jobs.popleft()
                seqs.popleft()
                self._live -= 1
        return None

    def __len__(self) -> int:
        """Entries held, dead ones included (use the queue's state counts for the live number)."""
        return self._live

    def clear(self) -> None:
        for d in self._jobs:
            d.clear()
        for s in self._seqs:
            s.clear()
        self._live = 0
