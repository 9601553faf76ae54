"""Every job of every queue by id, in id order, and by handler name for the dashboard's search.

The all-jobs list and the by-name lists are kept in id order (ids are time-ordered, so this is
creation order; a job applied a little after a newer one, from another queue's commit, is inserted
near the end: a short move) with lazy deletion: an entry is live iff the table still maps its id to
that very job object. The dashboard's listings (`index.listing`) bisect them by id. A list is
rebuilt when its dead entries outnumber the live ones, and the by-id dict when it holds a quarter
of its peak (CPython dicts never shrink on deletion): memory follows the jobs kept, not the most
ever kept.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from itertools import groupby
from operator import attrgetter

from .job import Job

#: Never compact a by-name list smaller than this.
MIN_COMPACT_SIZE = 256
#: Never rebuild a by-id dict that peaked below this many jobs.
MIN_SHRINK_SIZE = 4096


_job_id = attrgetter("id")
_job_name = attrgetter("name")


class _NameList:
    __slots__ = ("dead", "jobs")

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.dead = 0

    def append(self, job: Job) -> None:
        """Add a job, keeping id order (a job older than the last one is inserted in its place)."""
        jobs = self.jobs
        if jobs and job.id < jobs[-1].id:
            insort(jobs, job, key=_job_id)
        else:
            jobs.append(job)

    def extend(self, new: list[Job]) -> None:
        """Add jobs given in id order, keeping the whole list in id order."""
        jobs = self.jobs
        if jobs and new and new[0].id < jobs[-1].id:
            # Another queue's newer jobs landed first: re-sort only the tail they overlap (short).
            at = bisect_right(jobs, new[0].id, key=_job_id)
            jobs[at:] = sorted([*jobs[at:], *new], key=_job_id)
        else:
            jobs.extend(new)

    def compact(self, by_id: dict[str, Job]) -> None:
        self.jobs = [j for j in self.jobs if by_id.get(j.id) is j]
        self.dead = 0


class JobTable:
    """Global lookup of jobs by id and by handler name."""

    __slots__ = ("_all", "_by_id", "_by_name", "_ordered", "_peak", "pending_bytes", "pending_jobs")

    def __init__(self) -> None:
        self._by_id: dict[str, Job] = {}
        self._by_name: dict[str, _NameList] = {}
        #: Every job, in id order (lazy deletion, like the by-name lists).
        self._all = _NameList()
        #: False while recovery adds jobs queue by queue (in id order within a queue only): lists
        #: are appended to and sorted once by `sort_names`, not kept in order on every add.
        self._ordered = True
        #: Pending (not finished) jobs of every queue together, and their payload bytes: the
        #: queues' indexes keep these exact as jobs enter and leave the pending states.
        self.pending_jobs = 0
        self.pending_bytes = 0
        #: The most jobs held since the by-id dict was last rebuilt.
        self._peak = 0

    def add(self, job: Job) -> None:
        """Index a new job (its id must be new)."""
        by_id = self._by_id
        by_id[job.id] = job
        if len(by_id) > self._peak:
            self._peak = len(by_id)
        names = self._by_name.get(job.name)
        if names is None:
            names = self._by_name[job.name] = _NameList()
        if self._ordered:
            self._all.append(job)
            names.append(job)
        else:
            self._all.jobs.append(job)
            names.jobs.append(job)

    def add_many(self, jobs: list[Job]) -> None:
        """Index many new jobs at once (recovery): C-level bulk operations where possible."""
        self._by_id.update(zip(map(_job_id, jobs), jobs, strict=True))
        self._peak = max(self._peak, len(self._by_id))
        ordered = self._ordered
        if ordered:
            self._all.extend(jobs)
        else:
            self._all.jobs.extend(jobs)
        by_name = self._by_name
        for name, run in groupby(jobs, key=_job_name):
            names = by_name.get(name)
            if names is None:
                names = by_name[name] = _NameList()
            if ordered:
                names.extend(list(run))
            else:
                names.jobs.extend(run)

    def remove(self, job: Job) -> None:
        """Forget a job (deleted, or evicted from history)."""
        if self._by_id.get(job.id) is not job:
            return
        del self._by_id[job.id]
        if self._peak > MIN_SHRINK_SIZE and len(self._by_id) * 4 < self._peak:
            self._by_id = dict(self._by_id)  # amortised: a quarter of the peak is left
            self._peak = len(self._by_id)
        every = self._all
        every.dead += 1
        if every.dead > MIN_COMPACT_SIZE and every.dead * 2 > len(every.jobs):
            every.compact(self._by_id)
        names = self._by_name.get(job.name)
        if names is None:
            return
        names.dead += 1
        if names.dead >= len(names.jobs):
            del self._by_name[job.name]
        elif names.dead > MIN_COMPACT_SIZE and names.dead * 2 > len(names.jobs):
            names.compact(self._by_id)

    def get(self, job_id: str) -> Job | None:
        return self._by_id.get(job_id)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def defer_order(self) -> None:
        """Recovery is about to add every queue's jobs, queue by queue: append them as they come,
        until `sort_names` puts the lists in id order once (keeping order on each add would move
        most of a list for every job of the second queue on)."""
        self._ordered = False

    def sort_names(self) -> None:
        """Restore id order in the all-jobs and by-name lists (after recovery added queue by queue);
        from now on every add keeps it."""
        self._ordered = True
        self._all.jobs.sort(key=_job_id)
        for names in self._by_name.values():
            names.jobs.sort(key=_job_id)

    def by_name(self, name: str, limit: int, before: str | None = None) -> list[Job]:
        """Up to ``limit`` jobs with handler ``name``, newest first, with ids below ``before``."""
        names = self._by_name.get(name)
        if names is None:
            return []
        jobs, by_id = names.jobs, self._by_id
        i = len(jobs) - 1 if before is None else bisect_left(jobs, before, key=_job_id) - 1
        out: list[Job] = []
        while i >= 0 and len(out) < limit:
            job = jobs[i]
            if by_id.get(job.id) is job:
                out.append(job)
            i -= 1
        return out

    def all_in_order(self) -> list[Job]:
        """Every job in id order, removed ones included (check `is_live`): the list itself, not a
        copy, so read it without awaiting in between (a listing bisects it)."""
        return self._all.jobs

    def name_in_order(self, name: str) -> list[Job]:
        """The jobs with handler ``name`` in id order, removed ones included (check `is_live`)."""
        names = self._by_name.get(name)
        return [] if names is None else names.jobs

    def is_live(self, job: Job) -> bool:
        """True while ``job`` is this table's job of its id (not deleted or evicted)."""
        return self._by_id.get(job.id) is job

    def names(self) -> list[str]:
        """Handler names with at least one job."""
        return list(self._by_name)
