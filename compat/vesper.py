"""Vesper's HTTP API: POST /jobs, GET /jobs/{id}, GET /workers, GET /stats.

A Vesper job is a Spitfire job: its ``type`` is the handler name (a Spitfire worker runs it), it
goes to queue ``default`` unless the body names ``queue``, and its ``Idempotency-Key`` header is
the job's idempotency key (the same key again answers 200 with the job it names). Statuses are
Vesper's words for Spitfire's states (`STATUS`); ``retries`` counts the failed attempts so far and
``error`` is the last one's message.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
from blacksheep import Request, Response
from blacksheep.server.routing import Router

from spitfire.dashboard.model import from_msgpack, to_msgpack
from spitfire.index.job import Job, JobState
from spitfire.server.building import JobOptions
from spitfire.server.errors import ValidationError

from .common import (
    DEFAULT_QUEUE,
    Claimers,
    Context,
    Name,
    Priority,
    Wrap,
    json_response,
    named,
    rfc3339,
    route,
)

Status = Literal["pending", "processing", "done", "dlq", "failed"]
#: Vesper's status of each Spitfire state.
STATUS: dict[JobState, Status] = {
    JobState.SCHEDULED: "pending",
    JobState.ENQUEUED: "pending",
    JobState.RETRYING: "pending",
    JobState.RESERVED: "processing",
    JobState.RUNNING: "processing",
    JobState.SUCCEEDED: "done",
    JobState.DEAD: "dlq",
    JobState.CANCELLED: "failed",
}
#: The engine's name of a field -> the name a Vesper client sent it under.
FIELDS = {"name": "type", "idempotency_key": "Idempotency-Key"}
_STATUSES: tuple[str, ...] = ("pending", "processing", "done", "dlq", "failed")


class VesperJobIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /jobs."""

    #: The job's type: the Spitfire handler name.
    type: Name
    payload: Any = None
    #: 0..10, higher first; FIFO within one.
    priority: Priority = 0
    #: The Spitfire queue (default ``default``).
    queue: Name | None = None


class VesperJob(msgspec.Struct):
    """A job as Vesper answers it."""

    job_id: str
    type: str
    queue: str
    priority: int
    payload: Any
    status: Status
    #: Failed attempts so far.
    retries: int
    #: The last failed attempt's error ("" when none failed).
    error: str
    created_at: str
    updated_at: str


class MachineOut(msgspec.Struct):
    """The workers of one host."""

    workers: int
    #: Jobs they may run at once (as the workers said; 0 when none said).
    concurrency: int
    #: Jobs they hold now.
    in_flight: int


class WorkerOut(msgspec.Struct):
    id: str
    #: ``protocol`` (an SDK worker) or ``simplequeue`` (a claimer of the simplequeue API).
    kind: Literal["protocol", "simplequeue"]
    host: str
    pid: int | None
    queues: list[str]
    concurrency: int | None
    in_flight: int
    last_seen: str


class WorkersOut(msgspec.Struct):
    """Body of GET /workers."""

    total_workers: int
    #: Host -> its workers.
    machines: dict[str, MachineOut]
    workers: list[WorkerOut]


class QueueCounts(msgspec.Struct):
    pending: int
    processing: int
    done: int
    dlq: int
    failed: int
    total: int


class StatsOut(msgspec.Struct):
    """Body of GET /stats."""

    total_jobs: int
    #: Jobs per Vesper status, every queue together.
    jobs: QueueCounts
    #: Queue -> its jobs per Vesper status.
    queues: dict[str, QueueCounts]
    total_workers: int
    uptime_seconds: float


def vesper_job(job: Job) -> VesperJob:
    """The Vesper JSON of a job."""
    errors = job.errors or []
    return VesperJob(
        job_id=job.id,
        type=job.name,
        queue=job.queue,
        priority=job.priority,
        payload=from_msgpack(job.payload),
        status=STATUS[job.state],
        retries=len(errors),
        error=errors[-1].error if errors else "",
        created_at=rfc3339(job.created_at),
        updated_at=rfc3339(job.updated_at or job.created_at),
    )


