"""The engine's state machine: what memory holds, and the one function that changes it, `apply`.

Memory only ever reflects records that are durable (commit, then apply): the engine appends a
record, waits for the commit that covers it (group and sync modes; async: the append itself), and
only then hands the record to `StateMachine.apply`. Recovery hands it the records it reads back, in
the same order, through the same function (and Raft followers will, through the same function
again). So whatever is delivered, listed, searched, found by idempotency key or streamed has been
made durable first.

`apply` is deterministic: it reads nothing but the state and the record (no clock: a record
carries its own time). It does not advance the id generator either: recovery does that once per
queue, and ids applied live came from it. It skips a record the job already reflects
(``lsn <= job.lsn``: snapshots may be fuzzy) and a record of a job it does not know (its enqueue
was lost to a repair, or the job was deleted or evicted since).
"""

from __future__ import annotations

import collections
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from spitfire.index.ids import IdGenerator
from spitfire.index.job import LEASED_STATES, AttemptError, Job, JobState
from spitfire.index.minutes import ENQUEUED as _COUNT_ENQUEUED
from spitfire.index.minutes import FAILED as _COUNT_FAILED
from spitfire.index.minutes import SUCCEEDED as _COUNT_SUCCEEDED
from spitfire.index.minutes import MinuteCounters
from spitfire.index.queue import QueueIndex
from spitfire.index.table import JobTable
from spitfire.wal.api import Durability, QueueLog

from . import records as rec
from .dedupe import RequestTokens
from .events import BatchObserver, JobObserver, ignore
from .records import RecordType
from .stats import JobTimings

log = logging.getLogger("spitfire.server.state")

_ENQUEUED = JobState.ENQUEUED
_SCHEDULED = JobState.SCHEDULED
_RETRYING = JobState.RETRYING
_RUNNING = JobState.RUNNING
_RESERVED = JobState.RESERVED

#: What `StateMachine.apply` calls for one record type: (queue, decoded body, LSN) -> its result.
Applier = Callable[["Queue", Any, int], Any]
#: A record appended and waiting for its commit: (lsn, type, decoded body, where to put what its
#: application returns or None, what new jobs it adds (count, payload bytes, keyed) or None).
Pending = tuple[int, int, Any, "list[Any] | None", "tuple[int, int, bool] | None"]


@dataclass(slots=True)
class Queue:
    """One queue: its log, its index, its flags, and its records waiting to be applied."""

    name: str
    log: QueueLog
    index: QueueIndex
    paused: bool = False
    #: LSN of the last finished snapshot (0: none).
    snapshot_lsn: int = 0
    #: A snapshot is being written.
    snapshotting: bool = False
    #: Every record up to this LSN has been applied (what a snapshot may claim to reflect).
    applied_lsn: int = 0
    #: Records appended but not applied yet, in LSN order (their commit is outstanding).
    pending: collections.deque[Pending] = field(default_factory=collections.deque)
    #: New jobs (and their payload bytes) in those records: backpressure counts them as pending.
    inflight_jobs: int = 0
    inflight_bytes: int = 0
    #: A deletion is under way (engine state, not logged): nothing is delivered from the queue, and
    #: enqueues and queue creations of its name wait for the deletion's outcome.
    deleting: bool = False
    #: LSN of the queue's QUEUE_DELETED record once appended (0: none). It is the last record the
    #: log ever gets: nothing more is appended after it.
    deleted_lsn: int = 0
    #: Per-minute counts of the queue's committed enqueue, ack and failure records (server/history.py).
    history: MinuteCounters = field(default_factory=MinuteCounters)
    #: Time of the QUEUE_DELETED record once applied (with ``deleted_lsn``: the deletion's identity).
    deleted_at: float = 0.0


