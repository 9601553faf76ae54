"""The binary protocol's requests, served by the engine (protocol/PROTOCOL.md).

`Service.handle` takes one decoded request of one connection and queues its answer on that
connection's session. Requests of a connection are served concurrently (pipelining): an operation
that must wait for an fsync is an engine coroutine driven by `_Call`, a few slots instead of an
asyncio Task per request: its synchronous part (validate, append, apply) runs at once, in request
order, and the answer is queued when the commit future resolves. Answers produced in one loop turn
leave in one write (the connection flushes once per turn).

Engine errors become ERROR frames with the codes of the semantics file; anything unexpected becomes
INTERNAL, is logged with its traceback, and the server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import msgspec

from spitfire.index.job import LEASED_STATES, Backoff, BackoffKind, Job, JobState, transitions
from spitfire.protocol import messages as m
from spitfire.protocol.messages import ErrorCode, MessageType
from spitfire.protocol.session import Request, ServerSession
from spitfire.wal.api import Durability

from . import validation as v
from .backpressure import Backpressure
from .building import DEFAULT_OPTIONS, JobOptions
from .definitions import MAX_DEFINITIONS, DefinitionOptions, DefinitionSpec, JobDefinition
from .dispatcher import Dispatcher, Worker
from .engine import BulkResult, Engine, QueueDeletion
from .errors import (
    EngineError,
    JobNotFound,
    Overloaded,
    StaleLease,
    ValidationError,
)
from .queries import JobFilter
from .records import Schedule, ScheduleOptions, ScheduleSpec
from .schedules import EMPTY_PAYLOAD
from .stats import EnqueueLatency, Refusals
from .tracehooks import Tracer
from .waiting import JobProgress, ProgressBoard, Waiters, check_timeout

log = logging.getLogger("spitfire.server.service")

#: Queues one worker may subscribe to at most.
MAX_SUBSCRIBED_QUEUES = 1000

_BACKOFF_KINDS = {k.name.lower(): k for k in BackoffKind}
_perf_counter = time.perf_counter
_ENQUEUES = (MessageType.ENQUEUE, MessageType.ENQUEUE_MANY)


class Peer(Protocol):
    """What the service needs of a connection."""

    session: ServerSession
    worker: Worker | None

    def schedule_flush(self) -> None:
        """Write queued frames at the end of this loop turn."""

    def flush(self) -> None:
        """Write queued frames now."""

    def push(self, message_type: int, message: msgspec.Struct) -> None:
        """Queue an unsolicited frame and schedule a flush."""


# -- conversions ------------------------------------------------------------------------------------------


def error_of(exc: BaseException) -> m.Error:
    """The ERROR body answering a request that raised ``exc`` (INTERNAL for anything unexpected)."""
    if isinstance(exc, EngineError):
        retry_after = exc.retry_after if isinstance(exc, Overloaded) else None
        return m.Error(exc.kind.value, str(exc), getattr(exc, "field", None), retry_after)
    return m.Error(ErrorCode.INTERNAL.value, f"internal error ({type(exc).__name__}); see the server log")


def backoff_of(wire: m.Backoff | None) -> Backoff | None:
    """The engine's backoff policy from the wire's. :raises ValidationError: unknown kind."""
    if wire is None:
        return None
    kind = _BACKOFF_KINDS.get(wire.kind)
    if kind is None:
        raise ValidationError("backoff.kind", f"must be one of {', '.join(_BACKOFF_KINDS)}")
    delays = None if wire.delays is None else tuple(wire.delays)
    return Backoff(kind, wire.base, wire.factor, wire.cap, wire.jitter, delays)


def options_of(msg: m.Enqueue | m.EnqueueMany) -> JobOptions:
    """The engine's job options from an ENQUEUE or ENQUEUE_MANY (checked when the jobs are built)."""
    if (
        msg.priority == 0
        and msg.run_at is None
        and msg.delay is None
        and msg.max_attempts is None
        and msg.backoff is None
        and msg.timeout is None
        and msg.headers is None
    ):
        return DEFAULT_OPTIONS  # the common case: no struct to build (the hot path)
    return JobOptions(
        priority=msg.priority, run_at=msg.run_at, delay=msg.delay, max_attempts=msg.max_attempts,
        backoff=backoff_of(msg.backoff), timeout=msg.timeout, headers=msg.headers,
    )  # fmt: skip


