"""The queue engine: the job state machine over the in-memory index and the per-queue logs.

No network and no clock: every operation takes ``now``. Every change follows one pattern:
validate (raise a typed error and change nothing) -> append the record (synchronous) -> apply it in
memory -> await the commit. Completions (ack, fail, cancel, delete, retry) append with
``reserved=True`` so that a full disk refuses new jobs first while workers keep finishing theirs.
Deliveries (reserve, start, lease extension) are not logged: after a crash a reserved job is ready
again, and it may run more than once (at-least-once).

`tick` is the deterministic maintenance entry point: it promotes due jobs, expires leases, evicts
history and idempotency keys, starts snapshots, and returns when it next has work.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from spitfire.index.backoff import retry_delay
from spitfire.index.ids import IdGenerator, is_job_id
from spitfire.index.job import (
    ACTIVE_STATES,
    LEASED_STATES,
    MAX_PRIORITY,
    AttemptError,
    Backoff,
    Job,
    JobState,
)
from spitfire.index.queue import QueueIndex
from spitfire.index.table import JobTable
from spitfire.wal.api import Durability, NoSpaceError, QueueLog, Storage

from . import records as rec
from . import validation as v
from .config import EngineConfig
from .errors import InvalidTransition, JobNotFound, NoSpace, QueueNotFound, StaleLease, ValidationError
from .events import BatchObserver, JobObserver, ignore
from .records import RecordType
from .recovery import load_queue
from .stats import SnapshotStats

#: Handler names remembered as already validated and interned (beyond this, each is checked anew).
MAX_CACHED_NAMES = 10_000
#: The error recorded when a lease ran out without a heartbeat or an outcome.
LEASE_EXPIRED = "lease expired"
#: The error recorded when a worker's connection dropped while it held the job.
WORKER_LOST = "worker disconnected"

_ENQUEUED = JobState.ENQUEUED
_SCHEDULED = JobState.SCHEDULED
_RETRYING = JobState.RETRYING
_RESERVED = JobState.RESERVED
_RUNNING = JobState.RUNNING
_encode = rec.encode
_JOB_ENQUEUED_TYPE = int(RecordType.JOB_ENQUEUED)
#: State labels in state value order (1, 2, ...): the keys of `QueueStats.counts`.
_STATE_LABELS = tuple(s.label for s in sorted(JobState))


@dataclass(slots=True)
class Queue:
    """One queue: its log, its index and its flags."""

    name: str
    log: QueueLog
    index: QueueIndex
    paused: bool = False
    #: LSN of the last finished snapshot (0: none).
    snapshot_lsn: int = 0
    #: A snapshot is being written.
    snapshotting: bool = False


@dataclass(slots=True)
class QueueStats:
    name: str
    paused: bool
    durability: Durability
    #: Jobs per state label ("enqueued": 3, ...), every state present.
    counts: dict[str, int]
    total: int


@dataclass(slots=True)
class EngineStats:
    total_jobs: int
    queues: dict[str, QueueStats] = field(default_factory=dict)


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


class Engine:
    """All queues of one server. Single-threaded: call it from the event loop only."""

    def __init__(
        self,
        storage: Storage,
        config: EngineConfig | None = None,
        *,
        on_ready: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.storage = storage
        self.config = config or EngineConfig()
        #: Called with a queue's name when jobs became ready in it (enqueue, promotion, requeue, resume).
        self.on_ready = on_ready
        self._rng = rng or random.Random()
        self._ids = IdGenerator(self._rng)
        self._table = JobTable()
        self._queues: dict[str, Queue] = {}
        #: Queues whose files are being created (first enqueue to a new queue), by name.
        self._creating: dict[str, asyncio.Future[Queue]] = {}
        #: worker id -> {job id: job} of the jobs it holds a lease on.
        self._workers: dict[str, dict[str, Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Validated, interned handler names.
        self._names: dict[str, str] = {}
        self._opened = False
        #: Told of every job created, moved or deleted after open (server/events.py).
        self.observer: JobObserver = ignore
        #: Told once of all the jobs one batch created, instead of `observer` once per job (when set).
        self.batch_observer: BatchObserver | None = None
        #: Durations of the snapshots written (for /metrics).
        self.snapshot_stats = SnapshotStats()

    # -- life cycle -------------------------------------------------------------------------------------

    async def open(self, now: float) -> None:
        """Recover every queue from storage (snapshot, then records), then promote what is due."""
        if self._opened:
            raise RuntimeError("engine already open")
        for name in self.storage.queues():
            self._open_queue(name, now)
            await asyncio.sleep(0)
        self._table.sort_names()
        self._opened = True
        for q in self._queues.values():
            self._promote(q, now)

    def _open_queue(self, name: str, now: float) -> Queue:
        log, recovery = self.storage.open_log(name, self.config.durability)
        index = self._new_index(name)
        q = Queue(name, log, index)
        self._queues[name] = q
        load_queue(self, q, recovery)
        return q

    def _new_index(self, name: str) -> QueueIndex:
        return QueueIndex(name, self._table, retention=self.config.retention)

    async def close(self) -> None:
        """Let running snapshots finish, make every log durable and close the storage."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for q in self._queues.values():
            await q.log.flush()
        await self.storage.close()

    # -- helpers ----------------------------------------------------------------------------------------

    def _queue(self, name: str) -> Queue:
        q = self._queues.get(name)
        if q is None:
            raise QueueNotFound(name)
        return q

    async def _queue_for_write(self, name: str) -> Queue:
        """The queue, created (files made durable off the loop) if it does not exist yet.

        Concurrent first writers of one queue share one creation; a caller that is cancelled does
        not cancel it for the others.
        """
        q = self._queues.get(name)
        if q is not None:
            return q
        creating = self._creating.get(name)
        if creating is None:
            creating = self._creating[name] = asyncio.ensure_future(self._create_queue(name))
            # Its error reaches every waiter; retrieved here too in case all of them were cancelled.
            creating.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(creating)

    async def _create_queue(self, name: str) -> Queue:
        name = sys.intern(name)
        try:
            log = await self.storage.create_log(name, self.config.durability)
        except NoSpaceError:
            raise NoSpace(name) from None
        finally:
            del self._creating[name]
        q = self._queues[name] = Queue(name, log, self._new_index(name))
        return q

    def _job(self, job_id: str) -> tuple[Queue, Job]:
        job = self._table.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise JobNotFound(str(job_id))
        return self._queues[job.queue], job

    def _held(self, job_id: str, worker_id: str) -> tuple[Queue, Job]:
        q, job = self._job(job_id)
        if job.state not in LEASED_STATES or job.worker != worker_id:
            raise StaleLease(job_id, worker_id, job.worker if job.state in LEASED_STATES else None)
        return q, job

    @staticmethod
    def _append(q: Queue, rtype: RecordType, body: bytes, reserved: bool) -> int:
        try:
            return q.log.append(rtype, body, reserved=reserved)
        except NoSpaceError:
            raise NoSpace(q.name) from None

    @staticmethod
    async def _commit(q: Queue, lsn: int) -> None:
        fut = q.log.commit(lsn)
        if fut is not None:
            await fut

    def _notify(self, q: Queue) -> None:
        if self.on_ready is not None and not q.paused:
            self.on_ready(q.name)

    def _transition(self, q: Queue, job: Job, state: JobState, at: float, lsn: int) -> None:
        _history(job, state, at)
        job.updated_at = at
        if lsn:
            job.lsn = lsn
        q.index.move(job, state)
        self.observer(job, False)

    def _drop_lease(self, job: Job) -> str | None:
        worker = job.worker
        if worker is not None:
            held = self._workers.get(worker)
            if held is not None:
                held.pop(job.id, None)
                if not held:
                    del self._workers[worker]
        job.worker = None
        job.lease_until = None
        return worker

    # -- enqueue ----------------------------------------------------------------------------------------

    def _intern_name(self, name: str) -> str:
        """Validate a handler name and intern it (one string object per name, checked once)."""
        handler = sys.intern(v.check_name("name", name, self.config))
        if len(self._names) < MAX_CACHED_NAMES:
            self._names[handler] = handler
        return handler

    def _existing(self, queue: str, key: str | None, now: float) -> Job | None:
        """The job an idempotency key already names in ``queue`` (a stub if it left history)."""
        q = self._queues.get(queue)
        if key is None or q is None:
            return None
        entry = q.index.keys.entry(key)
        if entry is None or entry[2] <= now:
            return None
        job = self._table.get(entry[0])
        if job is None:  # evicted from history: only succeeded jobs are evicted
            job = Job(entry[0], queue, entry[1], b"", JobState.SUCCEEDED, 0.0, idempotency_key=key)
        return job

    async def enqueue(
        self,
        queue: str,
        name: str,
        payload: bytes,
        *,
        now: float,
        priority: int = 0,
        run_at: float | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Job, bool]:
        """Add a job; returns it and True, or the job its idempotency key already names and False.

        :raises ValidationError: (naming the field) or `PayloadTooLarge`; :raises NoSpace: disk full.
        """
        q = self._queues.get(queue) if queue.__class__ is str else None
        c = self.config
        if (
            q is not None
            and run_at is None
            and delay is None
            and max_attempts is None
            and backoff is None
            and timeout is None
            and idempotency_key is None
            and headers is None
            and payload.__class__ is bytes
            and priority.__class__ is int
            and 0 <= priority <= MAX_PRIORITY
            and len(payload) <= c.max_payload
        ):
            # The common case (an existing queue, every option at its default): `_build` inlined.
            handler = self._names.get(name) if name.__class__ is str else None
            if handler is None:
                handler = self._intern_name(name)
            job = Job(
                self._ids.next(now), q.name, handler, payload, _ENQUEUED, now, priority, None,
                c.default_max_attempts, None, c.default_timeout, updated_at=now,
            )  # fmt: skip
        else:
            key = v.check_key(idempotency_key)
            if q is None:
                v.check_queue(queue, c)
                # Every argument is checked before the new queue's files exist (a refused request
                # creates nothing); the job built here is thrown away, only the first enqueue pays.
                self._build_many(
                    queue, name, (payload,), now, priority, run_at, delay, max_attempts, backoff, timeout,
                    headers,
                )  # fmt: skip
                q = await self._queue_for_write(queue)
            # Nothing below awaits before the append: no other enqueue can take the key meanwhile.
            if key is not None:
                existing = self._existing(q.name, key, now)
                if existing is not None:
                    return existing, False
            (job,) = self._build_many(
                q.name, name, (payload,), now, priority, run_at, delay, max_attempts, backoff, timeout,
                headers,
            )  # fmt: skip
            job.idempotency_key = key
        # The append and the commit are inlined (this is the hottest path of the server).
        log = q.log
        try:
            lsn = log.append(_JOB_ENQUEUED_TYPE, _encode(job))
        except NoSpaceError:
            raise NoSpace(q.name) from None
        job.lsn = lsn
        q.index.add(job)
        self.observer(job, False)
        if job.state is _ENQUEUED and self.on_ready is not None and not q.paused:
            self.on_ready(q.name)  # `_notify` inlined
        fut = log.commit(lsn)
        if fut is not None:
            await fut
        return job, True

    async def enqueue_batch(
        self,
        queue: str,
        name: str,
        payloads: Sequence[bytes],
        *,
        now: float,
        priority: int = 0,
        run_at: float | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[list[Job], list[bool] | None]:
        """Add many jobs of one handler with the same options in one record and one commit. Returns
        the jobs, one per payload (a key that names an existing job gives that job), and which of
        them are new (None when all are). Either every new job is added or none is.

        The options are the same for every job of a batch, so they are checked once; without
        idempotency keys the jobs are built, indexed and logged in bulk (the server's hot path).
        """
        c = self.config
        v.check_queue(queue, c)
        if not isinstance(payloads, Sequence) or isinstance(payloads, bytes | str):
            raise ValidationError("payloads", "must be a list of payloads")
        count = len(payloads)
        if not 1 <= count <= c.max_batch:
            raise ValidationError("payloads", f"must hold 1 to {c.max_batch} payloads")
        if idempotency_keys is not None:
            if isinstance(idempotency_keys, str | bytes) or len(idempotency_keys) != count:
                raise ValidationError("idempotency_keys", "must have one entry per payload")
            if all(key is None for key in idempotency_keys):
                idempotency_keys = None
        if queue not in self._queues:
            # As in `enqueue`: check everything before the new queue's files exist.
            self._build_many(
                queue, name, payloads, now, priority, run_at, delay, max_attempts, backoff, timeout, headers
            )
            for raw in idempotency_keys or ():
                v.check_key(raw)
            await self._queue_for_write(queue)
        # From here on nothing awaits before the append (idempotency keys cannot race).
        if idempotency_keys is not None:
            jobs, created = self._build_keyed(
                queue, name, payloads, now, priority, run_at, delay, max_attempts, backoff, timeout,
                idempotency_keys, headers,
            )  # fmt: skip
            new = [job for job, fresh in zip(jobs, created, strict=True) if fresh]
            if not new:
                return jobs, created
        else:
            created = None
            known = self._queues.get(queue)  # its interned name goes into the jobs at once
            jobs = new = self._build_many(
                queue if known is None else known.name, name, payloads, now, priority, run_at, delay,
                max_attempts, backoff, timeout, headers,
            )  # fmt: skip
        q = self._queue(queue)
        lsn = self._append(q, RecordType.JOBS_ENQUEUED, _encode(rec.JobsEnqueued(new)), False)
        self._add_batch(q, new, lsn, keyed=created is not None)
        await self._commit(q, lsn)
        return jobs, created

    def _add_batch(self, q: Queue, new: list[Job], lsn: int, *, keyed: bool) -> None:
        """Index the new jobs of one appended batch record (and report them)."""
        qname = q.name
        if new[0].queue is qname:
            for job in new:
                job.lsn = lsn
        else:
            for job in new:
                job.queue = qname
                job.lsn = lsn
        if keyed:
            add = q.index.add
            for job in new:
                add(job)
        else:
            q.index.add_many(new)
        if self.batch_observer is not None:
            self.batch_observer(new)
        elif self.observer is not ignore:
            observer = self.observer
            for job in new:
                observer(job, False)
        if new[0].state is _ENQUEUED:  # one batch, one set of options: one state
            self._notify(q)

    def _build_many(
        self,
        queue: str,
        name: str,
        payloads: Sequence[bytes],
        now: float,
        priority: int,
        run_at: float | None,
        delay: float | None,
        max_attempts: int | None,
        backoff: Backoff | None,
        timeout: float | None,
        headers: dict[str, str] | None,
    ) -> list[Job]:
        """New jobs of one handler and one set of options, one per payload (options checked once;
        the jobs share ``headers``: nothing mutates a job's headers)."""
        c = self.config
        limit = c.max_payload
        for payload in payloads:
            if payload.__class__ is not bytes or len(payload) > limit:
                v.check_bytes("payload", payload, limit)
        if priority.__class__ is not int or not 0 <= priority <= MAX_PRIORITY:
            v.check_priority(priority)
        at = v.check_run_at(run_at, delay, now) if run_at is not None or delay is not None else None
        handler = self._names.get(name) if name.__class__ is str else None
        if handler is None:
            handler = self._intern_name(name)
        attempts = c.default_max_attempts if max_attempts is None else v.check_max_attempts(max_attempts)
        policy = None if backoff is None else v.check_backoff(backoff)
        lease = c.default_timeout if timeout is None else v.check_timeout("timeout", timeout, c)
        tags = None if headers is None else v.check_headers(headers)
        state = _ENQUEUED if at is None else _SCHEDULED
        ids = self._ids.next_many(now, len(payloads))
        return [
            Job(job_id, queue, handler, payload, state, now, priority, at, attempts, policy, lease, None,
                tags, updated_at=now)
            for job_id, payload in zip(ids, payloads, strict=True)
        ]  # fmt: skip

    def _build_keyed(
        self,
        queue: str,
        name: str,
        payloads: Sequence[bytes],
        now: float,
        priority: int,
        run_at: float | None,
        delay: float | None,
        max_attempts: int | None,
        backoff: Backoff | None,
        timeout: float | None,
        keys: Sequence[str | None],
        headers: dict[str, str] | None,
    ) -> tuple[list[Job], list[bool]]:
        """A batch with idempotency keys: each payload's job, existing (a key already names it, in
        the queue or earlier in the batch) or new; the new ones are built together."""
        #: Per payload: an existing job, or the position of its new job among ``fresh``.
        order: list[Job | int] = []
        created: list[bool] = []
        fresh: list[bytes] = []
        fresh_keys: list[str | None] = []
        first: dict[str, int] = {}
        for payload, raw in zip(payloads, keys, strict=True):
            key = v.check_key(raw)
            if key is not None:
                known: Job | int | None = first.get(key)
                if known is None:
                    known = self._existing(queue, key, now)
                if known is not None:
                    order.append(known)
                    created.append(False)
                    continue
                first[key] = len(fresh)
            order.append(len(fresh))
            created.append(True)
            fresh.append(payload)
            fresh_keys.append(key)
        built = self._build_many(
            queue, name, fresh, now, priority, run_at, delay, max_attempts, backoff, timeout, headers
        ) if fresh else []  # fmt: skip
        for job, key in zip(built, fresh_keys, strict=True):
            job.idempotency_key = key
        return [built[x] if isinstance(x, int) else x for x in order], created

    # -- delivery (not logged) --------------------------------------------------------------------------

    def reserve(self, queues: Iterable[str], worker_id: str, now: float, limit: int = 1) -> list[Job]:
        """Lease up to ``limit`` ready jobs to ``worker_id``: highest priority first across ``queues``,
        FIFO within one (ties between queues go to the earliest ready). Paused and unknown queues
        are skipped. Each job's lease runs until ``now + job.timeout``; its ``attempts`` grows by one.
        """
        v.check_name("worker_id", worker_id, self.config)
        v.check_limit(limit)
        candidates = [q for name in queues if (q := self._queues.get(name)) is not None and not q.paused]
        out: list[Job] = []
        if not candidates:
            return out
        held = self._workers.get(worker_id)
        if held is None:
            held = self._workers[worker_id] = {}
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
            self._transition(best, job, _RESERVED, now, 0)
            held[job.id] = job
            out.append(job)
        if not held:
            del self._workers[worker_id]
        return out

    def start(self, job_id: str, worker_id: str, now: float) -> Job:
        """The worker began running the job: RESERVED -> RUNNING (no-op when already RUNNING)."""
        q, job = self._held(job_id, worker_id)
        if job.state is _RESERVED:
            self._transition(q, job, _RUNNING, now, 0)
        return job

    def extend(self, job_id: str, worker_id: str, now: float, seconds: float | None = None) -> float:
        """Extend one lease to ``now + seconds`` (default: the job's timeout); returns the new end."""
        q, job = self._held(job_id, worker_id)
        span = job.timeout if seconds is None else v.check_timeout("seconds", seconds, self.config)
        until = max(now + span, job.lease_until or 0.0)
        q.index.extend_lease(job, until)
        return until

    def heartbeat(self, worker_id: str, now: float) -> int:
        """Extend every lease the worker holds by its job's timeout; returns how many."""
        held = self._workers.get(worker_id)
        if not held:
            return 0
        for job in held.values():
            self._queues[job.queue].index.extend_lease(job, max(now + job.timeout, job.lease_until or 0.0))
        return len(held)

    def held_by(self, worker_id: str) -> list[Job]:
        """The jobs a worker holds leases on."""
        return list(self._workers.get(worker_id, {}).values())

    async def release_worker(self, worker_id: str, now: float) -> list[Job]:
        """The worker's connection dropped: its jobs go back (attempt counted; dead when none left)."""
        held = self._workers.get(worker_id)
        if not held:
            return []
        jobs = list(held.values())
        await self._lose_leases(jobs, now, WORKER_LOST)
        return jobs

    async def _lose_leases(self, jobs: list[Job], now: float, error: str) -> None:
        """Put back jobs whose lease ended without an outcome. Requeues are logged lazily (not
        awaited); a job out of attempts goes dead, and that outcome is committed."""
        waits: dict[str, tuple[Queue, int]] = {}
        for job in jobs:
            q = self._queues[job.queue]
            if job.attempts >= job.max_attempts:
                body = rec.JobFailed(job.id, now, job.attempts, error, None, None, True)
                lsn = self._append(q, RecordType.JOB_FAILED, _encode(body), True)
                self._apply_failed(q, job, body, lsn)
                waits[q.name] = (q, lsn)
            else:
                requeued = rec.JobRequeued(job.id, now, job.attempts, error)
                try:
                    lsn = self._append(q, RecordType.JOB_REQUEUED, _encode(requeued), True)
                except NoSpace:
                    lsn = 0  # deliveries are not durable anyway: after a crash the job is ready again
                self._apply_requeued(q, job, requeued, lsn)
                self._notify(q)
        for q, lsn in waits.values():
            await self._commit(q, lsn)

    # -- outcomes ---------------------------------------------------------------------------------------

    async def ack(self, job_id: str, worker_id: str, now: float, result: bytes | None = None) -> Job:
        """The job succeeded. :raises StaleLease: the worker does not hold its lease any more."""
        q, job = self._held(job_id, worker_id)
        if result is not None:
            v.check_bytes("result", result, self.config.max_result)
        body = rec.JobSucceeded(job.id, now, job.attempts, result)
        lsn = self._append(q, RecordType.JOB_SUCCEEDED, _encode(body), True)
        self._apply_succeeded(q, job, body, lsn)
        await self._commit(q, lsn)
        return job

    async def ack_many(
        self,
        job_ids: Sequence[str],
        worker_id: str,
        now: float,
        results: Sequence[bytes | None] | None = None,
    ) -> list[Job | Exception]:
        """Ack many jobs at once: every record is appended and applied, then one commit is awaited
        per queue. Returns, per job id, the job or the error that item failed with (it changed
        nothing: `StaleLease`, `JobNotFound`, a result too large, `NoSpace`...). An item whose commit
        failed gets that error (its outcome is in memory but may not be durable)."""
        if results is not None and len(results) != len(job_ids):
            raise ValidationError("results", "must have one entry per job id")
        out: list[Job | Exception] = []
        commits: dict[str, tuple[Queue, int]] = {}
        limit = self.config.max_result
        for i, job_id in enumerate(job_ids):
            try:
                q, job = self._held(job_id, worker_id)
                result = None if results is None else results[i]
                if result is not None:
                    v.check_bytes("result", result, limit)
                body = rec.JobSucceeded(job.id, now, job.attempts, result)
                lsn = self._append(q, RecordType.JOB_SUCCEEDED, _encode(body), True)
                self._apply_succeeded(q, job, body, lsn)
            except Exception as exc:  # one bad item fails alone
                out.append(exc)
                continue
            commits[q.name] = (q, lsn)
            out.append(job)
        await self._commit_all(commits, out)
        return out

    async def _commit_all(self, commits: dict[str, tuple[Queue, int]], out: list[Job | Exception]) -> None:
        """Await one commit per queue (the highest LSN appended to it); the items of a queue whose
        commit failed get its error in ``out``."""
        failed: dict[str, Exception] = {}
        for name, (q, lsn) in commits.items():
            try:
                await self._commit(q, lsn)
            except Exception as exc:
                failed[name] = exc
        if failed:
            for i, item in enumerate(out):
                if isinstance(item, Job) and item.queue in failed:
                    out[i] = failed[item.queue]

    async def release(self, job_id: str, worker_id: str, now: float) -> Job:
        """The worker hands a job back without running it (graceful shutdown): ENQUEUED again at
        once, the delivery's attempt not counted, no error recorded; logged, so that after a restart
        the job is ready. :raises StaleLease: the worker does not hold its lease."""
        (item,) = await self.release_many([job_id], worker_id, now)
        if isinstance(item, Exception):
            raise item
        return item

    async def release_many(self, job_ids: Sequence[str], worker_id: str, now: float) -> list[Job | Exception]:
        """`release` for many jobs: one commit per queue; per job id, the job or its error."""
        out: list[Job | Exception] = []
        commits: dict[str, tuple[Queue, int]] = {}
        for job_id in job_ids:
            try:
                q, job = self._held(job_id, worker_id)
                body = rec.JobEvent(job.id, now, max(0, job.attempts - 1))
                lsn = self._append(q, RecordType.JOB_RELEASED, _encode(body), True)
                self._apply_released(q, job, body, lsn)
            except Exception as exc:
                out.append(exc)
                continue
            commits[q.name] = (q, lsn)
            out.append(job)
        for q, _ in commits.values():
            self._notify(q)
        await self._commit_all(commits, out)
        return out

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
        q, job = self._held(job_id, worker_id)
        if retry_at is not None:
            at = v.check_time("retry_at", retry_at)
            snooze = rec.JobSnoozed(job.id, now, max(0, job.attempts - 1), at)
            lsn = self._append(q, RecordType.JOB_SNOOZED, _encode(snooze), True)
            self._apply_snoozed(q, job, snooze, lsn, now)
            await self._commit(q, lsn)
            return job
        if not isinstance(error, str):
            raise ValidationError("error", "must be a string")
        if traceback is not None and not isinstance(traceback, str):
            raise ValidationError("traceback", "must be a string")
        dead = not retryable or job.attempts >= job.max_attempts
        when = None if dead else now + retry_delay(job.backoff, job.attempts, self._rng.random)
        body = rec.JobFailed(job.id, now, job.attempts, error, traceback, when, dead)
        lsn = self._append(q, RecordType.JOB_FAILED, _encode(body), True)
        self._apply_failed(q, job, body, lsn)
        await self._commit(q, lsn)
        return job

    async def cancel(self, job_id: str, now: float) -> tuple[Job, str | None]:
        """Cancel a job that has not finished; returns it and the worker that held it (to be told to
        stop), if any. :raises InvalidTransition: the job already finished."""
        q, job = self._job(job_id)
        if job.state not in ACTIVE_STATES:
            raise InvalidTransition(job_id, job.state.label, "cancel")
        worker = job.worker if job.state in LEASED_STATES else None
        body = rec.JobEvent(job.id, now, job.attempts)
        lsn = self._append(q, RecordType.JOB_CANCELLED, _encode(body), True)
        self._apply_cancelled(q, job, body, lsn)
        await self._commit(q, lsn)
        return job, worker

    async def retry(self, job_id: str, now: float) -> Job:
        """Enqueue a DEAD or CANCELLED job again with a fresh set of attempts (errors are kept)."""
        q, job = self._job(job_id)
        if job.state is not JobState.DEAD and job.state is not JobState.CANCELLED:
            raise InvalidTransition(job_id, job.state.label, "retry")
        body = rec.JobEvent(job.id, now)
        lsn = self._append(q, RecordType.JOB_RETRIED, _encode(body), True)
        self._apply_retried(q, job, body, lsn)
        self._notify(q)
        await self._commit(q, lsn)
        return job

    async def delete(self, job_id: str, now: float) -> tuple[Job, str | None]:
        """Forget a job in any state (and its idempotency key); returns it and the worker that held it."""
        q, job = self._job(job_id)
        worker = job.worker if job.state in LEASED_STATES else None
        body = rec.JobEvent(job.id, now)
        lsn = self._append(q, RecordType.JOB_DELETED, _encode(body), True)
        self._apply_deleted(q, job, lsn)
        await self._commit(q, lsn)
        return job, worker

    # -- queues -----------------------------------------------------------------------------------------

    async def pause(self, queue: str, now: float) -> None:
        """Stop delivering the queue's jobs (enqueues are still accepted)."""
        q = self._queue(queue)
        lsn = self._append(q, RecordType.QUEUE_PAUSED, _encode(rec.QueueEvent(now)), True)
        q.paused = True
        await self._commit(q, lsn)

    async def resume(self, queue: str, now: float) -> None:
        q = self._queue(queue)
        lsn = self._append(q, RecordType.QUEUE_RESUMED, _encode(rec.QueueEvent(now)), True)
        q.paused = False
        if q.index.counts[_ENQUEUED]:
            self._notify(q)
        await self._commit(q, lsn)

    async def set_durability(self, queue: str, mode: Durability, now: float) -> None:
        """Change a queue's durability mode (creating the queue if needed); logged like any change."""
        if not isinstance(mode, Durability):
            raise ValidationError("durability", "must be one of sync, group, async")
        v.check_queue(queue, self.config)
        q = await self._queue_for_write(queue)
        body = rec.QueueDurability(mode.value, now)
        lsn = self._append(q, RecordType.QUEUE_DURABILITY, _encode(body), True)
        q.log.set_durability(mode)
        await self._commit(q, lsn)

    # -- maintenance ------------------------------------------------------------------------------------

    def _promote(self, q: Queue, now: float) -> int:
        due = q.index.due(now)
        for job in due:
            job.run_at = None
            self._transition(q, job, _ENQUEUED, now, 0)
        if due:
            self._notify(q)
        return len(due)

    async def tick(self, now: float) -> float | None:
        """Run every maintenance duty due at ``now``; returns the next time there is work (or None).

        Promotes due SCHEDULED/RETRYING jobs, expires leases (attempt counted; out of attempts ->
        DEAD with error "lease expired"), evicts history, forgets expired idempotency keys, and starts
        a background snapshot of each queue with ``snapshot_every`` records since its last one.
        """
        deadline: float | None = None
        for q in list(self._queues.values()):
            index = q.index
            self._promote(q, now)
            expired = index.expired(now)
            if expired:
                await self._lose_leases(expired, now, LEASE_EXPIRED)
            for job in index.evict(now):
                self._drop_lease(job)
            index.keys.expire(now)
            every = self.config.snapshot_every
            if every and not q.snapshotting and q.log.last_lsn - q.snapshot_lsn >= every:
                self._spawn_snapshot(q)
            nxt = index.next_deadline()
            if nxt is not None and (deadline is None or nxt < deadline):
                deadline = nxt
        return deadline

    def _spawn_snapshot(self, q: Queue) -> None:
        task = asyncio.get_running_loop().create_task(self._snapshot_task(q.name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot_task(self, queue: str) -> None:
        await self.snapshot(queue)

    async def snapshot(self, queue: str) -> int:
        """Write a fuzzy snapshot of the queue without stalling the loop; returns its LSN.

        The job list is fixed when the snapshot starts (every job that exists at its LSN is in it);
        jobs are encoded a chunk at a time with a yield to the loop between chunks, so a job may be
        written in a state newer than the LSN: replay is idempotent (``job.lsn``), so that is fine.
        """
        q = self._queue(queue)
        if q.snapshotting:
            return q.snapshot_lsn
        q.snapshotting = True
        started = time.perf_counter()
        writer = q.log.snapshot()
        try:
            index = q.index
            meta = rec.QueueMeta(
                rec.SNAPSHOT_VERSION,
                q.paused,
                q.log.durability.value,
                [rec.IdempotencyEntry(*item) for item in index.keys.items()],
                self._ids.last,
            )
            jobs, count = index.jobs_view()
            writer.add(_encode(meta))
            step = self.config.snapshot_chunk
            live = index.live_jobs
            for start in range(0, count, step):
                await asyncio.sleep(0)
                writer.add(_encode(rec.JobChunk(live(jobs, start, min(count, start + step)))))
            await writer.finish()
        except BaseException:
            writer.abort()
            self.snapshot_stats.failed += 1
            raise
        finally:
            q.snapshotting = False
        # Wall-clock time of completion for monitoring only: nothing in the engine reads it back.
        self.snapshot_stats.finished(time.perf_counter() - started, time.time())
        q.snapshot_lsn = max(q.snapshot_lsn, writer.lsn)
        return writer.lsn

    # -- record application (live and replay) -----------------------------------------------------------

    def _apply_succeeded(self, q: Queue, job: Job, body: rec.JobSucceeded, lsn: int) -> None:
        self._drop_lease(job)
        job.attempts = body.attempts
        job.result = body.result
        job.run_at = None
        self._transition(q, job, JobState.SUCCEEDED, body.at, lsn)

    def _apply_failed(self, q: Queue, job: Job, body: rec.JobFailed, lsn: int) -> None:
        self._drop_lease(job)
        job.attempts = body.attempt
        err = AttemptError(body.attempt, body.at, body.error, body.traceback)
        if job.errors is None:
            job.errors = [err]
        else:
            job.errors.append(err)
        if body.dead or body.retry_at is None:
            job.run_at = None
            self._transition(q, job, JobState.DEAD, body.at, lsn)
        else:
            job.run_at = body.retry_at
            self._transition(q, job, _RETRYING, body.at, lsn)

    def _apply_requeued(self, q: Queue, job: Job, body: rec.JobRequeued, lsn: int) -> None:
        self._drop_lease(job)
        job.attempts = body.attempts
        if body.error is not None:
            err = AttemptError(body.attempts, body.at, body.error)
            if job.errors is None:
                job.errors = [err]
            else:
                job.errors.append(err)
        job.run_at = None
        self._transition(q, job, _ENQUEUED, body.at, lsn)

    def _apply_snoozed(self, q: Queue, job: Job, body: rec.JobSnoozed, lsn: int, now: float) -> None:
        self._drop_lease(job)
        job.attempts = body.attempts
        if body.run_at > now:
            job.run_at = body.run_at
            self._transition(q, job, _SCHEDULED, body.at, lsn)
        else:
            job.run_at = None
            self._transition(q, job, _ENQUEUED, body.at, lsn)
            self._notify(q)

    def _apply_released(self, q: Queue, job: Job, body: rec.JobEvent, lsn: int) -> None:
        self._drop_lease(job)
        job.attempts = body.attempts
        job.run_at = None
        self._transition(q, job, _ENQUEUED, body.at, lsn)

    def _apply_cancelled(self, q: Queue, job: Job, body: rec.JobEvent, lsn: int) -> None:
        self._drop_lease(job)
        job.attempts = body.attempts
        job.run_at = None
        self._transition(q, job, JobState.CANCELLED, body.at, lsn)

    def _apply_retried(self, q: Queue, job: Job, body: rec.JobEvent, lsn: int) -> None:
        self._drop_lease(job)
        job.attempts = 0
        job.run_at = None
        self._transition(q, job, _ENQUEUED, body.at, lsn)

    def _apply_deleted(self, q: Queue, job: Job, lsn: int) -> None:
        self._drop_lease(job)
        job.lsn = lsn
        q.index.remove(job, forget_key=True)
        self.observer(job, True)

    def apply_record(self, q: Queue, lsn: int, rtype: int, body: bytes) -> None:
        """Replay one record (recovery): skips what the job already reflects (``lsn <= job.lsn``)."""
        obj = rec.decode(rtype, body)
        if isinstance(obj, Job):
            self._replay_new(q, [obj], lsn)
        elif isinstance(obj, rec.JobsEnqueued):
            self._replay_new(q, obj.jobs, lsn)
        elif isinstance(obj, rec.QueueEvent):
            q.paused = rtype == RecordType.QUEUE_PAUSED
        elif isinstance(obj, rec.QueueDurability):
            q.log.set_durability(Durability(obj.mode))
        else:
            self._replay_job(q, obj, lsn, rtype)

    def _replay_new(self, q: Queue, jobs: list[Job], lsn: int) -> None:
        intern = sys.intern
        for job in jobs:
            if job.id in self._table:
                continue
            job.queue = q.name
            job.name = intern(job.name)
            job.lsn = lsn
            q.index.add(job)
            self._ids.observe(job.id)

    def _replay_job(self, q: Queue, obj: msgspec.Struct, lsn: int, rtype: int) -> None:
        job_id = getattr(obj, "id", None)
        job = self._table.get(job_id) if isinstance(job_id, str) else None
        if job is None or lsn <= job.lsn:
            return
        if isinstance(obj, rec.JobSucceeded):
            self._apply_succeeded(q, job, obj, lsn)
        elif isinstance(obj, rec.JobFailed):
            self._apply_failed(q, job, obj, lsn)
        elif isinstance(obj, rec.JobRequeued):
            self._apply_requeued(q, job, obj, lsn)
        elif isinstance(obj, rec.JobSnoozed):
            self._apply_snoozed(q, job, obj, lsn, float("-inf"))
        elif isinstance(obj, rec.JobEvent):
            if rtype == RecordType.JOB_CANCELLED:
                self._apply_cancelled(q, job, obj, lsn)
            elif rtype == RecordType.JOB_RETRIED:
                self._apply_retried(q, job, obj, lsn)
            elif rtype == RecordType.JOB_RELEASED:
                self._apply_released(q, job, obj, lsn)
            else:
                self._apply_deleted(q, job, lsn)

    @property
    def ids(self) -> IdGenerator:
        return self._ids

    @property
    def table(self) -> JobTable:
        return self._table

    # -- queries ----------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """:raises JobNotFound:"""
        return self._job(job_id)[1]

    def find_by_key(self, queue: str, key: str) -> Job | None:
        """The job an idempotency key names in a queue (None if unknown, expired, or gone)."""
        q = self._queues.get(queue)
        if q is None:
            return None
        entry = q.index.keys.entry(key)
        return self._table.get(entry[0]) if entry is not None else None

    def search(self, q: str, limit: int = 50, before: str | None = None) -> list[Job]:
        """Jobs matching ``q`` as an id, an idempotency key (any queue) or a handler name; newest
        first. ``before`` (a job id) pages through handler-name matches."""
        v.check_limit(limit)
        out: list[Job] = []
        seen: set[str] = set()

        def add(job: Job | None) -> None:
            if job is not None and job.id not in seen and len(out) < limit:
                seen.add(job.id)
                out.append(job)

        if before is None:
            if is_job_id(q):
                add(self._table.get(q))
            for queue in self._queues.values():
                entry = queue.index.keys.entry(q)
                if entry is not None:
                    add(self._table.get(entry[0]))
        for job in self._table.by_name(q, limit, before):
            add(job)
        return out

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        cursor: str | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> tuple[list[Job], str | None]:
        """A page of a queue's jobs in ``state`` (by when they entered it) and the next cursor."""
        q = self._queue(queue)
        if not isinstance(state, JobState):
            raise ValidationError("state", "must be a job state")
        v.check_limit(limit, most=1000)
        position: int | None = None
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.isdigit():
                raise ValidationError("cursor", "must come from a previous page")
            position = int(cursor)
        jobs, nxt = q.index.page(state, position, limit, newest_first)
        return jobs, (None if nxt is None else str(nxt))

    def queues(self) -> list[str]:
        return sorted(self._queues)

    def queue_stats(self, queue: str) -> QueueStats:
        q = self._queue(queue)
        counts = dict(zip(_STATE_LABELS, q.index.counts[1:], strict=True))
        return QueueStats(q.name, q.paused, q.log.durability, counts, sum(counts.values()))

    def pending(self, queue: str | None = None) -> int:
        """Pending (not finished) jobs of ``queue``, or of every queue (None); 0 for an unknown
        queue. Exact and O(1): the index counts jobs as they enter and leave the pending states."""
        if queue is None:
            return self._table.pending_jobs
        q = self._queues.get(queue)
        return 0 if q is None else q.index.pending

    def pending_figures(self, queue: str) -> tuple[int, int, int, int]:
        """(pending jobs of ``queue``, their payload bytes, pending jobs of every queue, their
        bytes): what backpressure reads on each enqueue, in one call."""
        table = self._table
        q = self._queues.get(queue)
        if q is None:
            return 0, 0, table.pending_jobs, table.pending_bytes
        index = q.index
        return index.pending, index.pending_bytes, table.pending_jobs, table.pending_bytes

    def pending_bytes(self, queue: str | None = None) -> int:
        """Payload bytes of the pending jobs of ``queue``, or of every queue (None); exact, O(1)."""
        if queue is None:
            return self._table.pending_bytes
        q = self._queues.get(queue)
        return 0 if q is None else q.index.pending_bytes

    def stats(self) -> EngineStats:
        queues = {name: self.queue_stats(name) for name in sorted(self._queues)}
        return EngineStats(len(self._table), queues)

    def is_paused(self, queue: str) -> bool:
        return self._queue(queue).paused
