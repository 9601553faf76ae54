"""simplequeue's HTTP API: topics with enqueue, claim, ack, nack, heartbeat and status; GET /healthz.

A topic is a Spitfire queue of the same name whose jobs have the topic as handler name, so a Spitfire
worker subscribed to the queue runs them as well. The ``id`` given at enqueue is kept as the job's
idempotency key within the topic: these routes answer it and accept it afterwards (a job enqueued
without one is known by its Spitfire id). A claim leases the job to ``simplequeue:<worker_id>`` for
the job's timeout; ``ack``, ``nack`` and ``heartbeat`` name no worker, so they act for the worker
that holds the job. A lease that ends without an ack, nack or heartbeat is reaped by the server's
maintenance: the job is pending again (its jobs get the most attempts there are, so reaping never
sends one to the dead letters).
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

import msgspec
from blacksheep import Request, Response
from blacksheep.server.routing import Router
from msgspec import Meta

from spitfire.dashboard.model import from_msgpack, to_msgpack
from spitfire.index.job import Job, JobState
from spitfire.server.building import JobOptions
from spitfire.server.errors import InvalidTransition, JobNotFound, QueueNotFound, ValidationError

from .common import Claimers, Context, Key, Wrap, json_response, named, rfc3339, route

#: simplequeue's topic rule (``[a-zA-Z0-9_-]+``) within the queue-name rule: at most 128
#: characters, and not starting with ``-``.
TOPIC_PATTERN = "[A-Za-z0-9_][A-Za-z0-9_-]{0,127}"
TOPIC_RE = re.compile(TOPIC_PATTERN)
TOPIC_RULE = "must match [a-zA-Z0-9_-]+: 1 to 128 of A-Z a-z 0-9 _ -, not starting with -"
#: Prefix of the engine's worker id of a simplequeue worker.
PREFIX = "simplequeue:"
#: Attempts of a simplequeue job: as many as there are, so that reaping a stale claim always
#: makes it pending again (simplequeue has no dead letters).
MAX_ATTEMPTS = 1_000_000

_PENDING = (JobState.SCHEDULED, JobState.ENQUEUED, JobState.RETRYING)
_CLAIMED = (JobState.RESERVED, JobState.RUNNING)
WorkerId = Annotated[str, Meta(min_length=1, max_length=180)]


class EnqueueIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /topics/{topic}/enqueue."""

    #: The job's id within the topic (its idempotency key); the Spitfire id when left out.
    id: Key | None = None
    payload: Any = None


class EnqueueOut(msgspec.Struct):
    id: str


class ClaimIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /topics/{topic}/claim."""

    worker_id: WorkerId


class ClaimOut(msgspec.Struct):
    id: str
    payload: Any
    #: Claims of the job so far, this one included (a nack takes its claim back).
    attempts: int


class JobIdIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /topics/{topic}/ack, nack and heartbeat."""

    job_id: Key


class OkOut(msgspec.Struct):
    status: Literal["ok"] = "ok"


class StatusOut(msgspec.Struct):
    """Body of GET /topics/{topic}/status."""

    #: Waiting to be claimed (enqueued, scheduled or retrying).
    pending: int
    #: Claimed and not finished (reserved or running).
    claimed: int
    #: Succeeded (as long as the server keeps finished jobs).
    completed: int
    #: Every job the topic holds, dead and cancelled ones included.
    total: int


class HealthzOut(msgspec.Struct):
    status: str
    time: str


def check_topic(request: Request) -> str:
    """The route's topic. :raises ValidationError: (field ``topic``) not a simplequeue topic name."""
    topic = route(request, "topic")
    if not TOPIC_RE.fullmatch(topic):
        raise ValidationError("topic", TOPIC_RULE)
    return topic


def ref(job: Job) -> str:
    """The id simplequeue clients know the job by."""
    return job.idempotency_key or job.id