def _history(job: Job, state: JobState, at: float) -> None:
    """Record that ``job`` enters ``state`` at ``at`` (before the index moves it). The first
    transition also records the state the job was created in, at ``created_at``: until then the
    history is None, so enqueue pays nothing for it (see `index.job.transitions`)."""
    h = job.history
    if h is None:
        job.history = [float(job.state), job.created_at, float(state), at]
    else:
        h.append(float(state))
        h.append(at)


def _add_error(job: Job, err: AttemptError) -> None:
    if job.errors is None:
        job.errors = [err]
    else:
        job.errors.append(err)


class StateMachine:
    """Every queue's jobs in memory, changed only by `apply` (plus the deliveries, which are not
    logged: `reserve` and lease extensions live in memory only, see the engine)."""

    def __init__(self, ids: IdGenerator) -> None:
        self.ids = ids
        self.table = JobTable()
        self.queues: dict[str, Queue] = {}
        #: worker id -> {job id: job} of the jobs it holds a lease on.
        self.workers: dict[str, dict[str, Job]] = {}
        #: Called with a queue's name when jobs became ready in it.
        self.on_ready: Callable[[str], None] | None = None
        #: Told of every job created, moved or deleted (attached after recovery).
        self.observer: JobObserver = ignore
        #: Told once of all the jobs one batch created, instead of `observer` once per job (when set).
        self.batch_observer: BatchObserver | None = None
        #: Told of each time at which a job will be due (a delayed job, a retry, a snooze), so that
        #: maintenance wakes up then (attached after recovery).
        self.on_deadline: Callable[[float], None] | None = None
        #: New jobs (and bytes) of every queue appended but not applied yet (see `Queue.inflight_jobs`).
        self.inflight_jobs = 0
        self.inflight_bytes = 0
        #: Per-minute counts of every queue together, deleted ones included (server/history.py): the
        #: parent of each live queue's counters (fed as their minutes are flushed), rebuilt after
        #: recovery by `history.rebuild_total`. Flush the queues' counters before reading it.
        self.history = MinuteCounters()
        #: Run and queue-wait seconds per queue and job name, for /metrics (memory only; None: not
        #: measured). Run times are counted here, as the record ending a started attempt is applied
        #: (from the START in the job's history to the record's time); waits by `Engine.start`.
        self.timings: JobTimings | None = JobTimings()
        #: The request-dedupe tokens of applied enqueue records (server/dedupe.py).
        self.tokens = RequestTokens()
        #: Keep the leases that JOBS_LEASED records and snapshots hold (a cluster's leader, whose
        #: successor continues them); False: a single node, where a recovered lease is ready again.
        self.keep_leases = False
        appliers: dict[int, Callable[[Queue, Any, int], Any]] = {
            RecordType.JOB_ENQUEUED: self._enqueued,
            RecordType.JOBS_ENQUEUED: self._batch_enqueued,
            RecordType.JOB_SUCCEEDED: self._counted_job_record(_COUNT_SUCCEEDED, self._succeeded),
            RecordType.JOB_FAILED: self._counted_job_record(_COUNT_FAILED, self._failed),
            RecordType.JOB_REQUEUED: self._job_record(self._requeued),
            RecordType.JOB_SNOOZED: self._job_record(self._snoozed),
            RecordType.JOB_RELEASED: self._job_record(self._released),
            RecordType.JOB_CANCELLED: self._job_record(self._cancelled),
            RecordType.JOB_RETRIED: self._job_record(self._retried),
            RecordType.JOB_DELETED: self._job_record(self._deleted),
            RecordType.QUEUE_PAUSED: self._paused,
            RecordType.QUEUE_RESUMED: self._resumed,
            RecordType.QUEUE_DURABILITY: self._durability,
            RecordType.QUEUE_DELETED: self._queue_deleted,
            RecordType.JOBS_LEASED: self._leased,
        }
        #: Indexed by record type byte (None: a type this build does not know).
        self._appliers: list[Callable[[Queue, Any, int], Any] | None] = [appliers.get(t) for t in range(256)]

    # -- the one entry point ----------------------------------------------------------------------------

    def apply(self, q: Queue, lsn: int, rtype: int, body: Any) -> Any:
        """Apply one durable record (``body`` decoded: a Job, or the record's struct) to memory.

        Returns what the change did that its writer must act on: for a cancel or a delete, the id
        of the worker whose lease it revoked (None otherwise); for a queue's deletion, the
        (worker id, job id) of every lease it revoked.
        """
        applier = self._appliers[rtype]
        if applier is None:
            raise rec.UnknownRecordType(rtype)
        result = applier(q, body, lsn)
        q.applied_lsn = lsn
        return result

    # -- helpers ----------------------------------------------------------------------------------------

    def notify(self, q: Queue) -> None:
        """Tell the dispatcher that jobs became ready in ``q`` (unless it is paused)."""
        if self.on_ready is not None and not q.paused:
            self.on_ready(q.name)

    def transition(self, q: Queue, job: Job, state: JobState, at: float, lsn: int) -> None:
        """Move ``job`` to ``state`` at ``at`` (``lsn``: the record that moved it; 0 for a delivery)."""
        _history(job, state, at)
        job.updated_at = at
        if lsn:
            job.lsn = lsn
        q.index.move(job, state)
        self.observer(job, False)

    def drop_lease(self, job: Job) -> str | None:
        """Forget who holds ``job``; returns that worker's id (None when nobody did)."""
        worker = job.worker
        if worker is not None:
            held = self.workers.get(worker)
            if held is not None:
                held.pop(job.id, None)
                if not held:
                    del self.workers[worker]
        job.worker = None
        job.lease_until = None
        return worker

    def _ended(self, job: Job, at: float) -> None:
        """A started (RUNNING) attempt of ``job`` ends at ``at``: count its run time, from the START
        (the history's last entry) to ``at``. Recovery never gets here: it holds no running job."""
        timings = self.timings
        h = job.history
        if timings is not None and h is not None:
            timings.ran(job.queue, job.name, at - h[-1])

    # -- new jobs ---------------------------------------------------------------------------------------

    def _enqueued(self, q: Queue, job: Job, lsn: int) -> None:
        # Counted before any skip: the history counts committed records (see `_counted_job_record`).
        q.history.add(job.created_at, _COUNT_ENQUEUED)
        if job.id in self.table:  # a fuzzy snapshot already holds it
            return
        job.lsn = lsn
        q.index.add(job)
        self.observer(job, False)
        if job.state is _ENQUEUED:
            self.notify(q)
        elif job.run_at is not None and self.on_deadline is not None:
            self.on_deadline(job.run_at)

    def _batch_enqueued(self, q: Queue, body: rec.JobsEnqueued, lsn: int) -> None:
        table = self.table
        new = body.jobs
        if body.request_token is not None and new:  # before any skip: the token is the record's
            self.tokens.record(
                body.request_token, q.name, new[0].name, [j.id for j in new], new[0].created_at
            )
        if new:  # one batch, one time
            q.history.add(new[0].created_at, _COUNT_ENQUEUED, len(new))
        if new and new[0].id in table:  # a fuzzy snapshot (of an older build) already holds some
            new = [job for job in new if job.id not in table]
        if not new:
            return
        qname = q.name
        keyed = False
        if new[0].queue is not qname:  # decoded from the log (live jobs carry the queue's name)
            for job in new:
                job.queue = qname
        for job in new:
            job.lsn = lsn
            if job.idempotency_key is not None:
                keyed = True
        if keyed:
            add = q.index.add
            for job in new:
                add(job)
        else:
            q.index.add_many(new)
        self._report_batch(new)
        if new[0].state is _ENQUEUED:  # one batch, one set of options: one state
            self.notify(q)
        elif new[0].run_at is not None and self.on_deadline is not None:
            self.on_deadline(new[0].run_at)

    def _report_batch(self, new: list[Job]) -> None:
        if self.batch_observer is not None:
            self.batch_observer(new)
        elif self.observer is not ignore:
            observer = self.observer
            for job in new:
                observer(job, False)

    # -- records of one existing job ----------------------------------------------------------------------

    def _counted_job_record(self, field: int, change: Callable[[Queue, Job, Any, int], Any]) -> Applier:
        """`_job_record` that first counts its record (at the record's own time) in the queue's
        history, whether or not the job still reflects it: the history counts committed records,
        so replay after a fuzzy snapshot (whose jobs may already reflect the record) counts exactly
        what the live server counted (server/history.py)."""
        table = self.table

        def apply(q: Queue, body: Any, lsn: int) -> Any:
            q.history.add(body.at, field)
            job = table.get(body.id)
            if job is None or lsn <= job.lsn:
                return None
            return change(q, job, body, lsn)

        return apply

    def _job_record(self, change: Callable[[Queue, Job, Any, int], Any]) -> Callable[[Queue, Any, int], Any]:
        """An applier that finds the record's job and skips what the job already reflects."""
        table = self.table

        def apply(q: Queue, body: Any, lsn: int) -> Any:
            job = table.get(body.id)
            if job is None or lsn <= job.lsn:
                return None
            return change(q, job, body, lsn)

        return apply

    def _succeeded(self, q: Queue, job: Job, body: rec.JobSucceeded, lsn: int) -> None:
        if job.state is _RUNNING:
            self._ended(job, body.at)
        self.drop_lease(job)
        job.attempts = body.attempts
        job.result = body.result
        job.run_at = None
        self.transition(q, job, JobState.SUCCEEDED, body.at, lsn)

    def _failed(self, q: Queue, job: Job, body: rec.JobFailed, lsn: int) -> None:
        if job.state is _RUNNING:
            self._ended(job, body.at)
        self.drop_lease(job)
        job.attempts = body.attempt
        _add_error(job, AttemptError(body.attempt, body.at, body.error, body.traceback))
        if body.dead or body.retry_at is None:
            job.run_at = None
            self.transition(q, job, JobState.DEAD, body.at, lsn)
        else:
            job.run_at = body.retry_at
            self.transition(q, job, _RETRYING, body.at, lsn)
            if self.on_deadline is not None:
                self.on_deadline(body.retry_at)

    def _requeued(self, q: Queue, job: Job, body: rec.JobRequeued, lsn: int) -> None:
        if job.state is _RUNNING:  # its lease was lost: the attempt ended
            self._ended(job, body.at)
        self.drop_lease(job)
        job.attempts = body.attempts
        if body.error is not None:
            _add_error(job, AttemptError(body.attempts, body.at, body.error))
        job.run_at = None
        self.transition(q, job, _ENQUEUED, body.at, lsn)
        self.notify(q)

    def _snoozed(self, q: Queue, job: Job, body: rec.JobSnoozed, lsn: int) -> None:
        if job.state is _RUNNING:  # RetryAfter: the attempt ran
            self._ended(job, body.at)
        self.drop_lease(job)
        job.attempts = body.attempts
        # SCHEDULED even when already due: the next promotion pass moves it (deterministic: the
        # record, not the clock at apply time, decides).
        job.run_at = body.run_at
        self.transition(q, job, _SCHEDULED, body.at, lsn)
        if self.on_deadline is not None:
            self.on_deadline(body.run_at)

    def hold(self, job: Job, worker: str) -> None:
        """Record that ``worker`` holds ``job``'s lease (``job.worker`` and ``lease_until`` set)."""
        held = self.workers.get(worker)
        if held is None:
            held = self.workers[worker] = {}
        held[job.id] = job

    def _leased(self, q: Queue, body: rec.JobsLeased, lsn: int) -> None:
        """Replay of a delivery or lease extension (the leader that logged it applied it in memory).

        A ready job whose next attempt is the lease's is reserved to the record's worker; a job that
        worker already holds keeps the later of the two ends; anything else (the job moved on since:
        finished, taken back, leased again) ignores it. Kept only with `keep_leases`."""
        if not self.keep_leases:
            return
        table, worker = self.table, body.worker
        for lease in body.leases:
            job = table.get(lease.id)
            if job is None or job.queue != q.name or lsn <= job.lsn:
                continue
            if job.state is _ENQUEUED and lease.attempts == job.attempts + 1:
                job.attempts = lease.attempts
                job.worker = worker
                job.lease_until = lease.until
                self.hold(job, worker)
                self.transition(q, job, _RESERVED, body.at, lsn)
            elif job.state in LEASED_STATES and job.worker == worker:
                q.index.extend_lease(job, max(lease.until, job.lease_until or 0.0))

    def _released(self, q: Queue, job: Job, body: rec.JobEvent, lsn: int) -> None:
        self.drop_lease(job)
        job.attempts = body.attempts
        job.run_at = None
        self.transition(q, job, _ENQUEUED, body.at, lsn)
        self.notify(q)

    def _cancelled(self, q: Queue, job: Job, body: rec.JobEvent, lsn: int) -> str | None:
        leased = job.state in LEASED_STATES
        worker = self.drop_lease(job)
        job.attempts = body.attempts
        job.run_at = None
        self.transition(q, job, JobState.CANCELLED, body.at, lsn)
        return worker if leased else None

    def _retried(self, q: Queue, job: Job, body: rec.JobEvent, lsn: int) -> None:
        self.drop_lease(job)
        job.attempts = 0
        job.run_at = None
        self.transition(q, job, _ENQUEUED, body.at, lsn)
        self.notify(q)

    def _deleted(self, q: Queue, job: Job, body: rec.JobEvent, lsn: int) -> str | None:
        leased = job.state in LEASED_STATES
        worker = self.drop_lease(job)
        job.lsn = lsn
        q.index.remove(job, forget_key=True)
        self.observer(job, True)
        return worker if leased else None

    # -- records of the queue ---------------------------------------------------------------------------

    def _paused(self, q: Queue, body: rec.QueueEvent, lsn: int) -> None:
        q.paused = True

    def _resumed(self, q: Queue, body: rec.QueueEvent, lsn: int) -> None:
        q.paused = False
        if q.index.counts[_ENQUEUED]:
            self.notify(q)

    def _durability(self, q: Queue, body: rec.QueueDurability, lsn: int) -> None:
        q.log.set_durability(Durability(body.mode))

    def _queue_deleted(self, q: Queue, body: rec.QueueEvent, lsn: int) -> list[tuple[str, str]]:
        """QUEUE_DELETED: forget the queue, every job of it whatever its state, its idempotency keys
        and the leases of its jobs (the observer hears of each job as deleted). The queue's name is
        free again: a later write creates a new, empty queue. The log's files are the engine's to
        remove (`Storage.drop_log`). Returns (worker id, job id) of each lease revoked."""
        revoked: list[tuple[str, str]] = []
        observer = self.observer
        for job in q.index.drop():
            leased = job.state in LEASED_STATES
            worker = self.drop_lease(job)
            if leased and worker is not None:
                revoked.append((worker, job.id))
            job.lsn = lsn
            observer(job, True)
        q.paused = False
        q.deleted_lsn = lsn
        q.deleted_at = body.at
        q.history.flush()  # its last minute into the total, which keeps it
        if self.timings is not None:
            self.timings.forget_queue(q.name)
        if self.queues.get(q.name) is q:
            del self.queues[q.name]
        return revoked


def decode_record(rtype: int, body: bytes) -> msgspec.Struct:
    """A record's body decoded for `StateMachine.apply` (job records: a `Job`)."""
    return rec.decode(rtype, body)


def intern_jobs(q: Queue, jobs: list[Job]) -> None:
    """Give decoded jobs their queue's name object and an interned handler name (memory: one string
    object per name however many jobs carry it)."""
    name = q.name
    intern = sys.intern
    for job in jobs:
        job.queue = name
        job.name = intern(job.name)
