"""The queue engine: the commands that change jobs and queues, over the state machine and the logs.

No network and no clock: every operation takes ``now``. Every change follows one rule, commit then
apply: validate against memory (raise a typed error and change nothing) -> append the record ->
wait for its commit -> `StateMachine.apply` it -> answer. Memory, and so everything anyone can see
(deliveries, lists, searches, idempotency keys, events), reflects only durable records. Records are
applied in LSN order by the log's durability listener, not by the coroutine that wrote them, so a
writer that goes away (a cancelled request) cannot leave its durable record unapplied: that
machinery is `server/commit.py` (`Commits`), the state and its one `apply` `server/state.py`.

While a record about a job waits for its commit, the next command on that job first waits for it
(`_settle`), so that it validates against the outcome; two enqueues with one idempotency key in one
commit group make one job the same way. Completions (ack, fail, cancel, delete, retry) append with
``reserved=True`` so that a full disk refuses new jobs first while workers keep finishing theirs.
Deliveries (reserve, start, lease extension) are not logged: after a crash a reserved job is ready
again, and it may run more than once (at-least-once).

A failed fdatasync is fail-stop: the engine takes no more writes (`StorageFailed`), the records
waiting for the failed commit are never applied, and ``on_failure`` tells the server to stop;
recovery on the next start decides what is durable (never retry an fsync as if the data were safe).

`tick` is the deterministic maintenance entry point: it promotes due jobs, expires leases, evicts
history and idempotency keys, starts snapshots, and returns when it next has work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from spitfire.index.backoff import retry_delay
from spitfire.index.ids import IdGenerator
from spitfire.index.job import ACTIVE_STATES, LEASED_STATES, MAX_PRIORITY, Job, JobState
from spitfire.index.queue import QueueIndex
from spitfire.index.table import JobTable
from spitfire.wal.api import Durability, NoSpaceError, Storage, StorageError

from . import records as rec
from . import validation as v
from .building import DEFAULT_OPTIONS, JobBuilder, JobOptions
from .commit import Commits
from .config import EngineConfig
from .dedupe import TokenEntry, check_token
from .definitions import Defaults, Definitions
from .errors import (
    InvalidTransition,
    NoSpace,
    QueueNotEmpty,
    QueueNotFound,
    StaleLease,
    StorageFailed,
    TooManyQueues,
    ValidationError,
)
from .events import BatchObserver, JobObserver
from .history import (
    HistoryPoint,
    history_points,
    rebuild_total,
    retire,
    retired_history_file,
    total_counters,
)
from .queries import EngineStats, JobFilter, Queries, QueueStats, check_filter
from .records import RecordType
from .recovery import load_queue
from .schedules import Schedules
from .snapshots import write_snapshot
from .state import Queue, StateMachine
from .stats import JobTimings, SnapshotStats

__all__ = [
    "BULK_CHUNK",
    "LEASE_EXPIRED",
    "WORKER_LOST",
    "BulkAction",
    "BulkResult",
    "Engine",
    "EngineStats",
    "JobFilter",
    "JobOptions",
    "Queue",
    "QueueDeletion",
    "QueueStats",
]

log = logging.getLogger("spitfire.server.engine")

#: The error recorded when a lease ran out without a heartbeat or an outcome.
LEASE_EXPIRED = "lease expired"
#: The error recorded when a worker's connection dropped while it held the job.
WORKER_LOST = "worker disconnected"
#: Seconds before a lease whose final record could not be appended (disk full) is tried again.
LEASE_RETRY = 1.0

_ENQUEUED = JobState.ENQUEUED
_RESERVED = JobState.RESERVED
_RUNNING = JobState.RUNNING
_ENQUEUED_AT = float(JobState.ENQUEUED)  # as a job's history holds states
_encode = rec.encode
_JOB_ENQUEUED = int(RecordType.JOB_ENQUEUED)
_JOBS_ENQUEUED = int(RecordType.JOBS_ENQUEUED)


#: What `Engine.bulk` can do to each job.
BulkAction = Literal["retry", "requeue", "cancel", "delete"]
_BULK_ACTIONS: tuple[str, ...] = get_args(BulkAction)
#: Jobs one chunk of a bulk action appends before it waits for their commit (and lets the loop run).
BULK_CHUNK = 1000
#: Job ids one bulk action may name at most.
MAX_BULK_IDS = 10_000


@dataclass(slots=True)
class BulkResult:
    """What `Engine.bulk` did (every ``done`` item durably)."""

    #: Jobs the ids or the filter named (ids of unknown jobs are not counted).
    matched: int = 0
    #: Of them, the jobs the action was done to.
    done: int = 0
    #: Of them, the jobs it does not apply to (e.g. retrying a succeeded job) or that failed.
    failed: int = 0
    #: Worker id -> ids of the jobs cancelled or deleted under its lease: tell each to stop them.
    revoked: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueDeletion:
    """What `Engine.delete_queue` did (durably)."""

    queue: str
    #: Jobs forgotten with the queue, whatever their state.
    jobs: int
    #: Of them, the pending ones dropped (0 unless ``force``).
    pending: int
    #: Worker id -> ids of the jobs it held a lease on: tell each to stop them (like a cancel).
    revoked: dict[str, list[str]]


class Engine(Queries):
    """All queues of one server. Single-threaded: call it from the event loop only."""

    def __init__(
        self,
        storage: Storage,
        config: EngineConfig | None = None,
        *,
        on_ready: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        config = config or EngineConfig()
        self._rng = rng or random.Random()
        self.ids = IdGenerator(self._rng)
        super().__init__(StateMachine(self.ids), config)
        self.state.keep_leases = config.log_leases
        self.storage = storage
        self.builder = JobBuilder(config, self.ids)
        self.state.on_ready = on_ready
        #: Queues whose files are being created (first enqueue to a new queue), by name.
        self._creating: dict[str, asyncio.Future[Queue]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._opened = False
        #: Records waiting for their commit, applied once durable (commit, then apply).
        self.commits = Commits(self.state)
        #: Queues being deleted, by name: done (always with None) once the deletion was refused or
        #: finished (files removed). Writers that would create the name wait for it.
        self._deleting: dict[str, asyncio.Future[None]] = {}
        #: Snapshots being written, by queue name: done when the snapshot ended (a deletion waits).
        self._snapshots: dict[str, asyncio.Future[None]] = {}
        #: Admits or refuses (raising, e.g. `Overloaded`) ``jobs`` new jobs of ``nbytes`` payload bytes
        #: into a queue, before anything else is done (backpressure; None admits everything).
        self.admission: Callable[[str, int, int], None] | None = None
        #: Durations of the snapshots written (for /metrics).
        self.snapshot_stats = SnapshotStats()
        #: Recurring schedules: their own log, ticks enqueued through `enqueue` (server/schedules.py).
        self.schedules = Schedules(
            storage,
            self._enqueue_tick,
            self._check_job,
            on_deadline=self._deadline,
            on_failure=self.commits.stop,
        )
        #: Job definitions registered by workers: the defaults (and payload checks) of every enqueue of
        #: a defined job name (server/definitions.py), kept in a log of their own.
        self.definitions = Definitions(storage, config, on_failure=self.commits.stop)
        #: The definitions' `Defaults` by job name: the same dict for the engine's life (hot path).
        self._defined = self.definitions.defaults
        #: The history graph's counts of deleted queues (server/history.py).
        self.retired_history = retired_history_file(storage)

    # -- hooks (kept on the state machine, which calls them as it applies records) ---------------------

    @property
    def on_ready(self) -> Callable[[str], None] | None:
        """Called with a queue's name when jobs became ready in it (enqueue, promotion, requeue...)."""
        return self.state.on_ready

    @on_ready.setter
    def on_ready(self, callback: Callable[[str], None] | None) -> None:
        self.state.on_ready = callback

    @property
    def observer(self) -> JobObserver:
        """Told of every job created, moved or deleted after open, once the change is durable."""
        return self.state.observer

    @observer.setter
    def observer(self, observer: JobObserver) -> None:
        self.state.observer = observer

    @property
    def batch_observer(self) -> BatchObserver | None:
        """Told once of all the jobs one batch created, instead of `observer` once per job."""
        return self.state.batch_observer

    @batch_observer.setter
    def batch_observer(self, observer: BatchObserver | None) -> None:
        self.state.batch_observer = observer

    @property
    def on_deadline(self) -> Callable[[float], None] | None:
        """Told of each new time at which something will be due (a delayed job, a retry, a lease end)."""
        return self.state.on_deadline

    @on_deadline.setter
    def on_deadline(self, callback: Callable[[float], None] | None) -> None:
        self.state.on_deadline = callback

    @property
    def failure(self) -> StorageError | None:
        """Why the storage failed (the engine failed-stop and takes no more writes), or None."""
        return self.commits.failure

    @property
    def on_failure(self) -> Callable[[str], None] | None:
        """Called once, with the reason, when the engine fails-stop (the server stops on it)."""
        return self.commits.on_failure

    @on_failure.setter
    def on_failure(self, callback: Callable[[str], None] | None) -> None:
        self.commits.on_failure = callback

    @property
    def job_timings(self) -> JobTimings | None:
        """Run and queue-wait seconds per queue and job name since the start (for /metrics)."""
        return self.state.timings

    @property
    def table(self) -> JobTable:
        """Every job of every queue, by id."""
        return self.state.table

    # -- life cycle -------------------------------------------------------------------------------------

    async def open(self, now: float) -> None:
        """Recover every queue from storage (snapshot, then records), then promote what is due."""
        if self._opened:
            raise RuntimeError("engine already open")
        self.state.table.defer_order()  # sorted once below, after every queue is loaded
        self.retired_history.load()
        for name in self.storage.queues():
            q = self._open_queue(name)
            if q.deleted_lsn:
                await self._forget_deleted(q)
            await asyncio.sleep(0)
        rebuild_total(self.state, self.retired_history)
        self.state.table.sort_names()
        self.definitions.open()
        self.schedules.open()
        self._opened = True
        for q in self.state.queues.values():
            self._promote(q, now)

    def _open_queue(self, name: str) -> Queue:
        log_, recovery = self.storage.open_log(name, self.config.durability)
        q = Queue(name, log_, self._new_index(name))
        self.state.queues[name] = q
        load_queue(self.state, q, recovery)
        q.applied_lsn = log_.last_lsn  # everything recovered is durable and applied
        self._listen(q)
        return q

    def _listen(self, q: Queue) -> None:
        self.commits.listen(q)

    def _deadline(self, at: float) -> None:
        if self.state.on_deadline is not None:
            self.state.on_deadline(at)

    async def _enqueue_tick(
        self, queue: str, name: str, payload: bytes, now: float, options: JobOptions, key: str | None
    ) -> tuple[Job, bool]:
        return await self.enqueue(queue, name, payload, now=now, options=options, idempotency_key=key)

    def _check_job(self, queue: str, name: str, payload: bytes, now: float, options: JobOptions) -> None:
        """Check a job as `enqueue` would, without making it (a schedule's definition)."""
        v.check_queue(queue, self.config)
        d = self._definition(name)
        if d is not None:
            d.check(payload, "payload", self.config.max_payload)
            options = d.fill(options)
        self.builder.build(queue, name, (payload,), now, options)

    def _definition(self, name: object) -> Defaults | None:
        """The definition of job ``name`` as enqueues use it, if it has one."""
        return self._defined.get(name) if self._defined and name.__class__ is str else None  # type: ignore[call-overload]

    def _defined_options(self, name: object, payloads: Sequence[bytes], options: JobOptions) -> JobOptions:
        """``options`` filled from job ``name``'s definition once ``payloads`` passed its checks."""
        d = self._definition(name)
        return options if d is None else d.batch(payloads, options, self.config.max_payload)

    def _new_index(self, name: str) -> QueueIndex:
        return QueueIndex(name, self.state.table, retention=self.config.retention)

    def stats_history(
        self, now: float, minutes: int, step: int, queue: str | None = None
    ) -> list[HistoryPoint]:
        """Enqueued, succeeded and failed jobs per ``step`` seconds over the last ``minutes`` minutes
        up to ``now``, of ``queue`` or of every queue (deleted ones included), oldest first
        (server/history.py). :raises ValidationError: bad minutes or step. :raises QueueNotFound:"""
        counters = total_counters(self.state) if queue is None else self._queue(queue).history
        return history_points(counters, now, minutes, step)

    async def close(self) -> None:
        """Let running snapshots finish, make every log durable and close the storage."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.failure is None:
            for q in self.state.queues.values():
                await q.log.flush()
        await self.storage.close()

    # -- helpers ----------------------------------------------------------------------------------------

    async def _queue_for_write(self, name: str) -> Queue:
        """The queue, created (files made durable off the loop) if it does not exist yet.

        Concurrent first writers of one queue share one creation; a caller that is cancelled does
        not cancel it for the others.
        """
        while (deleting := self._deleting.get(name)) is not None:
            await asyncio.shield(deleting)  # refused: the queue stays; done: the name is free
        q = self.state.queues.get(name)
        if q is not None:
            return q
        creating = self._creating.get(name)
        if creating is None:
            if len(self.state.queues) + len(self._creating) >= self.config.max_queues:
                raise TooManyQueues(name, self.config.max_queues)
            creating = self._creating[name] = asyncio.ensure_future(self._create_queue(name))
            # Its error reaches every waiter; retrieved here too in case all of them were cancelled.
            creating.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(creating)

    async def _create_queue(self, name: str) -> Queue:
        name = sys.intern(name)
        try:
            log_ = await self.storage.create_log(name, self.config.durability)
        except NoSpaceError:
            raise NoSpace(name) from None
        finally:
            del self._creating[name]
        q = self.state.queues[name] = Queue(name, log_, self._new_index(name))
        self._listen(q)
        return q

    async def _held(self, job_id: str, worker_id: str) -> tuple[Queue, Job]:
        if job_id in self.commits.inflight:
            await self.commits.settle(job_id)
        return self._held_now(job_id, worker_id)

    def _held_now(self, job_id: str, worker_id: str) -> tuple[Queue, Job]:
        q, job = self._job(job_id)
        if job.state not in LEASED_STATES or job.worker != worker_id:
            raise StaleLease(
                job_id, worker_id, job.worker if job.state in LEASED_STATES else None, job.state.label
            )
        return q, job

    async def _settled_job(self, job_id: str) -> tuple[Queue, Job]:
        if job_id in self.commits.inflight:
            await self.commits.settle(job_id)
        return self._job(job_id)

    def _append(self, q: Queue, rtype: RecordType, body: bytes, reserved: bool) -> int:
        self.commits.writable()
        if q.deleted_lsn:  # QUEUE_DELETED is the last record of its log
            raise QueueNotFound(q.name, deleting=True)
        try:
            return q.log.append(rtype, body, reserved=reserved)
        except NoSpaceError:
            raise NoSpace(q.name) from None

    # -- enqueue ----------------------------------------------------------------------------------------

    def _existing(self, queue: str, key: str | None, now: float) -> Job | None:
        """The job an idempotency key already names in ``queue`` (a stub if it left history)."""
        q = self.state.queues.get(queue)
        if key is None or q is None:
            return None
        entry = q.index.keys.entry(key)
        if entry is None or entry[2] <= now:
            return None
        job = self.state.table.get(entry[0])
        if job is None:  # forgotten by retention: a stand-in in the state the job ended in
            job = Job(
                entry[0],
                queue,
                entry[1],
                b"",
                JobState(entry[3] or JobState.SUCCEEDED),
                0.0,
                idempotency_key=key,
            )
        return job

    async def enqueue(
        self,
        queue: str,
        name: str,
        payload: bytes,
        *,
        now: float,
        options: JobOptions = DEFAULT_OPTIONS,
        idempotency_key: str | None = None,
        request_token: bytes | None = None,
    ) -> tuple[Job, bool]:
        """Add a job; returns it and True once it is durable, or the job its idempotency key already
        names and False (once that one is durable). ``options``: how it runs (`JobOptions`).
        ``request_token`` (server/dedupe.py): when a committed request carried it, that request's job
        and True, and nothing is added.

        :raises ValidationError: (naming the field) or `PayloadTooLarge`; :raises NoSpace: disk full;
        :raises StorageFailed: the storage failed (the server is stopping).
        """
        if self.admission is not None:
            self.admission(queue, 1, len(payload) if payload.__class__ is bytes else 0)
        q = self.state.queues.get(queue) if queue.__class__ is str else None
        defined = self._defined
        d = defined.get(name) if defined and name.__class__ is str else None
        if d is not None:  # the job's definition: checks the payload, fills the options left unset
            if d.validator is not None:
                d.check(payload, "payload", self.config.max_payload)
            options = d.fill(options)
        o = options
        priority = o.priority
        if (
            q is not None
            and not q.deleting
            and idempotency_key is None
            and request_token is None
            and o.run_at is None
            and o.delay is None
            and o.headers is None
            # Options at their default, or exactly a definition's (checked when it was registered).
            and (
                (o.max_attempts is None and o.backoff is None and o.timeout is None)
                or (d is not None and o is d.options)
            )
            and payload.__class__ is bytes
            and priority.__class__ is int
            and 0 <= priority <= MAX_PRIORITY
            and len(payload) <= self.config.max_payload
        ):
            # The common case (an existing queue, every option but the priority at its default).
            job = self.builder.default_job(q.name, name, payload, now, priority, o)
        else:
            return await self._enqueue_with(
                queue, name, payload, now, options, idempotency_key, request_token
            )
        # The append and the submit are inlined (this is the hottest path of the server).
        commits = self.commits
        if commits.failure is not None:
            raise StorageFailed(str(commits.failure))
        log_ = q.log
        try:
            lsn = log_.append(_JOB_ENQUEUED, _encode(job))
        except NoSpaceError:
            raise NoSpace(q.name) from None
        job.lsn = lsn
        fut = log_.commit(lsn)
        if fut is None and not q.pending:
            self.state.apply(q, lsn, _JOB_ENQUEUED, job)
            return job, True
        nbytes = len(payload)
        q.pending.append((lsn, _JOB_ENQUEUED, job, None, (1, nbytes, False)))
        q.inflight_jobs += 1
        q.inflight_bytes += nbytes
        state = self.state
        state.inflight_jobs += 1
        state.inflight_bytes += nbytes
        try:
            await (fut if fut is not None else log_.flush())
        except StorageError as exc:
            raise StorageFailed(str(exc)) from None
        if job.seq == 0:  # never indexed: the commit failed and the engine failed-stop meanwhile
            raise StorageFailed(str(commits.failure or "the job was not applied"))
        return job, True

    async def _enqueue_with(
        self,
        queue: str,
        name: str,
        payload: bytes,
        now: float,
        options: JobOptions,
        raw_key: str | None,
        raw_token: bytes | None = None,
    ) -> tuple[Job, bool]:
        key = v.check_key(raw_key)
        token = check_token(raw_token)
        if token is None:
            return await self._enqueue_new(queue, name, payload, now, options, key, None)
        tokens = self.state.tokens
        async with tokens.exclusive(token):
            known = tokens.lookup(token, queue, name, now)
            if known is not None:  # a resend of a committed request: its job, nothing added
                return self._token_job(known, known.job_ids[0]), True
            return await self._enqueue_new(queue, name, payload, now, options, key, token)

    def _token_job(self, entry: TokenEntry, job_id: str) -> Job:
        """The job a committed token's request created (a stand-in once it was deleted or evicted)."""
        job = self.state.table.get(job_id)
        if job is None:
            job = Job(job_id, entry.queue, entry.name, b"", JobState.SUCCEEDED, 0.0)
        return job

    async def _enqueue_new(
        self,
        queue: str,
        name: str,
        payload: bytes,
        now: float,
        options: JobOptions,
        key: str | None,
        token: bytes | None,
    ) -> tuple[Job, bool]:
        q = self.state.queues.get(queue)
        if q is None or q.deleting:
            v.check_queue(queue, self.config)
            # Every argument is checked before the new queue's files exist (a refused request
            # creates nothing); the job built here is thrown away, only the first enqueue pays.
            self.builder.build(queue, name, (payload,), now, options)
            q = await self._queue_for_write(queue)
        if key is not None:
            await self.commits.settle_key(q, key)
            # Nothing below awaits before the append: no other enqueue can take the key meanwhile.
            existing = self._existing(q.name, key, now)
            if existing is not None:
                return existing, False
        (job,) = self.builder.build(q.name, name, (payload,), now, options)
        job.idempotency_key = key
        new = (1, len(job.payload), key is not None)
        if token is not None:  # the token travels in the record: a batch of one job
            body = rec.JobsEnqueued([job], token)
            lsn = job.lsn = self._append(q, RecordType.JOBS_ENQUEUED, _encode(body), False)
            await self.commits.submit(q, lsn, _JOBS_ENQUEUED, body, new=new)
            return job, True
        lsn = self._append(q, RecordType.JOB_ENQUEUED, _encode(job), False)
        job.lsn = lsn
        await self.commits.submit(q, lsn, _JOB_ENQUEUED, job, new=new)
        return job, True

    async def enqueue_batch(
        self,
        queue: str,
        name: str,
        payloads: Sequence[bytes],
        *,
        now: float,
        options: JobOptions = DEFAULT_OPTIONS,
        idempotency_keys: Sequence[str | None] | None = None,
        request_token: bytes | None = None,
    ) -> tuple[list[Job], list[bool] | None]:
        """Add many jobs of one handler with the same options in one record and one commit. Returns
        the jobs, one per payload (a key that names an existing job gives that job), and which of
        them are new (None when all are). Either every new job is added or none is.
        ``request_token`` (server/dedupe.py): when a committed request carried it, that request's
        jobs, and nothing is added.
        """
        c = self.config
        q = self.state.queues.get(queue) if queue.__class__ is str else None
        if q is None or q.deleting:  # an existing queue's name was checked when the queue was made
            v.check_queue(queue, c)
        if payloads.__class__ is not list and (
            not isinstance(payloads, Sequence) or isinstance(payloads, bytes | str)
        ):
            raise ValidationError("payloads", "must be a list of payloads")
        count = len(payloads)
        if not 1 <= count <= c.max_batch:
            raise ValidationError("payloads", f"must hold 1 to {c.max_batch} payloads")
        try:
            size = sum(map(len, payloads))
        except TypeError:  # a payload that is not bytes: `build` names it
            size = 0
        # The job's definition, if any: checks each payload and fills the options left unset.
        options = self._defined_options(name, payloads, options)
        if self.admission is not None:
            self.admission(queue, count, size)
        keys: list[str | None] | None = None
        if idempotency_keys is not None:
            if isinstance(idempotency_keys, str | bytes) or len(idempotency_keys) != count:
                raise ValidationError("idempotency_keys", "must have one entry per payload")
            keys = [v.check_key(raw) for raw in idempotency_keys]
            if all(key is None for key in keys):
                keys = None
        token = check_token(request_token)
        if token is None:
            return await self._batch_new(queue, name, payloads, now, options, keys, size, None)
        tokens = self.state.tokens
        async with tokens.exclusive(token):
            known = tokens.lookup(token, queue, name, now)
            if known is not None:  # a resend of a committed request: its jobs, nothing added
                return self._token_batch(known, keys, now)
            return await self._batch_new(queue, name, payloads, now, options, keys, size, token)

    def _token_batch(
        self, entry: TokenEntry, keys: list[str | None] | None, now: float
    ) -> tuple[list[Job], list[bool] | None]:
        """What a committed batch answered: its new jobs in order, and for a payload whose key named
        an existing job (none of the new ones), that job again."""
        if keys is None:
            return [self._token_job(entry, i) for i in entry.job_ids], None
        made = iter(entry.job_ids)
        new = set(entry.job_ids)
        seen: dict[str, Job] = {}
        jobs: list[Job] = []
        created: list[bool] = []
        for key in keys:
            job = seen.get(key) if key is not None else None
            if job is not None:  # a key repeated in the batch: its first payload's job
                jobs.append(job)
                created.append(False)
                continue
            existing = self._existing(entry.queue, key, now) if key is not None else None
            fresh = existing is None or existing.id in new
            job = self._token_job(entry, next(made, "")) if fresh else existing
            assert job is not None
            jobs.append(job)
            created.append(fresh)
            if key is not None:
                seen[key] = job
        return jobs, created

    async def _batch_new(
        self,
        queue: str,
        name: str,
        payloads: Sequence[bytes],
        now: float,
        options: JobOptions,
        keys: list[str | None] | None,
        size: int,
        token: bytes | None,
    ) -> tuple[list[Job], list[bool] | None]:
        q = self.state.queues.get(queue)
        if q is None or q.deleting:
            # As in `enqueue`: check everything before the new queue's files exist.
            self.builder.build(queue, name, payloads, now, options)
            q = await self._queue_for_write(queue)
        if keys is not None:
            for key in keys:
                if key is not None:
                    await self.commits.settle_key(q, key)
            # From here on nothing awaits before the append (idempotency keys cannot race).
            jobs, created = self._build_keyed(q, name, payloads, now, options, keys)
            new = [job for job, fresh in zip(jobs, created, strict=True) if fresh]
            if not new:
                return jobs, created
        else:
            created = None
            jobs = new = self.builder.build(q.name, name, payloads, now, options)
        body = rec.JobsEnqueued(new) if token is None else rec.JobsEnqueued(new, token)
        lsn = self._append(q, RecordType.JOBS_ENQUEUED, _encode(body), False)
        nbytes = size if new is jobs else sum(len(job.payload) for job in new)
        await self.commits.submit(q, lsn, _JOBS_ENQUEUED, body, new=(len(new), nbytes, keys is not None))
        return jobs, created

    def _build_keyed(
        self,
        q: Queue,
        name: str,
        payloads: Sequence[bytes],
        now: float,
        options: JobOptions,
        keys: list[str | None],
    ) -> tuple[list[Job], list[bool]]:
        """A batch with idempotency keys: each payload's job, existing (a key already names it, in
        the queue or earlier in the batch) or new; the new ones are built together."""
        #: Per payload: an existing job, or the position of its new job among ``fresh``.
        order: list[Job | int] = []
        created: list[bool] = []
        fresh: list[bytes] = []
        fresh_keys: list[str | None] = []
        first: dict[str, int] = {}
        for payload, key in zip(payloads, keys, strict=True):
            if key is not None:
                known: Job | int | None = first.get(key)
                if known is None:
                    known = self._existing(q.name, key, now)
                if known is not None:
                    order.append(known)
                    created.append(False)
                    continue
                first[key] = len(fresh)
            order.append(len(fresh))
            created.append(True)
            fresh.append(payload)
            fresh_keys.append(key)
        built = self.builder.build(q.name, name, fresh, now, options) if fresh else []
        for job, key in zip(built, fresh_keys, strict=True):
            job.idempotency_key = key
        return [built[x] if isinstance(x, int) else x for x in order], created

    # -- delivery (logged by a cluster's leader only) ------------------------------------------------------

    def reserve(self, queues: Iterable[str], worker_id: str, now: float, limit: int = 1) -> list[Job]:
        """Lease up to ``limit`` ready jobs to ``worker_id``: highest priority first across ``queues``,
        FIFO within one (ties between queues go to the earliest ready). Paused and unknown queues
        are skipped. Each job's lease runs until ``now + job.timeout``; its ``attempts`` grows by one.
        """
        v.check_name("worker_id", worker_id, self.config)
        v.check_limit(limit)
        state = self.state
        candidates = [
            q
            for name in queues
            if (q := state.queues.get(name)) is not None and not q.paused and not q.deleting
        ]
        out: list[Job] = []
        if not candidates:
            return out
        held = state.workers.get(worker_id)
        if held is None:
            held = state.workers[worker_id] = {}
        while len(out) < limit:
            best: Queue | None = None
            best_job: Job | None = None
            for q in candidates:
                job = q.index.ready.peek()
                if job is not None and (
                    best_job is None
                    or job.priority > best_job.priority
                    or (job.priority == best_job.priority and job.updated_at < best_job.updated_at)
                ):
                    best, best_job = q, job
            if best is None or best_job is None:
                break
            job = best.index.pop_ready()
            assert job is best_job
            job.attempts += 1
            job.worker = worker_id
            job.lease_until = now + job.timeout
            state.transition(best, job, _RESERVED, now, 0)
            held[job.id] = job
            out.append(job)
        if not held:
            del state.workers[worker_id]
        elif out:
            if state.on_deadline is not None:
                state.on_deadline(min(job.lease_until or now for job in out))
            if self.config.log_leases:
                self._log_leases(worker_id, now, out)
        return out

    def _log_leases(self, worker_id: str, now: float, jobs: Iterable[Job]) -> None:
        """Log leases just given or extended (`log_leases`: a cluster's leader), one JOBS_LEASED
        record per queue, without awaiting the commit: the leases already hold in memory, and one
        whose record never commits (the leader died first) only makes the next leader deliver its
        job again (at-least-once), as a lease that was not logged would."""
        by_queue: dict[str, list[rec.Lease]] = {}
        for job in jobs:
            leases = by_queue.get(job.queue)
            if leases is None:
                leases = by_queue[job.queue] = []
            leases.append(rec.Lease(job.id, job.attempts, job.lease_until or now))
        for name, leases in by_queue.items():
            q = self.state.queues[name]
            # Not logged when the disk is full or the queue is being deleted: the same as above.
            body = _encode(rec.JobsLeased(worker_id, now, leases))
            with contextlib.suppress(NoSpace, QueueNotFound, StorageFailed):
                self._append(q, RecordType.JOBS_LEASED, body, False)

    def start(self, job_id: str, worker_id: str, now: float) -> Job:
        """The worker began running the job: RESERVED -> RUNNING (no-op when already RUNNING).
        Counts the job's queue wait (`JobTimings`)."""
        q, job = self._held_now(job_id, worker_id)
        if job.state is _RESERVED:
            # The queue wait: from the job becoming ready (entering ENQUEUED: created so, promoted
            # when due, back from a retry), the history entry before its RESERVED one. A job
            # reserved before a restart, ready again after it, has no such entry (recovery moves it
            # back silently): it is not counted.
            timings = self.state.timings
            h = job.history
            if timings is not None and h is not None and len(h) >= 4 and h[-4] == _ENQUEUED_AT:
                timings.waited(job.queue, job.name, now - h[-3])
            self.state.transition(q, job, _RUNNING, now, 0)
        return job

    def extend(self, job_id: str, worker_id: str, now: float, seconds: float | None = None) -> float:
        """Extend one lease to ``now + seconds`` (default: the job's timeout); returns the new end."""
        q, job = self._held_now(job_id, worker_id)
        span = job.timeout if seconds is None else v.check_timeout("seconds", seconds, self.config)
        until = max(now + span, job.lease_until or 0.0)
        q.index.extend_lease(job, until)
        if self.state.on_deadline is not None:
            self.state.on_deadline(until)
        if self.config.log_leases:
            self._log_leases(worker_id, now, (job,))
        return until

    def heartbeat(self, worker_id: str, now: float) -> int:
        """Extend every lease the worker holds by its job's timeout; returns how many."""
        held = self.state.workers.get(worker_id)
        if not held:
            return 0
        queues = self.state.queues
        for job in held.values():
            queues[job.queue].index.extend_lease(job, max(now + job.timeout, job.lease_until or 0.0))
        if self.config.log_leases:
            self._log_leases(worker_id, now, held.values())
        return len(held)

    async def release_worker(self, worker_id: str, now: float) -> list[Job]:
        """The worker's connection dropped: its jobs go back (attempt counted; dead when none left)."""
        held = self.state.workers.get(worker_id)
        if not held:
            return []
        jobs = list(held.values())
        await self._lose_leases(jobs, now, WORKER_LOST)
        return jobs

    async def _lose_leases(self, jobs: list[Job], now: float, error: str) -> None:
        """Put back jobs whose lease ended without an outcome (attempt counted; dead when none are
        left), once their records are durable. A job with a record in flight is left to it (it ends the
        lease when applied); a job whose record cannot be appended (disk full) keeps its lease a
        little longer and is tried again."""
        waits: dict[str, asyncio.Future[Any]] = {}
        for job in jobs:
            if job.id in self.commits.inflight or self.failure is not None:
                continue
            q = self.state.queues[job.queue]
            if q.deleted_lsn:  # the queue's deletion drops the job
                continue
            body: rec.JobFailed | rec.JobRequeued
            if job.attempts >= job.max_attempts:
                rtype, body = (
                    RecordType.JOB_FAILED,
                    rec.JobFailed(job.id, now, job.attempts, error, None, None, True),
                )
            else:
                rtype, body = RecordType.JOB_REQUEUED, rec.JobRequeued(job.id, now, job.attempts, error)
            try:
                lsn = self._append(q, rtype, _encode(body), True)
            except NoSpace:
                q.index.extend_lease(job, now + LEASE_RETRY)
                continue
            wait = self.commits.push(q, lsn, rtype, body, job_id=job.id)
            if wait is not None:
                waits[q.name] = wait  # groups resolve in order: the last of a queue covers the others
        for wait in waits.values():
            await self.commits.committed(wait)

    # -- outcomes ---------------------------------------------------------------------------------------

    async def ack(self, job_id: str, worker_id: str, now: float, result: bytes | None = None) -> Job:
        """The job succeeded. :raises StaleLease: the worker does not hold its lease any more."""
        q, job = await self._held(job_id, worker_id)
        if result is not None:
            v.check_bytes("result", result, self.config.max_result)
        body = rec.JobSucceeded(job.id, now, job.attempts, result)
        lsn = self._append(q, RecordType.JOB_SUCCEEDED, _encode(body), True)
        await self.commits.submit(q, lsn, RecordType.JOB_SUCCEEDED, body, job.id)
        return job

    async def ack_many(
        self,
        job_ids: Sequence[str],
        worker_id: str,
        now: float,
        results: Sequence[bytes | None] | None = None,
    ) -> list[Job | Exception]:
        """Ack many jobs at once: every record is appended, then one commit is awaited per queue.
        Returns, per job id, the job or the error that item failed with (it changed nothing:
        `StaleLease`, `JobNotFound`, a result too large, `NoSpace`...). An item whose commit
        failed gets that error (`StorageFailed`)."""
        if results is not None and len(results) != len(job_ids):
            raise ValidationError("results", "must have one entry per job id")
        limit = self.config.max_result

        def succeeded(i: int, job: Job) -> tuple[RecordType, rec.JobSucceeded]:
            result = None if results is None else results[i]
            if result is not None:
                v.check_bytes("result", result, limit)
            return RecordType.JOB_SUCCEEDED, rec.JobSucceeded(job.id, now, job.attempts, result)

        return await self._outcomes(job_ids, worker_id, succeeded)

    async def _outcomes(
        self, job_ids: Sequence[str], worker_id: str, record: Callable[[int, Job], tuple[RecordType, Any]]
    ) -> list[Job | Exception]:
        """For each job id the worker holds, append the record ``record`` makes; then await the last
        commit of each queue. Per id, the job or the error its item failed with."""
        out: list[Job | Exception] = []
        appended: list[tuple[int, Job, int]] = []
        waits: dict[str, asyncio.Future[Any]] = {}
        inflight = self.commits.inflight
        for i, job_id in enumerate(job_ids):
            try:
                if job_id in inflight:
                    await self.commits.settle(job_id)
                q, job = self._held_now(job_id, worker_id)
                rtype, body = record(i, job)
                lsn = self._append(q, rtype, _encode(body), True)
            except Exception as exc:  # one bad item fails alone
                out.append(exc)
                continue
            wait = self.commits.push(q, lsn, rtype, body, job_id=job.id)
            if wait is not None:
                waits[q.name] = wait  # groups resolve in order: the last of a queue covers the others
            appended.append((i, job, lsn))
            out.append(job)
        for wait in waits.values():
            with contextlib.suppress(StorageFailed):  # its items are found unapplied below
                await self.commits.committed(wait)
        if self.failure is not None:
            for i, job, lsn in appended:
                if job.lsn < lsn:  # never applied: its commit failed
                    out[i] = StorageFailed(str(self.failure))
        return out

    async def release(self, job_id: str, worker_id: str, now: float) -> Job:
        """The worker hands a job back without running it (graceful shutdown): ENQUEUED again at
        once, the delivery's attempt not counted, no error recorded; logged, so that after a restart
        the job is ready. :raises StaleLease: the worker does not hold its lease."""
        (item,) = await self.release_many([job_id], worker_id, now)
        if isinstance(item, Exception):
            raise item
        return item

    async def release_many(self, job_ids: Sequence[str], worker_id: str, now: float) -> list[Job | Exception]:
        """`release` for many jobs; per job id, the job or its error."""

        def released(_i: int, job: Job) -> tuple[RecordType, rec.JobEvent]:
            return RecordType.JOB_RELEASED, rec.JobEvent(job.id, now, max(0, job.attempts - 1))

        return await self._outcomes(job_ids, worker_id, released)

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        now: float,
        error: str,
        traceback: str | None = None,
        *,
        retryable: bool = True,
        retry_at: float | None = None,
    ) -> Job:
        """The attempt failed: RETRYING after the backoff delay, or DEAD when out of attempts or not
        ``retryable``. With ``retry_at`` (the worker's RetryAfter) the job is rescheduled for then and
        the attempt does not count: no error is recorded and ``attempts`` goes back by one.
        """
        q, job = await self._held(job_id, worker_id)
        if retry_at is not None:
            at = v.check_time("retry_at", retry_at)
            snooze = rec.JobSnoozed(job.id, now, max(0, job.attempts - 1), at)
            lsn = self._append(q, RecordType.JOB_SNOOZED, _encode(snooze), True)
            await self.commits.submit(q, lsn, RecordType.JOB_SNOOZED, snooze, job.id)
            self._promote(q, now)
            return job
        error = v.check_error(error)  # cut to MAX_ERROR_BYTES with a marker, never refused
        traceback = v.check_traceback(traceback)  # cut to MAX_TRACEBACK_BYTES
        dead = not retryable or job.attempts >= job.max_attempts
        when = None if dead else now + retry_delay(job.backoff, job.attempts, self._rng.random)
        body = rec.JobFailed(job.id, now, job.attempts, error, traceback, when, dead)
        lsn = self._append(q, RecordType.JOB_FAILED, _encode(body), True)
        await self.commits.submit(q, lsn, RecordType.JOB_FAILED, body, job.id)
        return job

    async def cancel(self, job_id: str, now: float) -> tuple[Job, str | None]:
        """Cancel a job that has not finished; returns it and the worker that held it (to be told to
        stop), if any. :raises InvalidTransition: the job already finished."""
        q, job = await self._settled_job(job_id)
        if job.state not in ACTIVE_STATES:
            raise InvalidTransition(job_id, job.state.label, "cancel")
        body = rec.JobEvent(job.id, now, job.attempts)
        lsn = self._append(q, RecordType.JOB_CANCELLED, _encode(body), True)
        worker = await self.commits.submit(q, lsn, RecordType.JOB_CANCELLED, body, job.id)
        return job, worker

    async def retry(self, job_id: str, now: float) -> Job:
        """Enqueue a DEAD or CANCELLED job again with a fresh set of attempts (errors are kept)."""
        q, job = await self._settled_job(job_id)
        if job.state is not JobState.DEAD and job.state is not JobState.CANCELLED:
            raise InvalidTransition(job_id, job.state.label, "retry")
        body = rec.JobEvent(job.id, now)
        lsn = self._append(q, RecordType.JOB_RETRIED, _encode(body), True)
        await self.commits.submit(q, lsn, RecordType.JOB_RETRIED, body, job.id)
        return job

    async def delete(self, job_id: str, now: float) -> tuple[Job, str | None]:
        """Forget a job in any state (and its idempotency key); returns it and the worker that held it."""
        q, job = await self._settled_job(job_id)
        body = rec.JobEvent(job.id, now)
        lsn = self._append(q, RecordType.JOB_DELETED, _encode(body), True)
        worker = await self.commits.submit(q, lsn, RecordType.JOB_DELETED, body, job.id)
        return job, worker

    def _requeued(self, q: Queue, job: Job, now: float) -> Job:
        """A new job like ``job`` (same queue, handler, payload and options; a new id, ready now,
        no idempotency key), admitted like any enqueue. :raises Overloaded: (backpressure)."""
        if self.admission is not None:
            self.admission(q.name, 1, len(job.payload))
        options = JobOptions(
            priority=job.priority, max_attempts=job.max_attempts, backoff=job.backoff,
            timeout=job.timeout, headers=job.headers,
        )  # fmt: skip
        (new,) = self.builder.build(q.name, job.name, (job.payload,), now, options)
        return new

    async def requeue(self, job_id: str, now: float) -> Job:
        """Enqueue a new job with the payload and options of ``job_id`` (any state; the job itself
        is left as it is); returns the new job once it is durable."""
        q, job = await self._settled_job(job_id)
        if q.deleting:
            raise QueueNotFound(q.name, deleting=True)
        new = self._requeued(q, job, now)
        lsn = self._append(q, RecordType.JOB_ENQUEUED, _encode(new), False)
        new.lsn = lsn
        await self.commits.submit(q, lsn, _JOB_ENQUEUED, new, new=(1, len(new.payload), False))
        return new

    def _bulk_record(self, action: str, q: Queue, job: Job, now: float) -> tuple[int, Any, Job] | None:
        """The record ``action`` appends for ``job`` (type, body, the job it is about), or None when
        the action does not apply to the job's state."""
        state = job.state
        if action == "retry":
            if state is not JobState.DEAD and state is not JobState.CANCELLED:
                return None
            return RecordType.JOB_RETRIED, rec.JobEvent(job.id, now), job
        if action == "cancel":
            if state not in ACTIVE_STATES:
                return None
            return RecordType.JOB_CANCELLED, rec.JobEvent(job.id, now, job.attempts), job
        if action == "delete":
            return RecordType.JOB_DELETED, rec.JobEvent(job.id, now), job
        new = self._requeued(q, job, now)
        return _JOB_ENQUEUED, new, new

    async def bulk(
        self,
        action: BulkAction,
        now: float,
        *,
        ids: Sequence[str] | None = None,
        filter: JobFilter | None = None,
        chunk: int = BULK_CHUNK,
    ) -> BulkResult:
        """Do ``action`` to the jobs ``ids`` names (1 to 10,000), or to every job ``filter`` matches
        that exists when the call starts (jobs created meanwhile, requeued ones included, are not).

        retry: a dead or cancelled job back to enqueued (its own id); requeue: a new job like it
        (`requeue`); cancel: a job that has not finished; delete: any job. A job the action does not
        apply to counts as failed, not as an error of the call.

        Works in chunks of ``chunk`` jobs in id order: each chunk's records are appended, committed,
        and only then applied (commit, then apply), and the loop runs between chunks, so a filter
        matching 100,000 jobs does not stall it. A crash in the middle leaves every job either done
        (its record is durable) or untouched; calling again with the filter finishes the rest.

        :raises ValidationError: a bad action, ids or filter (naming the field), nothing changed.
        :raises StorageFailed: the storage failed (the server is stopping; durable chunks stay done).
        """
        if action not in _BULK_ACTIONS:
            raise ValidationError("action", f"must be one of {', '.join(_BULK_ACTIONS)}")
        if (ids is None) == (filter is None):
            raise ValidationError("ids", "give either ids or a filter")
        v.check_limit(chunk, "chunk", most=MAX_BULK_IDS)
        self.commits.writable()
        result = BulkResult()
        if ids is not None:
            if isinstance(ids, str | bytes) or not 1 <= len(ids) <= MAX_BULK_IDS:
                raise ValidationError("ids", f"must hold 1 to {MAX_BULK_IDS} job ids")
            if not all(isinstance(i, str) for i in ids):
                raise ValidationError("ids", "must be job ids (strings)")
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), chunk):
                table = self.state.table
                jobs = [j for i in unique[start : start + chunk] if (j := table.get(i)) is not None]
                await self._bulk_chunk(action, jobs, now, result)
            return result
        assert filter is not None
        lo, hi = check_filter(filter)
        fence = self.ids.next(now)  # every job created from now on sorts above it
        hi = fence if hi is None else min(hi, fence)
        cursor: str | None = None
        while True:
            jobs, cursor = self._list(filter, lo, hi, cursor, chunk, False)
            await self._bulk_chunk(action, jobs, now, result)
            if cursor is None:
                return result
            await asyncio.sleep(0)  # a walk may return no job: let the loop run anyway

    async def purge(
        self, queue: str, states: Iterable[JobState], now: float, *, chunk: int = BULK_CHUNK
    ) -> BulkResult:
        """Delete every job of ``queue`` in one of ``states`` that exists when the call starts (jobs
        created meanwhile stay): `bulk` ``delete`` over that filter, so in durable chunks of
        ``chunk`` jobs, each committed before it is applied. A crash in the middle leaves each job
        deleted or untouched; purging again finishes the rest. ``result.revoked`` names the workers
        that held a deleted job (to be told to stop it).

        :raises QueueNotFound: no such queue.
        :raises ValidationError: no states, or one that is not a `JobState` (field ``states``).
        """
        wanted = frozenset(states)
        if not wanted:
            raise ValidationError("states", "give at least one state, e.g. succeeded or dead")
        if not all(isinstance(s, JobState) for s in wanted):
            raise ValidationError("states", "must be job states")
        self._queue(queue)  # an unknown queue is an error, not an empty purge
        return await self.bulk("delete", now, filter=JobFilter(queue=queue, states=wanted), chunk=chunk)

    async def _bulk_chunk(self, action: str, jobs: list[Job], now: float, result: BulkResult) -> None:
        """Append the records of one chunk, wait for their commits, count what was done."""
        result.matched += len(jobs)
        boxes: list[tuple[Job, list[Any]]] = []
        waits: dict[str, asyncio.Future[Any]] = {}
        inflight = self.commits.inflight
        for job in jobs:
            try:
                if job.id in inflight:
                    await self.commits.settle(job.id)
                q = self.state.queues.get(job.queue)
                if q is None or q.deleting or not q.index.contains(job):
                    raise QueueNotFound(job.queue, deleting=True)  # gone meanwhile: counted as failed
                made = self._bulk_record(action, q, job, now)
                if made is None:
                    result.failed += 1
                    continue
                rtype, body, about = made
                lsn = self._append(q, RecordType(rtype), _encode(body), rtype != _JOB_ENQUEUED)
            except StorageFailed:
                raise
            except Exception as exc:  # this job fails alone (gone, disk full, backpressure...)
                log.debug("bulk %s of job %s: %s", action, job.id, exc)
                result.failed += 1
                continue
            box: list[Any] = []
            if rtype == _JOB_ENQUEUED:
                about.lsn = lsn
                wait = self.commits.push(q, lsn, rtype, body, new=(1, len(about.payload), False), box=box)
            else:
                wait = self.commits.push(q, lsn, rtype, body, job_id=job.id, box=box)
            if wait is not None:
                waits[q.name] = wait  # groups resolve in order: the last of a queue covers the others
            boxes.append((job, box))
        for wait in waits.values():
            await self.commits.committed(wait)
        for job, box in boxes:
            if not box:  # never applied: its commit failed (the engine failed-stop)
                result.failed += 1
                continue
            result.done += 1
            worker = box[0] if action in ("cancel", "delete") else None
            if isinstance(worker, str):
                result.revoked.setdefault(worker, []).append(job.id)

    # -- queues -----------------------------------------------------------------------------------------

    async def pause(self, queue: str, now: float) -> None:
        """Stop delivering the queue's jobs (enqueues are still accepted)."""
        q = self._queue(queue)
        body = rec.QueueEvent(now)
        lsn = self._append(q, RecordType.QUEUE_PAUSED, _encode(body), True)
        await self.commits.submit(q, lsn, RecordType.QUEUE_PAUSED, body)

    async def resume(self, queue: str, now: float) -> None:
        q = self._queue(queue)
        body = rec.QueueEvent(now)
        lsn = self._append(q, RecordType.QUEUE_RESUMED, _encode(body), True)
        await self.commits.submit(q, lsn, RecordType.QUEUE_RESUMED, body)

    async def set_durability(self, queue: str, mode: Durability, now: float) -> None:
        """Change a queue's durability mode (creating the queue if needed); logged like any change."""
        if not isinstance(mode, Durability):
            raise ValidationError("durability", "must be one of sync, group, async")
        v.check_queue(queue, self.config)
        q = await self._queue_for_write(queue)
        body = rec.QueueDurability(mode.value, now)
        lsn = self._append(q, RecordType.QUEUE_DURABILITY, _encode(body), True)
        await self.commits.submit(q, lsn, RecordType.QUEUE_DURABILITY, body)

    async def delete_queue(self, queue: str, now: float, *, force: bool = False) -> QueueDeletion:
        """Delete a queue: its jobs (finished ones in its history included), idempotency keys, leases
        and files. Allowed when it is empty, i.e. has no pending job (nothing enqueued, scheduled,
        retrying, reserved or running), or with ``force`` (its pending jobs are dropped too; workers
        holding them are named in the result, to be told to stop as for a cancel). The name is free
        afterwards: the next write to it creates a new, empty queue. Workers subscribed to the name
        keep their subscription.

        While it runs nothing is delivered from the queue, and enqueues to its name wait for the
        outcome (refused: they go to the queue; done: to a new queue). Records in flight for the
        queue commit and are applied first (validation sees them), then one QUEUE_DELETED record,
        the last its log ever gets, is committed and applied, and the files go (`Storage.drop_log`,
        crash-safe). A caller that goes away after the record was appended does not stop the rest.

        :raises QueueNotFound: no such queue (or another deletion of it just finished).
        :raises QueueNotEmpty: pending jobs and not ``force``.
        :raises StorageFailed: the storage failed (the server is stopping).
        """
        q = self._queue(queue)
        while q.deleting:  # another deletion of it is under way: its outcome decides
            await asyncio.shield(self._deleting[q.name])
            q = self._queue(queue)
        self.commits.writable()
        name = q.name
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deleting[name] = done
        q.deleting = True
        lsn = 0
        try:
            lsn, body, jobs, pending = await self._delete_checked(q, now, force)
        finally:
            if not lsn:  # refused (or the caller went away): the queue stays as it was
                q.deleting = False
                del self._deleting[name]
                done.set_result(None)
        finish = asyncio.ensure_future(self._finish_deletion(q, lsn, body, done))
        self._tasks.add(finish)  # `close` waits for it
        finish.add_done_callback(self._tasks.discard)
        revoked = await asyncio.shield(finish)
        held: dict[str, list[str]] = {}
        for worker, job_id in revoked:
            held.setdefault(worker, []).append(job_id)
        return QueueDeletion(name, jobs, pending, held)

    async def _delete_checked(
        self, q: Queue, now: float, force: bool
    ) -> tuple[int, rec.QueueEvent, int, int]:
        """Let what is in flight for ``q`` settle, validate, and append QUEUE_DELETED; returns its LSN,
        body, and the jobs and pending jobs it drops."""
        # Nothing awaits between the last check below and the append: what is validated is what the
        # record drops. New records in flight meanwhile can only be completions (enqueues wait, and
        # nothing is delivered), so this ends.
        while True:
            if q.pending:
                await self.commits.committed(q.log.flush())
            elif (snapshot := self._snapshots.get(q.name)) is not None:
                await asyncio.shield(snapshot)  # its files are in the queue's directory
            else:
                break
        self.commits.writable()
        pending = q.index.pending
        if pending and not force:
            raise QueueNotEmpty(q.name, pending)
        body = rec.QueueEvent(now)
        lsn = self._append(q, RecordType.QUEUE_DELETED, _encode(body), True)
        q.deleted_lsn = lsn
        return lsn, body, q.index.total, pending

    async def _finish_deletion(
        self, q: Queue, lsn: int, body: rec.QueueEvent, done: asyncio.Future[None]
    ) -> list[tuple[str, str]]:
        """Commit and apply QUEUE_DELETED, then remove the queue's files; returns the leases revoked.
        Runs as a task of its own: the caller going away does not leave the files behind."""
        try:
            revoked: list[tuple[str, str]] = await self.commits.submit(q, lsn, RecordType.QUEUE_DELETED, body)
            await retire(self.retired_history, q)  # its history stays in the total
            try:
                await self.storage.drop_log(q.name)
            except StorageError as exc:  # the deletion is durable; its files go at the next start
                log.error("queue %r was deleted, but %s", q.name, exc)
            return revoked
        finally:
            if self._deleting.get(q.name) is done:
                del self._deleting[q.name]
            done.set_result(None)

    async def _forget_deleted(self, q: Queue) -> None:
        """Recovery found the queue's log ending in QUEUE_DELETED (a crash before its files were
        removed): the queue is gone (applying the record forgot it); remove its files now."""
        if q.deleted_lsn != q.log.last_lsn:
            # Cannot happen (nothing is appended after QUEUE_DELETED); if it did, drop what the later
            # records made, so that no job refers to a queue that does not exist.
            log.warning(
                "queue %r: records follow its deletion record (LSN %d of %d); they are dropped with it",
                q.name, q.deleted_lsn, q.log.last_lsn,
            )  # fmt: skip
            for job in q.index.drop():
                self.state.drop_lease(job)
            self.state.queues.pop(q.name, None)
        log.info("queue %r was deleted before the restart: removing its files", q.name)
        await retire(self.retired_history, q)  # unless done before the crash
        await self.storage.drop_log(q.name)

    # -- maintenance ------------------------------------------------------------------------------------

    def _promote(self, q: Queue, now: float) -> int:
        due = q.index.due(now)
        for job in due:
            job.run_at = None
            self.state.transition(q, job, _ENQUEUED, now, 0)
        if due:
            self.state.notify(q)
        return len(due)

    async def tick(self, now: float) -> float | None:
        """Run every maintenance duty due at ``now``; returns the next time there is work (or None).

        Promotes due SCHEDULED/RETRYING jobs, expires leases (attempt counted; out of attempts ->
        DEAD with error "lease expired"), evicts history, forgets expired idempotency keys, and starts
        a background snapshot of each queue with ``snapshot_every`` records since its last one.
        """
        deadline: float | None = None
        for q in list(self.state.queues.values()):
            if q.deleted_lsn:  # its deletion is committing: nothing more is appended to its log
                continue
            index = q.index
            self._promote(q, now)
            expired = index.expired(now)
            if expired:
                await self._lose_leases(expired, now, LEASE_EXPIRED)
            for job in index.evict(now):
                self.state.drop_lease(job)
            index.keys.expire(now)
            every = self.config.snapshot_every
            if (
                every
                and not q.snapshotting
                and not q.deleting
                and self.failure is None
                and q.applied_lsn - q.snapshot_lsn >= every
            ):
                self._spawn_snapshot(q)
            nxt = index.next_deadline()
            if nxt is not None and (deadline is None or nxt < deadline):
                deadline = nxt
        if self._opened and self.failure is None:
            nxt = await self.schedules.tick(now)
            if nxt is not None and (deadline is None or nxt < deadline):
                deadline = nxt
            await self.definitions.maybe_snapshot()
        return deadline

    def _spawn_snapshot(self, q: Queue) -> None:
        task = asyncio.get_running_loop().create_task(self._snapshot_task(q.name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot_task(self, queue: str) -> None:
        with contextlib.suppress(QueueNotFound):  # deleted before the task ran
            await self.snapshot(queue)

    async def snapshot(self, queue: str) -> int:
        """Write a snapshot of the queue at its applied LSN without stalling the loop; returns its LSN
        (see `server/snapshots.py`). A queue being deleted is not snapshotted (its last snapshot's
        LSN is returned)."""
        q = self._queue(queue)
        if q.snapshotting or q.deleting:
            return q.snapshot_lsn
        done = self._snapshots[q.name] = asyncio.get_running_loop().create_future()
        try:
            c = self.config
            return await write_snapshot(q, self.ids, c.snapshot_chunk, self.snapshot_stats, self.state.tokens)
        finally:
            del self._snapshots[q.name]
            done.set_result(None)