def counts(by_state: dict[str, int]) -> QueueCounts:
    """Jobs per Vesper status from jobs per Spitfire state label."""
    out = dict.fromkeys(_STATUSES, 0)
    for state, status in STATUS.items():
        out[status] += by_state.get(state.label, 0)
    return QueueCounts(**out, total=sum(by_state.values()))


class Vesper:
    """The Vesper routes."""

    def __init__(self, ctx: Context, claimers: Claimers) -> None:
        self.ctx = ctx
        self.claimers = claimers

    def add(self, router: Router, wrap: Wrap) -> None:
        """Add the routes to ``router``, each handler wrapped by ``wrap``."""
        router.add_post("/jobs", wrap(self.create))
        router.add_get("/jobs/{id}", wrap(self.get))
        router.add_get("/workers", wrap(self.workers))
        router.add_get("/stats", wrap(self.stats))

    async def create(self, request: Request) -> Response:
        """POST /jobs: 201 with the new job, 200 with the one its Idempotency-Key names."""
        ctx = self.ctx
        try:
            body = await ctx.body(request, VesperJobIn)
            header = request.get_first_header(b"idempotency-key")
            key = None if header is None else header.decode("utf-8", "replace")
            if key is not None and not key.strip():
                raise ValidationError("Idempotency-Key", "must not be empty; leave the header out instead")
            with named(FIELDS):
                job, created = await ctx.engine.enqueue(
                    body.queue or DEFAULT_QUEUE,
                    body.type,
                    to_msgpack("payload", body.payload),
                    now=time.time(),
                    options=JobOptions(priority=body.priority),
                    idempotency_key=key,
                )
        except Exception as exc:
            ctx.refused(exc)
            raise
        return json_response(201 if created else 200, vesper_job(job))

    async def get(self, request: Request) -> Response:
        """GET /jobs/{id}: 404 when no such job."""
        return json_response(200, vesper_job(self.ctx.engine.get(route(request, "id"))))

    async def workers(self, request: Request) -> Response:
        """GET /workers: SDK workers and simplequeue claimers, by host."""
        ctx = self.ctx
        engine, now = ctx.engine, time.time()
        out: list[WorkerOut] = []
        for w in ctx.dispatcher.workers.values():
            host, queues, seen = w.host or "unknown", list(w.queues), rfc3339(w.last_seen)
            held = len(engine.held_by(w.id))
            out.append(
                WorkerOut(w.id, "protocol", host, w.pid or None, queues, w.concurrency or None, held, seen)
            )
        for c in self.claimers.active(now, ctx.quiet_after, engine.held_by):
            held = len(engine.held_by(c.id))
            seen = rfc3339(c.last_seen)
            out.append(WorkerOut(c.id, "simplequeue", c.host, None, sorted(c.topics), None, held, seen))
        machines: dict[str, MachineOut] = {}
        for one in out:
            m = machines.setdefault(one.host, MachineOut(0, 0, 0))
            m.workers += 1
            m.concurrency += one.concurrency or 0
            m.in_flight += one.in_flight
        return json_response(200, WorkersOut(len(out), machines, out))

    async def stats(self, request: Request) -> Response:
        """GET /stats: jobs per Vesper status, in total and per queue, and the workers."""
        ctx = self.ctx
        stats = ctx.engine.stats()
        queues = {name: counts(q.counts) for name, q in stats.queues.items()}
        total: dict[str, int] = {}
        for q in stats.queues.values():
            for label, n in q.counts.items():
                total[label] = total.get(label, 0) + n
        now = time.time()
        workers = len(ctx.dispatcher.workers) + len(
            self.claimers.active(now, ctx.quiet_after, ctx.engine.held_by)
        )
        return json_response(
            200, StatsOut(stats.total_jobs, counts(total), queues, workers, now - ctx.started_at)
        )