class Simplequeue:
    """The simplequeue routes."""

    def __init__(self, ctx: Context, claimers: Claimers) -> None:
        self.ctx = ctx
        self.claimers = claimers

    def add(self, router: Router, wrap: Wrap) -> None:
        """Add the routes to ``router``, each handler wrapped by ``wrap``."""
        router.add_post("/topics/{topic}/enqueue", wrap(self.enqueue))
        router.add_post("/topics/{topic}/claim", wrap(self.claim))
        router.add_post("/topics/{topic}/ack", wrap(self.ack))
        router.add_post("/topics/{topic}/nack", wrap(self.nack))
        router.add_post("/topics/{topic}/heartbeat", wrap(self.heartbeat))
        router.add_get("/topics/{topic}/status", wrap(self.status))
        router.add_get("/healthz", wrap(self.healthz))

    async def enqueue(self, request: Request) -> Response:
        """201 {"id"} for a new job; 200 with the same id when the topic already has a job with it."""
        ctx = self.ctx
        try:
            topic = check_topic(request)
            body = await ctx.body(request, EnqueueIn)
            with named({"idempotency_key": "id"}):
                job, created = await ctx.engine.enqueue(
                    topic,
                    topic,
                    to_msgpack("payload", body.payload),
                    now=time.time(),
                    options=JobOptions(max_attempts=MAX_ATTEMPTS),
                    idempotency_key=body.id,
                )
        except Exception as exc:
            ctx.refused(exc)
            raise
        return json_response(201 if created else 200, EnqueueOut(ref(job)))

    async def claim(self, request: Request) -> Response:
        """200 with the next pending job, leased to the worker (running at once); 204 when none is."""
        ctx = self.ctx
        topic = check_topic(request)
        body = await ctx.body(request, ClaimIn)
        wid = PREFIX + body.worker_id
        now = time.time()
        jobs = ctx.engine.reserve([topic], wid, now, 1)  # :raises ValidationError: a bad worker_id
        self.claimers.seen(wid, request.client_ip or "unknown", now, topic)
        if not jobs:
            return Response(204, None, None)
        job = ctx.engine.start(jobs[0].id, wid, now)
        return json_response(200, ClaimOut(ref(job), from_msgpack(job.payload), job.attempts))

    def _held(self, request: Request, topic: str, job_ref: str, operation: str) -> tuple[Job, str]:
        """The job ``job_ref`` names in ``topic`` and the worker holding it.

        :raises JobNotFound: no such job in the topic. :raises InvalidTransition: it is not claimed,
            or a Spitfire SDK worker holds it (the adapter acts only for claims made through it).
        """
        engine = self.ctx.engine
        job = engine.find_by_key(topic, job_ref)
        if job is None:
            try:
                job = engine.get(job_ref)
            except JobNotFound:
                job = None
            if job is None or job.queue != topic:
                raise JobNotFound(job_ref)
        worker = engine.holder(job.id, operation)
        if not worker.startswith(PREFIX):
            raise InvalidTransition(
                job.id, f"held by the Spitfire worker {worker!r}, not claimed here", operation
            )
        self.claimers.seen(worker, request.client_ip or "unknown", time.time())
        return job, worker

    async def ack(self, request: Request) -> Response:
        """The claimed job is completed (succeeded)."""
        topic = check_topic(request)
        body = await self.ctx.body(request, JobIdIn)
        job, worker = self._held(request, topic, body.job_id, "ack")
        await self.ctx.engine.ack(job.id, worker, time.time())
        return json_response(200, OkOut())

    async def nack(self, request: Request) -> Response:
        """The claimed job is pending again at once; its claim is not counted."""
        topic = check_topic(request)
        body = await self.ctx.body(request, JobIdIn)
        job, worker = self._held(request, topic, body.job_id, "nack")
        await self.ctx.engine.release(job.id, worker, time.time())
        return json_response(200, OkOut())

    async def heartbeat(self, request: Request) -> Response:
        """The claim's lease runs for the job's timeout from now."""
        topic = check_topic(request)
        body = await self.ctx.body(request, JobIdIn)
        job, worker = self._held(request, topic, body.job_id, "heartbeat")
        self.ctx.engine.extend(job.id, worker, time.time())
        return json_response(200, OkOut())

    async def status(self, request: Request) -> Response:
        """Jobs of the topic by simplequeue's states (all 0 for a topic that holds no job yet)."""
        topic = check_topic(request)
        try:
            c = self.ctx.engine.queue_stats(topic).counts
        except QueueNotFound:
            return json_response(200, StatusOut(0, 0, 0, 0))
        pending = sum(c.get(s.label, 0) for s in _PENDING)
        claimed = sum(c.get(s.label, 0) for s in _CLAIMED)
        completed = c.get(JobState.SUCCEEDED.label, 0)
        return json_response(200, StatusOut(pending, claimed, completed, sum(c.values())))

    async def healthz(self, request: Request) -> Response:
        return json_response(200, HealthzOut("ok", rfc3339(time.time())))