def wire_backoff(backoff: Backoff | None) -> m.Backoff | None:
    if backoff is None:
        return None
    delays = None if backoff.delays is None else list(backoff.delays)
    b = backoff
    return m.Backoff(b.kind.name.lower(), b.base, b.factor, b.cap, b.jitter, delays)


def job_info(job: Job, progress: JobProgress | None = None) -> m.JobInfo:
    """Everything known about a job, in the wire's job model (with its last progress, if given)."""
    history = [m.Transition(state=state.label, at=at) for state, at in transitions(job)]
    errors = [
        m.AttemptInfo(attempt=e.attempt, at=e.at, error=e.error, traceback=e.traceback)
        for e in job.errors or ()
    ]
    return m.JobInfo(
        id=job.id,
        queue=job.queue,
        name=job.name,
        payload=job.payload,
        state=job.state.label,
        priority=job.priority,
        created_at=job.created_at,
        updated_at=job.updated_at,
        run_at=job.run_at,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        backoff=wire_backoff(job.backoff),
        timeout=job.timeout,
        idempotency_key=job.idempotency_key,
        headers=job.headers,
        errors=errors,
        result=job.result,
        history=history,
        lease_until=job.lease_until,
        worker=job.worker,
        progress=None
        if progress is None
        else m.ProgressInfo(value=progress.value, message=progress.message, at=progress.at),
    )


def schedule_spec(msg: m.PutSchedule) -> ScheduleSpec:
    """The engine's schedule definition from a PUT_SCHEDULE (the engine checks it, naming fields)."""
    o = msg.options
    try:
        backoff = backoff_of(o.backoff)
    except ValidationError as exc:
        raise ValidationError(f"options.{exc.field}", str(exc).partition(": ")[2]) from None
    options = ScheduleOptions(o.priority, o.max_attempts, backoff, o.timeout, o.headers)
    payload = EMPTY_PAYLOAD if msg.payload is None else msg.payload
    return ScheduleSpec(msg.name, msg.cron, msg.queue, msg.job, msg.timezone, payload, options, msg.misfire)


def schedule_info(engine: Engine, s: Schedule, now: float) -> m.ScheduleInfo:
    """A schedule in the wire's shape, with the state of the last job it enqueued (None once gone)."""
    spec, o = s.spec, s.spec.options
    last = engine.table.get(s.last_job_id) if s.last_job_id is not None else None
    return m.ScheduleInfo(
        name=spec.name,
        cron=spec.cron,
        timezone=spec.timezone,
        queue=spec.queue,
        job=spec.job,
        payload=EMPTY_PAYLOAD if spec.payload is None else spec.payload,
        options=m.ScheduleOptions(o.priority, o.max_attempts, wire_backoff(o.backoff), o.timeout, o.headers),
        misfire=spec.misfire,
        paused=s.paused,
        created_at=s.created_at,
        updated_at=s.updated_at,
        next_run_at=engine.schedules.next_run_at(s, now),
        last_run_at=s.last_run_at,
        last_job_id=s.last_job_id,
        last_job_state=None if last is None else last.state.label,
    )


def definition_spec(d: m.JobDefinitionSpec, where: str) -> DefinitionSpec:
    """The engine's job definition from REGISTER_JOBS's (the engine checks it, naming fields under
    ``where``)."""
    try:
        backoff = backoff_of(d.backoff)
    except ValidationError as exc:
        raise ValidationError(f"{where}.{exc.field}", str(exc).partition(": ")[2]) from None
    options = DefinitionOptions(d.priority, d.max_attempts, backoff, d.timeout)
    return DefinitionSpec(d.name, d.queue, options, d.schema, d.validate)


def definition_info(d: JobDefinition) -> m.JobDefinitionInfo:
    """A job definition in the wire's shape."""
    spec, o = d.spec, d.spec.options
    return m.JobDefinitionInfo(
        name=spec.name, queue=spec.queue, priority=o.priority, max_attempts=o.max_attempts,
        backoff=wire_backoff(o.backoff), timeout=o.timeout, schema=spec.schema, validate=spec.validate,
        registered_by=d.registered_by, created_at=d.created_at, updated_at=d.updated_at,
    )  # fmt: skip


_STATE_LABELS = {s.label: s for s in JobState}


