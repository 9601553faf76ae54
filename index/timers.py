"""Jobs waiting for a deadline: scheduled/retrying jobs by ``run_at``, leased jobs by ``lease_until``.

A heap of (deadline, seq, job) with lazy deletion: an entry is live while the job still has that
``seq`` (it has not changed state since) and that deadline (a lease extension pushes a new entry and
leaves the old one to be skipped). The heap is rebuilt from its live entries when dead ones
outnumber them, so memory stays proportional to the live jobs whatever the churn.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from .job import Job

#: Never rebuild a heap smaller than this (rebuilding tiny heaps buys nothing).
MIN_COMPACT_SIZE = 1024

Entry = tuple[float, int, Job]


def run_at_of(job: Job) -> float | None:
    return job.run_at


def lease_of(job: Job) -> float | None:
    return job.lease_until


class DeadlineHeap:
    """Jobs ordered by a deadline read from the job with ``deadline_of``."""

    __slots__ = ("_deadline_of", "_heap")

    def __init__(self, deadline_of: Callable[[Job], float | None]) -> None:
        self._heap: list[Entry] = []
        self._deadline_of = deadline_of

    def _live(self, entry: Entry) -> bool:
        deadline, seq, job = entry
        return job.seq == seq and self._deadline_of(job) == deadline

    def push(self, job: Job, live_count: int = 0) -> None:
        """Add (or, after the deadline changed, re-add) a job; ``live_count`` lets it compact."""
        deadline = self._deadline_of(job)
        if deadline is None:
            raise ValueError(f"job {job.id} has no deadline to wait for")
        heapq.heappush(self._heap, (deadline, job.seq, job))
        if len(self._heap) > MIN_COMPACT_SIZE and len(self._heap) > 2 * live_count + 1 and live_count:
            self.compact()

    def extend(self, jobs: list[Job]) -> None:
        """Add many jobs at once (recovery)."""
        deadline_of = self._deadline_of
        for job in jobs:
            deadline = deadline_of(job)
            if deadline is None:
                raise ValueError(f"job {job.id} has no deadline to wait for")
            self._heap.append((deadline, job.seq, job))
        heapq.heapify(self._heap)

    def compact(self) -> None:
        """Drop every dead entry."""
        live = [e for e in self._heap if self._live(e)]
        heapq.heapify(live)
        self._heap = live

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None (dead entries on top are dropped)."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if self._live(entry):
                return entry[0]
            heapq.heappop(heap)
        return None

    def due(self, now: float, limit: int | None = None) -> list[Job]:
        """Remove and return the live jobs whose deadline is <= ``now``, earliest first."""
        heap = self._heap
        out: list[Job] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._live(entry) and not (out and out[-1] is entry[2]):
                out.append(entry[2])
                if limit is not None and len(out) >= limit:
                    break
        return out

    def __len__(self) -> int:
        return len(self._heap)

    def clear(self) -> None:
        self._heap.clear()
