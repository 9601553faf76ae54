"""The crash-resilient queue's HTTP API: POST /createJob.

A job is acknowledged (201) once it is durable, like every Spitfire enqueue; ``idempotency_key``
is the job's idempotency key (the same key again answers 200 with the job it names), and
``max_retries`` retries mean ``max_retries + 1`` attempts. Under backpressure the answer is 429
with a Retry-After header (Spitfire's BUSY).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
from blacksheep import Request, Response
from blacksheep.server.routing import Router
from msgspec import Meta

from spitfire.dashboard.model import to_msgpack
from spitfire.index.job import JobState
from spitfire.server.building import JobOptions

from .common import DEFAULT_QUEUE, Context, Key, Name, Wrap, json_response, named

Status = Literal["pending", "processing", "completed", "failed"]
#: The crash-resilient queue's status of each Spitfire state.
STATUS: dict[JobState, Status] = {
    JobState.SCHEDULED: "pending",
    JobState.ENQUEUED: "pending",
    JobState.RETRYING: "pending",
    JobState.RESERVED: "processing",
    JobState.RUNNING: "processing",
    JobState.SUCCEEDED: "completed",
    JobState.DEAD: "failed",
    JobState.CANCELLED: "failed",
}


#: The engine's name of a field -> the name a client of this API sent it under.
FIELDS = {"name": "type", "max_attempts": "max_retries"}


class CreateJobIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /createJob."""

    #: The Spitfire handler name.
    type: Name
    payload: Any = None
    #: Retries after the first attempt (attempts = max_retries + 1); the server's default when absent.
    max_retries: Annotated[int, Meta(ge=0, le=999_999)] | None = None
    idempotency_key: Key | None = None
    #: The Spitfire queue (default ``default``).
    queue: Name | None = None


class CreateJobOut(msgspec.Struct):
    job_id: str
    status: Status


class Crq:
    """The crash-resilient queue's route."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def add(self, router: Router, wrap: Wrap) -> None:
        """Add the routes to ``router``, each handler wrapped by ``wrap``."""
        router.add_post("/createJob", wrap(self.create))

    async def create(self, request: Request) -> Response:
        """201 once the new job is durable; 200 with the job its idempotency key names."""
        ctx = self.ctx
        try:
            body = await ctx.body(request, CreateJobIn)
            attempts = None if body.max_retries is None else body.max_retries + 1
            with named(FIELDS):
                job, created = await ctx.engine.enqueue(
                    body.queue or DEFAULT_QUEUE,
                    body.type,
                    to_msgpack("payload", body.payload),
                    now=time.time(),
                    options=JobOptions(max_attempts=attempts),
                    idempotency_key=body.idempotency_key,
                )
        except Exception as exc:
            ctx.refused(exc)
            raise
        return json_response(201 if created else 200, CreateJobOut(job.id, STATUS[job.state]))