def _states_of(labels: list[str] | None, *, required: bool) -> frozenset[JobState] | None:
    """The states a request names by label. :raises ValidationError: naming ``states``."""
    if not labels:
        if required:
            raise ValidationError("states", "give at least one state, e.g. succeeded or dead")
        return None
    bad = [label for label in labels if label not in _STATE_LABELS]
    if bad:
        raise ValidationError("states", f"unknown state {bad[0]!r}; one of {', '.join(_STATE_LABELS)}")
    return frozenset(_STATE_LABELS[label] for label in labels)


def _created_label(job: Job) -> str:
    # By the time the commit resolves a new job may already be delivered; the producer is told the
    # state it was created in.
    return (
        job.state.label if job.state is JobState.SCHEDULED or job.state is JobState.CANCELLED else "enqueued"
    )


# -- driving engine coroutines without a Task each --------------------------------------------------------

Done = Callable[[Any, BaseException | None], None]


class _Call:
    """Runs one engine coroutine to completion, resuming it from its futures' callbacks.

    A Task would cost a scheduling round-trip before the first step and a larger object; the
    engine's coroutines only ever await asyncio futures (commits), so this is all they need.
    """

    __slots__ = ("coro", "done")

    def __init__(self, coro: Coroutine[Any, Any, Any], done: Done) -> None:
        self.coro = coro
        self.done = done

    def step(self, _future: object = None) -> None:
        try:
            yielded = self.coro.send(None)
        except StopIteration as stop:
            self.done(stop.value, None)
            return
        except (Exception, asyncio.CancelledError) as exc:
            self.done(None, exc)
            return
        if yielded is None:  # a bare yield (asyncio.sleep(0)): resume next turn
            asyncio.get_running_loop().call_soon(self.step)
        else:
            yielded._asyncio_future_blocking = False
            yielded.add_done_callback(self.step)


class _Batch:
    """Collects the outcomes of the items of one ACK, FAIL or RELEASE; answers DONE after the last."""

    __slots__ = ("conn", "errors", "left", "request", "service")

    def __init__(self, service: Service, conn: Peer, request: Request, count: int) -> None:
        self.service = service
        self.conn = conn
        self.request = request
        self.left = count
        self.errors: list[m.ItemError] = []

    def item(self, index: int) -> Done:
        def done(job: Any, exc: BaseException | None) -> None:
            if exc is not None:
                err = self.service.item_error(exc)
                self.errors.append(m.ItemError(index, err.code, err.message))
            self.left -= 1
            if self.left == 0:
                self.errors.sort(key=lambda e: e.index)
                self.service.answer(self.conn, self.request, MessageType.DONE, m.Done(self.errors))

        return done


# -- the service ------------------------------------------------------------------------------------------


