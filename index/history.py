"""Bounded history of succeeded jobs: evicted oldest first, by age and by count.

Jobs are appended as they succeed (so the deque is in finish order) with their ``seq``; an entry
whose job has since changed (deleted) is dead and skipped. Dead jobs are not kept here: they stay
until a user retries or deletes them.
"""

from __future__ import annotations

from collections import deque

from .job import Job, JobState

#: Succeeded jobs kept per queue unless configured otherwise.
DEFAULT_MAX_COUNT = 10_000
#: Seconds a succeeded job is kept unless configured otherwise (24 hours).
DEFAULT_MAX_AGE = 24 * 3600.0

_SUCCEEDED = JobState.SUCCEEDED


class History:
    """Succeeded jobs of one queue, oldest first."""

    __slots__ = ("_jobs", "_seqs", "max_age", "max_count")

    def __init__(self, max_count: int = DEFAULT_MAX_COUNT, max_age: float = DEFAULT_MAX_AGE) -> None:
        if max_count < 0:
            raise ValueError("max_count must not be negative")
        if max_age < 0:
            raise ValueError("max_age must not be negative")
        self.max_count = max_count
        self.max_age = max_age
        self._jobs: deque[Job] = deque()
        self._seqs: deque[int] = deque()

    def push(self, job: Job) -> None:
        """Add a job that just succeeded (``job.updated_at`` is its finish time)."""
        self._jobs.append(job)
        self._seqs.append(job.seq)

    def extend(self, jobs: list[Job]) -> None:
        """Add many succeeded jobs (recovery), oldest first."""
        self._jobs.extend(jobs)
        self._seqs.extend([job.seq for job in jobs])

    def evict(self, now: float, live_count: int) -> list[Job]:
        """Remove and return the jobs to forget: the oldest beyond ``max_count``, and those older than
        ``max_age`` at ``now``. ``live_count`` is the number of succeeded jobs of the queue."""
        jobs, seqs = self._jobs, self._seqs
        horizon = now - self.max_age
        out: list[Job] = []
        while jobs:
            job, seq = jobs[0], seqs[0]
            if job.seq != seq or job.state is not _SUCCEEDED:
                jobs.popleft()
                seqs.popleft()
                continue
            if live_count - len(out) > self.max_count or job.updated_at <= horizon:
                jobs.popleft()
                seqs.popleft()
                out.append(job)
                continue
            break
        return out

    def next_expiry(self) -> float | None:
        """When the oldest kept job ages out (None when empty)."""
        jobs, seqs = self._jobs, self._seqs
        while jobs and (jobs[0].seq != seqs[0] or jobs[0].state is not _SUCCEEDED):
            jobs.popleft()
            seqs.popleft()
        return jobs[0].updated_at + self.max_age if jobs else None

    def __len__(self) -> int:
        return len(self._jobs)

    def clear(self) -> None:
        self._jobs.clear()
        self._seqs.clear()
