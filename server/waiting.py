"""Waiting for a job's outcome, and the progress of running jobs: both in memory only.

`Waiters` answers "tell me when this job is final" (the protocol's WAIT, the HTTP API's
``GET /api/jobs/{id}?wait_ms=``) by push: the service's job observer calls `Waiters.settled` when a
job reaches a final state (succeeded, dead, cancelled) or is deleted, after its record is durable and
applied, and each waiter's callback runs then (or at its timeout). Memory is bounded: at most
`MAX_WAITERS_PER_OWNER` waiters per connection (or HTTP request source) and `MAX_WAITERS` in all;
past either the wait is refused BUSY instead of growing. A connection's waiters go with it
(`Waiters.drop_owner`).

`ProgressBoard` keeps the last progress a running job reported (PROGRESS). It is not logged:
progress is advisory, frequent and worthless after the job ends, so writing it to the log would
cost an append per report for nothing a restart needs. A restart forgets it, and it is dropped when
the job is final or deleted, so its size is bounded by the jobs not final yet (each message at most
`MAX_PROGRESS_MESSAGE` characters).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from spitfire.index.job import Job, JobState

from .errors import Overloaded, ValidationError

log = logging.getLogger("spitfire.server.waiting")

#: States a job stays in until a user acts (retry): a wait ends there.
FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})
#: Longest wait one request may ask for, in seconds (clients wait longer by asking again).
MAX_WAIT = 3600.0
#: Waiters one owner (a connection) may hold at once.
MAX_WAITERS_PER_OWNER = 1000
#: Waiters the server holds at once, over every owner.
MAX_WAITERS = 50_000
#: Longest progress message kept, in characters.
MAX_PROGRESS_MESSAGE = 1000
#: Seconds a client refused BUSY is told to wait before it asks again.
RETRY_AFTER = 1.0

#: ``done(job, deleted)``: the job is final (``deleted`` False), was deleted (True), or the wait
#: timed out (``job`` as it is now, not final; None if it is gone).
WaitDone = Callable[[Job | None, bool], None]


def check_timeout(timeout: object) -> None:
    """:raises ValidationError: ``timeout`` is not 0 to `MAX_WAIT` seconds."""
    if not (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and 0 <= timeout <= MAX_WAIT
    ):
        raise ValidationError("timeout", f"must be 0 to {MAX_WAIT:g} seconds")


class Waiter:
    """One pending wait; `Waiters` calls its ``done`` once at most."""

    __slots__ = ("done", "job_id", "owner", "timer")

    def __init__(self, job_id: str, owner: object, done: WaitDone) -> None:
        self.job_id = job_id
        self.owner = owner
        self.done: WaitDone | None = done
        self.timer: asyncio.TimerHandle | None = None


class Waiters:
    """Pending waits by job id and by owner (see the module docstring)."""

    def __init__(
        self,
        lookup: Callable[[str], Job | None],
        *,
        per_owner: int = MAX_WAITERS_PER_OWNER,
        total: int = MAX_WAITERS,
    ) -> None:
        #: The job of an id now (None: no such job), for timeouts.
        self.lookup = lookup
        self.per_owner = per_owner
        self.limit = total
        self._by_job: dict[str, list[Waiter]] = {}
        self._by_owner: dict[object, set[Waiter]] = {}
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, job: Job, owner: object, timeout: float, done: WaitDone) -> Waiter | None:
        """Call ``done`` when ``job`` is final or deleted, or after ``timeout`` seconds.

        A job already final, or ``timeout`` 0, is answered at once (None is returned).
        :raises ValidationError: ``timeout`` is not 0 to `MAX_WAIT` seconds.
        :raises Overloaded: the owner or the server holds its limit of waiters.
        """
        check_timeout(timeout)
        if job.state in FINAL_STATES or timeout == 0:
            done(job, False)
            return None
        mine = self._by_owner.get(owner)
        if mine is not None and len(mine) >= self.per_owner:
            raise Overloaded(
                f"this connection already waits on {self.per_owner} jobs (the limit); wait on fewer at once",
                RETRY_AFTER,
            )
        if self.count >= self.limit:
            raise Overloaded(f"the server already holds {self.limit} waiters (the limit)", RETRY_AFTER)
        waiter = Waiter(job.id, owner, done)
        waiter.timer = asyncio.get_running_loop().call_later(timeout, self._expire, waiter)
        self._by_job.setdefault(job.id, []).append(waiter)
        if mine is None:
            mine = self._by_owner[owner] = set()
        mine.add(waiter)
        self.count += 1
        return waiter

    def settled(self, job: Job, deleted: bool) -> None:
        """The job observer's part: answer the job's waiters if it is final or was deleted."""
        if (deleted or job.state in FINAL_STATES) and job.id in self._by_job:
            for waiter in self._by_job.pop(job.id):
                self._finish(waiter, job, deleted, forget_job=False)

    def cancel(self, waiter: Waiter) -> None:
        """Forget a waiter without calling it (its HTTP request went away)."""
        self._remove(waiter)

    def drop_owner(self, owner: object) -> int:
        """Forget every waiter of ``owner`` (its connection closed) without calling them."""
        mine = self._by_owner.pop(owner, None)
        if not mine:
            return 0
        for waiter in list(mine):
            self._remove(waiter, owned=False)
        return len(mine)

    # -- internals --------------------------------------------------------------------------------------

    def _expire(self, waiter: Waiter) -> None:
        waiter.timer = None
        self._finish(waiter, self.lookup(waiter.job_id), False, forget_job=True)

    def _finish(self, waiter: Waiter, job: Job | None, deleted: bool, *, forget_job: bool) -> None:
        done = waiter.done
        self._remove(waiter, forget_job=forget_job)
        if done is not None:
            try:
                done(job, deleted)
            except Exception:  # an answer that cannot be sent must not stop the others
                log.exception("answering a waiter of job %s failed", waiter.job_id)

    def _remove(self, waiter: Waiter, *, forget_job: bool = True, owned: bool = True) -> None:
        if waiter.done is None:
            return
        waiter.done = None
        self.count -= 1
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if forget_job:
            same = self._by_job.get(waiter.job_id)
            if same is not None:
                if waiter in same:
                    same.remove(waiter)
                if not same:
                    del self._by_job[waiter.job_id]
        if owned:
            mine = self._by_owner.get(waiter.owner)
            if mine is not None:
                mine.discard(waiter)
                if not mine:
                    del self._by_owner[waiter.owner]


@dataclass(frozen=True, slots=True)
class JobProgress:
    """The last progress a job reported."""

    value: float | None
    message: str | None
    #: When the server received it (epoch seconds).
    at: float


#: ``on_progress(job, progress)``: a job reported progress (the HTTP live events listen).
ProgressListener = Callable[[Job, JobProgress], None]


def check_progress(value: object, message: object) -> str | None:
    """Why a progress report is invalid (None when it is fine)."""
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        return "value must be a number from 0.0 to 1.0, or None"
    if message is not None and (not isinstance(message, str) or len(message) > MAX_PROGRESS_MESSAGE):
        return f"message must be a string of at most {MAX_PROGRESS_MESSAGE} characters, or None"
    return None


class ProgressBoard:
    """The last progress of each job not final yet (see the module docstring)."""

    def __init__(self) -> None:
        #: Job id -> its last progress (read it, do not change it: `report` and `settled` do).
        self.by_job: dict[str, JobProgress] = {}
        #: Told of each accepted report (set by the HTTP API for its live events).
        self.listener: ProgressListener | None = None

    def __len__(self) -> int:
        return len(self.by_job)

    def get(self, job_id: str) -> JobProgress | None:
        """The job's last progress, if it reported any and is not final."""
        return self.by_job.get(job_id)

    def report(self, job: Job, value: float | None, message: str | None, now: float) -> JobProgress:
        """Keep a running job's progress. :raises ValidationError: a field out of range."""
        why = check_progress(value, message)
        if why is not None:
            raise ValidationError(why.partition(" ")[0], why)
        progress = JobProgress(None if value is None else float(value), message, now)
        self.by_job[job.id] = progress
        if self.listener is not None:
            try:
                self.listener(job, progress)
            except Exception:
                log.exception("progress listener failed; detached")
                self.listener = None
        return progress

    def settled(self, job: Job, deleted: bool) -> None:
        """The job observer's part: forget the progress of a job final or deleted."""
        if deleted or job.state in FINAL_STATES:
            self.by_job.pop(job.id, None)
