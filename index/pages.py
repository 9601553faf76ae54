"""Cursor pagination of one queue's jobs in one state, newest (or oldest) first.

Each state keeps two append-only arrays: the ``seq`` at which a job entered the state (an
``array('q')``, increasing) and the job. An entry is live iff the job still has that ``seq``.
Inserting is an append; a cursor is a ``seq``, found by bisection, so a page never shifts when jobs
are inserted or leave while someone pages. When dead entries outnumber live ones the arrays are
rebuilt from the live entries (amortised O(1) per change).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from operator import attrgetter

from .job import Job

_job_seq = attrgetter("seq")


#: Never compact a list smaller than this.
MIN_COMPACT_SIZE = 1024


class StateList:
    """Jobs that entered one state, in the order they entered it."""

    __slots__ = ("_dead", "_jobs", "_seqs")

    def __init__(self) -> None:
        self._seqs = array("q")
        self._jobs: list[Job] = []
        self._dead = 0

    def append(self, job: Job) -> None:
        """A job entered the state (its ``seq`` is new and the largest so far)."""
        self._seqs.append(job.seq)
        self._jobs.append(job)

    def extend(self, jobs: list[Job]) -> None:
        """Many jobs entered the state, in ``seq`` order."""
        self._seqs.extend(map(_job_seq, jobs))
        self._jobs.extend(jobs)

    def left(self) -> None:
        """A job left the state (its entry became dead); compacts when dead outnumber live."""
        self._dead += 1
        if self._dead > MIN_COMPACT_SIZE and self._dead * 2 > len(self._jobs):
            self.compact()

    def compact(self) -> None:
        seqs, jobs = self._seqs, self._jobs
        live = [i for i in range(len(jobs)) if jobs[i].seq == seqs[i]]
        self._seqs = array("q", [seqs[i] for i in live])
        self._jobs = [jobs[i] for i in live]
        self._dead = 0

    def page(self, cursor: int | None, limit: int, newest_first: bool = True) -> tuple[list[Job], int | None]:
        """Up to ``limit`` live jobs after ``cursor`` (a seq from a previous page; None: from the start)
        and the cursor of the next page (None when there is no more)."""
        seqs, jobs = self._seqs, self._jobs
        out: list[Job] = []
        last = 0
        if newest_first:
            i = len(seqs) - 1 if cursor is None else bisect_left(seqs, cursor) - 1
            while i >= 0 and len(out) < limit:
                job = jobs[i]
                if job.seq == seqs[i]:
                    out.append(job)
                    last = seqs[i]
                i -= 1
            more = any(jobs[j].seq == seqs[j] for j in range(i, -1, -1)) if i >= 0 else False
        else:
            i = 0 if cursor is None else bisect_right(seqs, cursor)
            n = len(seqs)
            while i < n and len(out) < limit:
                job = jobs[i]
                if job.seq == seqs[i]:
                    out.append(job)
                    last = seqs[i]
                i += 1
            more = any(jobs[j].seq == seqs[j] for j in range(i, n))
        return out, (last if more and out else None)

    def live(self) -> list[Job]:
        """The live jobs, in the order they entered the state (a new list)."""
        return [job for job, seq in zip(self._jobs, self._seqs, strict=True) if job.seq == seq]

    def __len__(self) -> int:
        """Entries held, dead ones included."""
        return len(self._jobs)

    def clear(self) -> None:
        self._seqs = array("q")
        self._jobs = []
        self._dead = 0