class Service:
    """Serves every connection's requests against one engine (each handler parses, calls one engine
    command, renders; admission and deadlines are the engine's)."""

    def __init__(
        self,
        engine: Engine,
        dispatcher: Dispatcher,
        backpressure: Backpressure,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.backpressure = backpressure
        self.clock = clock
        #: Requests started and not answered yet (shutdown waits for them).
        self.inflight = 0
        self.connections = 0
        #: ENQUEUE and ENQUEUE_MANY: request handed to the service to answer queued (for /metrics).
        self.enqueue_latency = EnqueueLatency()
        #: Enqueues refused BUSY, TOO_LARGE or NO_SPACE, by protocol (the HTTP API counts here too).
        self.refusals = Refusals()
        #: Spans of enqueue requests (``--otel``; the HTTP API's too). None: off.
        self.tracer: Tracer | None = None
        self._idle: asyncio.Event | None = None
        #: WAIT and ``?wait_ms=``: answered when their job is final (bounded; in memory).
        self.waiters = Waiters(lambda job_id: engine.table.get(job_id))
        #: The last progress of running jobs (PROGRESS; in memory, not logged).
        self.progress = ProgressBoard()
        engine.observer = self.observe  # the HTTP API chains its own observer to this one
        self._handlers: dict[MessageType, Callable[[Peer, Request], None]] = {
            MessageType.PING: self._ping,
            MessageType.ENQUEUE: self._enqueue,
            MessageType.ENQUEUE_MANY: self._enqueue_many,
            MessageType.GET: self._get,
            MessageType.CANCEL: self._cancel,
            MessageType.RETRY: self._retry,
            MessageType.DELETE: self._delete,
            MessageType.STATS: self._stats,
            MessageType.PAUSE: self._pause,
            MessageType.RESUME: self._resume,
            MessageType.SUBSCRIBE: self._subscribe,
            MessageType.CREDIT: self._credit,
            MessageType.UNSUBSCRIBE: self._unsubscribe,
            MessageType.START: self._start,
            MessageType.ACK: self._ack,
            MessageType.FAIL: self._fail,
            MessageType.HEARTBEAT: self._heartbeat,
            MessageType.RELEASE: self._release,
            MessageType.DELETE_QUEUE: self._delete_queue,
            MessageType.PUT_SCHEDULE: self._put_schedule,
            MessageType.GET_SCHEDULE: self._get_schedule,
            MessageType.LIST_SCHEDULES: self._list_schedules,
            MessageType.DELETE_SCHEDULE: self._delete_schedule,
            MessageType.PAUSE_SCHEDULE: self._pause_schedule,
            MessageType.RESUME_SCHEDULE: self._resume_schedule,
            MessageType.TRIGGER_SCHEDULE: self._trigger_schedule,
            MessageType.LIST_JOBS: self._list_jobs,
            MessageType.PURGE: self._purge,
            MessageType.SET_DURABILITY: self._set_durability,
            MessageType.LIST_WORKERS: self._list_workers,
            MessageType.WAIT: self._wait,
            MessageType.PROGRESS: self._progress,
            MessageType.REGISTER_JOBS: self._register_jobs,
            MessageType.LIST_JOB_DEFINITIONS: self._list_job_definitions,
        }

    # -- entry points -----------------------------------------------------------------------------------

    def handle(self, conn: Peer, request: Request) -> None:
        """Serve one request; its answer is queued on ``conn.session`` now or when it is durable."""
        try:
            self._handlers[request.type](conn, request)
        except Exception as exc:  # engine errors and bugs alike: answer, never crash the server
            self.fail_request(conn, request, exc)

    def observe(self, job: Job, deleted: bool) -> None:
        """The engine's job observer (for waiters and progress): cheap while neither holds anything."""
        if self.waiters.count:
            self.waiters.settled(job, deleted)
        if self.progress.by_job:
            self.progress.settled(job, deleted)

    def connection_closed(self, conn: Peer) -> None:
        """Forget what a closed connection was waiting on."""
        self.waiters.drop_owner(conn)

    def job_info(self, job: Job) -> m.JobInfo:
        """`job_info` with the job's last progress."""
        return job_info(job, self.progress.get(job.id))

    def answer(self, conn: Peer, request: Request, message_type: int, message: msgspec.Struct) -> None:
        """Queue the answer to a request that was in flight, and count it finished."""
        conn.session.reply(request, message, message_type)
        conn.schedule_flush()
        self._finished()

    def fail_request(self, conn: Peer, request: Request, exc: BaseException) -> None:
        """Answer ``request`` with the ERROR for ``exc`` (logging unexpected ones with traceback)."""
        err = error_of(exc)
        if err.code == ErrorCode.INTERNAL:
            log.error("request %s (id %d) failed", request.type.name, request.request_id, exc_info=exc)
        elif request.type in _ENQUEUES:
            self.refusals.count("binary", err.code)
        if request.request_id:
            conn.session.error(
                request.request_id, ErrorCode(err.code), err.message, err.field, err.retry_after
            )
            conn.schedule_flush()

    def item_error(self, exc: BaseException) -> m.Error:
        """The error of one item of a batch (logged when unexpected)."""
        err = error_of(exc)
        if err.code == ErrorCode.INTERNAL:
            log.error("batch item failed", exc_info=exc)
        return err

    async def wait_idle(self) -> None:
        """Wait until no request is in flight."""
        while self.inflight:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def _finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    def _drive(self, coro: Coroutine[Any, Any, Any], done: Done) -> None:
        self.inflight += 1
        _Call(coro, done).step()

    def _single(
        self,
        conn: Peer,
        request: Request,
        coro: Coroutine[Any, Any, Any],
        reply: Callable[[Any], tuple[int, Any]],
    ) -> None:
        """Drive one engine coroutine; answer with ``reply(result)`` or the error it raised."""

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is None:
                try:
                    message_type, message = reply(result)
                except Exception as err:
                    exc = err
                else:
                    self.answer(conn, request, message_type, message)
                    return
            self._finished()
            self.fail_request(conn, request, exc)

        self._drive(coro, done)

    # -- producers --------------------------------------------------------------------------------------

    def _ping(self, conn: Peer, request: Request) -> None:
        conn.session.reply(request, m.Pong(), MessageType.PONG)

    def _enqueue(self, conn: Peer, request: Request) -> None:
        started = _perf_counter()
        msg: m.Enqueue = request.message
        queue = msg.queue
        tracer = self.tracer
        trace = tracer.start_enqueue(queue, msg.headers, None) if tracer is not None else None
        coro = self.engine.enqueue(
            queue, msg.name, msg.payload, now=self.clock(), options=options_of(msg),
            idempotency_key=msg.idempotency_key, request_token=msg.request_token,
        )  # fmt: skip

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                if trace is not None:
                    trace.end((), exc)
                self._finished()
                self.fail_request(conn, request, exc)
                return
            job, created = result
            label = _created_label(job) if created else job.state.label
            self.answer(conn, request, MessageType.ENQUEUED, m.Enqueued(job.id, created, label))
            self.enqueue_latency.single.observe(_perf_counter() - started)
            if trace is not None:
                trace.end((job,), None)

        self._drive(coro, done)
        if trace is not None:
            trace.appended()  # the engine's first step appends the record (unless it makes the queue)

    def _enqueue_many(self, conn: Peer, request: Request) -> None:
        started = _perf_counter()
        msg: m.EnqueueMany = request.message
        queue = msg.queue
        payloads = msg.payloads
        count = len(payloads)
        tracer = self.tracer
        trace = tracer.start_enqueue(queue, msg.headers, count) if tracer is not None else None
        coro = self.engine.enqueue_batch(
            queue, msg.name, payloads, now=self.clock(), options=options_of(msg),
            idempotency_keys=msg.idempotency_keys, request_token=msg.request_token,
        )  # fmt: skip

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                if trace is not None:
                    trace.end((), exc)
                self._finished()
                self.fail_request(conn, request, exc)
                return
            jobs: list[Job] = result[0]
            created: list[bool] = [True] * count if result[1] is None else result[1]
            ids = [job.id for job in jobs]
            self.answer(conn, request, MessageType.ENQUEUED_MANY, m.EnqueuedMany(ids, created))
            self.enqueue_latency.batch.observe(_perf_counter() - started)
            if trace is not None:
                trace.end(jobs, None)

        self._drive(coro, done)
        if trace is not None:
            trace.appended()

    # -- jobs -------------------------------------------------------------------------------------------

    def _get(self, conn: Peer, request: Request) -> None:
        job = self.engine.get(request.message.job_id)
        conn.session.reply(request, m.Job(self.job_info(job)), MessageType.JOB)
        conn.flush()  # answers can be large (1 MiB payloads): let a full send buffer pause the client

    def _wait(self, conn: Peer, request: Request) -> None:
        msg: m.Wait = request.message
        check_timeout(msg.timeout)  # a bad argument first, whatever the job
        job = self.engine.get(msg.job_id)  # :raises JobNotFound: -> NOT_FOUND at once

        # Not counted in ``inflight``: a wait may last an hour, and shutdown must not wait for it (the
        # connection closes; the SDK asks the restarted server again).
        def done(found: Job | None, deleted: bool) -> None:
            if found is None or deleted:
                self.fail_request(conn, request, JobNotFound(msg.job_id))
                return
            conn.session.reply(request, m.Job(self.job_info(found)), MessageType.JOB)
            conn.flush()

        self.waiters.add(job, conn, msg.timeout, done)

    def _progress(self, conn: Peer, request: Request) -> None:
        msg: m.Progress = request.message
        worker = conn.worker
        job = self.engine.table.get(msg.job_id)
        # Only the lease holder reports; a late or bad report changes nothing (there is no answer).
        if worker is None or job is None or job.worker != worker.id or job.state not in LEASED_STATES:
            return
        with contextlib.suppress(ValidationError):
            self.progress.report(job, msg.value, msg.message, self.clock())

    def _cancel(self, conn: Peer, request: Request) -> None:
        coro = self.engine.cancel(request.message.job_id, self.clock())
        self._single(conn, request, coro, self._stop_holder)

    def _delete(self, conn: Peer, request: Request) -> None:
        coro = self.engine.delete(request.message.job_id, self.clock())
        self._single(conn, request, coro, self._stop_holder)

    def _stop_holder(self, result: tuple[Job, str | None]) -> tuple[int, Any]:
        """Answer a cancel or delete with the job, and tell the worker that held it to stop."""
        job, worker = result
        if worker is not None:
            self.dispatcher.cancelled(worker, [job.id])
        return MessageType.JOB, m.Job(job_info(job))

    def _retry(self, conn: Peer, request: Request) -> None:
        def reply(job: Job) -> tuple[int, Any]:
            return MessageType.JOB, m.Job(job_info(job))

        self._single(conn, request, self.engine.retry(request.message.job_id, self.clock()), reply)

    # -- queues -----------------------------------------------------------------------------------------

    def _stats(self, conn: Peer, request: Request) -> None:
        queue: str | None = request.message.queue
        engine = self.engine
        if queue is None:
            stats = engine.stats()
            queues = list(stats.queues.values())
            total = stats.total_jobs
        else:
            queues = [engine.queue_stats(queue)]
            total = queues[0].total
        info = m.StatsInfo(
            total_jobs=total,
            queues=[
                m.QueueInfo(
                    name=q.name,
                    paused=q.paused,
                    durability=q.durability.value,
                    counts=q.counts,
                    total=q.total,
                )
                for q in queues
            ],
            workers=len(self.dispatcher.workers),
            connections=self.connections,
        )
        conn.session.reply(request, m.StatsReply(info), MessageType.STATS_REPLY)
        conn.flush()

    def _queue_op(
        self, conn: Peer, request: Request, op: Callable[[str, float], Coroutine[Any, Any, None]]
    ) -> None:
        queue = request.message.queue
        if queue is None:
            raise ValidationError("queue", "must name a queue")
        self._single(conn, request, op(queue, self.clock()), lambda _r: (MessageType.OK, m.Ok()))

    def _delete_queue(self, conn: Peer, request: Request) -> None:
        msg: m.DeleteQueue = request.message
        coro = self.engine.delete_queue(msg.queue, self.clock(), force=msg.force)
        self._single(conn, request, coro, self._queue_deleted)

    def _queue_deleted(self, deletion: QueueDeletion) -> tuple[int, Any]:
        """Answer a queue's deletion, and tell the workers that held its jobs to stop them."""
        self.dispatcher.queue_deleted(deletion)
        return MessageType.OK, m.Ok()

    def _pause(self, conn: Peer, request: Request) -> None:
        self._queue_op(conn, request, self.engine.pause)

    def _resume(self, conn: Peer, request: Request) -> None:
        self._queue_op(conn, request, self.engine.resume)

    # -- administration (LIST_JOBS, PURGE, SET_DURABILITY, LIST_WORKERS) ---------------------------------

    def _list_jobs(self, conn: Peer, request: Request) -> None:
        msg: m.ListJobs = request.message
        f = JobFilter(queue=msg.queue, states=_states_of(msg.states, required=False))
        jobs, cursor = self.engine.list_all(f, msg.cursor, msg.limit, msg.newest_first)
        conn.session.reply(request, m.JobList([job_info(j) for j in jobs], cursor), MessageType.JOBS)
        conn.flush()  # a page of 1 MiB payloads is large: let a full send buffer pause the client

    def _purge(self, conn: Peer, request: Request) -> None:
        msg: m.Purge = request.message
        coro = self.engine.purge(msg.queue, _states_of(msg.states, required=True) or (), self.clock())

        def reply(result: BulkResult) -> tuple[int, Any]:
            for worker, ids in result.revoked.items():
                self.dispatcher.cancelled(worker, ids)
            return MessageType.PURGED, m.Purged(result.matched, result.done, result.failed)

        self._single(conn, request, coro, reply)

    def _set_durability(self, conn: Peer, request: Request) -> None:
        msg: m.SetDurability = request.message
        try:
            mode = Durability(msg.mode)
        except ValueError:
            raise ValidationError("durability", "must be one of sync, group, async") from None
        coro = self.engine.set_durability(msg.queue, mode, self.clock())
        self._single(conn, request, coro, lambda _r: (MessageType.OK, m.Ok()))

    def _list_workers(self, conn: Peer, request: Request) -> None:
        engine = self.engine
        infos = [
            m.WorkerInfo(
                id=w.id, name=w.name, queues=list(w.queues), held=len(engine.held_by(w.id)),
                active=w.active, credits=w.credits, connected_at=w.connected_at, last_seen=w.last_seen,
                host=w.host or None, pid=w.pid or None, concurrency=w.concurrency or None,
            )
            for w in self.dispatcher.workers.values()
        ]  # fmt: skip
        conn.session.reply(request, m.WorkerList(infos), MessageType.WORKERS)
        conn.flush()

    # -- schedules --------------------------------------------------------------------------------------

    def _schedule_reply(self, now: float) -> Callable[[Schedule], tuple[int, Any]]:
        def reply(s: Schedule) -> tuple[int, Any]:
            return MessageType.SCHEDULE, m.ScheduleReply(schedule_info(self.engine, s, now))

        return reply

    def _put_schedule(self, conn: Peer, request: Request) -> None:
        msg: m.PutSchedule = request.message
        now = self.clock()
        coro = self.engine.schedules.put(schedule_spec(msg), now, replace=msg.replace)

        def reply(result: tuple[Schedule, bool]) -> tuple[int, Any]:
            s, created = result
            return MessageType.SCHEDULE, m.ScheduleReply(schedule_info(self.engine, s, now), created)

        self._single(conn, request, coro, reply)

    def _get_schedule(self, conn: Peer, request: Request) -> None:
        s = self.engine.schedules.get(request.message.name)
        info = schedule_info(self.engine, s, self.clock())
        conn.session.reply(request, m.ScheduleReply(info), MessageType.SCHEDULE)
        conn.flush()

    def _list_schedules(self, conn: Peer, request: Request) -> None:
        now = self.clock()
        infos = [schedule_info(self.engine, s, now) for s in self.engine.schedules.all()]
        conn.session.reply(request, m.ScheduleList(infos), MessageType.SCHEDULES)
        conn.flush()  # up to 10,000 schedules: let a full send buffer pause the client

    def _schedule_op(
        self, conn: Peer, request: Request, op: Callable[[str, float], Coroutine[Any, Any, Schedule]]
    ) -> None:
        now = self.clock()
        self._single(conn, request, op(request.message.name, now), self._schedule_reply(now))

    def _delete_schedule(self, conn: Peer, request: Request) -> None:
        self._schedule_op(conn, request, self.engine.schedules.delete)

    def _pause_schedule(self, conn: Peer, request: Request) -> None:
        self._schedule_op(conn, request, self.engine.schedules.pause)

    def _resume_schedule(self, conn: Peer, request: Request) -> None:
        self._schedule_op(conn, request, self.engine.schedules.resume)

    def _trigger_schedule(self, conn: Peer, request: Request) -> None:
        def reply(job: Job) -> tuple[int, Any]:
            return MessageType.ENQUEUED, m.Enqueued(job.id, True, _created_label(job))

        self._single(conn, request, self.engine.schedules.trigger(request.message.name, self.clock()), reply)

    # -- job definitions --------------------------------------------------------------------------------

    def _register_jobs(self, conn: Peer, request: Request) -> None:
        msg: m.RegisterJobs = request.message
        if len(msg.definitions) > MAX_DEFINITIONS:  # before converting them: nothing is done for them
            raise ValidationError("definitions", f"must hold at most {MAX_DEFINITIONS} definitions")
        specs = [definition_spec(d, f"definitions[{i}]") for i, d in enumerate(msg.definitions)]
        hello = conn.session.hello
        coro = self.engine.definitions.register(specs, hello.client if hello else "", self.clock())
        self._single(conn, request, coro, lambda _r: (MessageType.OK, m.Ok()))

    def _list_job_definitions(self, conn: Peer, request: Request) -> None:
        infos = [definition_info(d) for d in self.engine.definitions.all()]
        conn.session.reply(request, m.JobDefinitionList(infos), MessageType.DEFINITIONS)
        conn.flush()  # up to 10,000 definitions: let a full send buffer pause the client

    # -- workers ----------------------------------------------------------------------------------------

    def _subscribe(self, conn: Peer, request: Request) -> None:
        msg: m.Subscribe = request.message
        if conn.worker is not None:
            raise ValidationError("queues", "this connection already subscribed (once per connection)")
        if not msg.queues or len(msg.queues) > MAX_SUBSCRIBED_QUEUES:
            raise ValidationError("queues", f"must name 1 to {MAX_SUBSCRIBED_QUEUES} queues")
        for queue in msg.queues:
            v.check_name("queues", queue, self.engine.config)
        if not 0 <= msg.credits <= 1_000_000:
            raise ValidationError("credits", "must be an integer from 0 to 1000000")
        if len(msg.name) > 200:
            raise ValidationError("name", "must be at most 200 characters")
        if len(msg.host) > 255:
            raise ValidationError("host", "must be at most 255 characters")
        if not 0 <= msg.pid < 2**31:
            raise ValidationError("pid", "must be an integer from 0 to 2147483647")
        if not 0 <= msg.concurrency <= 1_000_000:
            raise ValidationError("concurrency", "must be an integer from 0 to 1000000")
        if msg.resume is not None and not 0 < len(msg.resume) <= 64:
            raise ValidationError("resume", "must be an earlier SUBSCRIBED's worker_id (1 to 64 characters)")
        worker = conn.worker = self.dispatcher.subscribe(conn, msg.queues, msg.credits, msg.name, msg.resume)
        worker.host, worker.pid, worker.concurrency = msg.host, msg.pid, msg.concurrency
        conn.session.reply(request, m.Subscribed(conn.worker.id), MessageType.SUBSCRIBED)

    def _credit(self, conn: Peer, request: Request) -> None:
        if conn.worker is not None:
            conn.worker.last_seen = self.clock()
            self.dispatcher.credit(conn.worker, request.message.credits)

    def _unsubscribe(self, conn: Peer, request: Request) -> None:
        if conn.worker is not None:
            self.dispatcher.unsubscribe(conn.worker)
        conn.session.reply(request, m.Ok(), MessageType.OK)

    def _start(self, conn: Peer, request: Request) -> None:
        worker = conn.worker
        if worker is None:
            return
        now = self.clock()
        for job_id in request.message.job_ids:
            # A stale START (cancelled or expired meanwhile) changes nothing.
            with contextlib.suppress(EngineError):
                self.engine.start(job_id, worker.id, now)

    def _heartbeat(self, conn: Peer, request: Request) -> None:
        msg: m.Heartbeat = request.message
        worker = conn.worker
        engine = self.engine
        extended = 0
        if worker is not None:
            now = worker.last_seen = self.clock()
            if msg.job_ids is None and msg.seconds is None:
                extended = engine.heartbeat(worker.id, now)
            else:
                ids = [j.id for j in engine.held_by(worker.id)] if msg.job_ids is None else msg.job_ids
                for job_id in ids:
                    try:
                        engine.extend(job_id, worker.id, now, msg.seconds)
                    except (StaleLease, JobNotFound):
                        continue
                    extended += 1
        conn.session.reply(request, m.HeartbeatOk(extended), MessageType.HEARTBEAT_OK)

    def _worker_id(self, conn: Peer) -> str:
        # A connection that never subscribed holds no lease: its items fail with CONFLICT.
        return conn.worker.id if conn.worker is not None else "-"

    def _items(
        self,
        conn: Peer,
        request: Request,
        coros: list[Coroutine[Any, Any, Job]],
    ) -> None:
        if not coros:
            conn.session.reply(request, m.Done([]), MessageType.DONE)
            return
        batch = _Batch(self, conn, request, len(coros))
        self.inflight += 1  # the batch is one request in flight; items are driven without counting
        for i, coro in enumerate(coros):
            _Call(coro, batch.item(i)).step()

    def _outcomes(self, conn: Peer, request: Request, coro: Coroutine[Any, Any, list[Any]]) -> None:
        """Drive an engine call that settles many items at once (ack_many, release_many) and answer
        DONE listing the items that failed."""

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._finished()
                self.fail_request(conn, request, exc)
                return
            errors: list[m.ItemError] = []
            for index, item in enumerate(result):
                if isinstance(item, Exception):
                    err = self.item_error(item)
                    errors.append(m.ItemError(index, err.code, err.message))
            self.answer(conn, request, MessageType.DONE, m.Done(errors))

        self._drive(coro, done)

    def _ack(self, conn: Peer, request: Request) -> None:
        items = request.message.items
        if not items:
            conn.session.reply(request, m.Done([]), MessageType.DONE)
            return
        ids = [item.job_id for item in items]
        given = [item.result for item in items]
        results = given if any(result is not None for result in given) else None
        self._outcomes(conn, request, self.engine.ack_many(ids, self._worker_id(conn), self.clock(), results))

    def _fail(self, conn: Peer, request: Request) -> None:
        worker = self._worker_id(conn)
        now = self.clock()
        fail = self.engine.fail
        coros = [
            fail(i.job_id, worker, now, i.error, i.traceback, retryable=i.retryable, retry_at=i.retry_at)
            for i in request.message.items
        ]
        self._items(conn, request, coros)

    def _release(self, conn: Peer, request: Request) -> None:
        job_ids = request.message.job_ids
        if not job_ids:
            conn.session.reply(request, m.Done([]), MessageType.DONE)
            return
        self._outcomes(conn, request, self.engine.release_many(job_ids, self._worker_id(conn), self.clock()))
