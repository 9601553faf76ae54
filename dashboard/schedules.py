"""The HTTP routes of recurring schedules (docs/schedules.md) and their JSON shapes.

Each route parses, calls one `Schedules` command of the engine, and renders; every rule (names,
cron expressions, timezones, conflicts, misfires) lives in `server/schedules.py`.

    POST   /api/schedules                 create -> 201, or 200 when an identical one exists; 409 CONFLICT
    GET    /api/schedules                 {"schedules": [...]}
    GET|PUT|DELETE /api/schedules/{name}  PUT creates (201) or replaces (200)
    POST   /api/schedules/{name}/pause|resume   -> 200 the schedule
    POST   /api/schedules/{name}/trigger        -> 201 the job enqueued now
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from blacksheep import Request, Response
from blacksheep.server.routing import Router
from msgspec import Meta

from spitfire.server.engine import Engine
from spitfire.server.schedules import EMPTY_PAYLOAD, Schedule, ScheduleOptions, ScheduleSpec

from . import model as mo
from .errors import HttpError
from .routes import EngineRoutes, Handler


class ScheduleOptionsIn(msgspec.Struct, forbid_unknown_fields=True):
    """The options of each tick's job, as an enqueue takes them (no delay)."""

    priority: mo.Priority = 0
    max_attempts: mo.Attempts | None = None
    backoff: mo.BackoffIn | None = None
    timeout_ms: mo.PositiveMillis | None = None
    headers: dict[str, str] | None = None


class ScheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/schedules and PUT /api/schedules/{name} (where ``name`` may be left out)."""

    cron: Annotated[str, Meta(min_length=1, max_length=1000)]
    queue: mo.Name
    job: mo.Name
    name: mo.Name | None = None
    timezone: Annotated[str, Meta(min_length=1, max_length=100)] = "UTC"
    payload: Any = None
    options: ScheduleOptionsIn | None = None
    misfire: str = "skip"


class ScheduleOptionsOut(msgspec.Struct):
    priority: int
    max_attempts: int | None
    backoff: mo.BackoffOut | None
    timeout_ms: int | None
    headers: dict[str, str] | None


class ScheduleOut(msgspec.Struct):
    """A schedule: its definition, whether it is paused, and where its series stands."""

    name: str
    cron: str
    timezone: str
    queue: str
    job: str
    payload: Any
    options: ScheduleOptionsOut
    misfire: str
    paused: bool
    created_at: float
    updated_at: float
    next_run_at: float | None
    last_run_at: float | None
    last_job_id: str | None
    #: The state of the last job it enqueued (null once that job is gone).
    last_job_state: str | None


class ScheduleListOut(msgspec.Struct):
    schedules: list[ScheduleOut]


def spec_in(name: str, body: ScheduleIn) -> ScheduleSpec:
    """The engine's definition from a JSON body (the engine checks the rest, naming fields)."""
    o = body.options or ScheduleOptionsIn()
    options = ScheduleOptions(
        o.priority,
        o.max_attempts,
        mo.backoff_in(o.backoff),
        None if o.timeout_ms is None else o.timeout_ms / 1000,
        o.headers,
    )
    payload = EMPTY_PAYLOAD if body.payload is None else mo.to_msgpack("payload", body.payload)
    return ScheduleSpec(name, body.cron, body.queue, body.job, body.timezone, payload, options, body.misfire)


def schedule_out(engine: Engine, s: Schedule, now: float) -> ScheduleOut:
    spec, o = s.spec, s.spec.options
    backoff, timeout_ms = mo.backoff_out(o.backoff), mo.millis(o.timeout)
    last = engine.table.get(s.last_job_id) if s.last_job_id is not None else None
    return ScheduleOut(
        spec.name, spec.cron, spec.timezone, spec.queue, spec.job, mo.from_msgpack(spec.payload),
        ScheduleOptionsOut(o.priority, o.max_attempts, backoff, timeout_ms, o.headers), spec.misfire,
        s.paused, s.created_at, s.updated_at, engine.schedules.next_run_at(s, now), s.last_run_at,
        s.last_job_id, None if last is None else last.state.label,
    )  # fmt: skip


class ScheduleRoutes(EngineRoutes):
    """The schedule routes over one engine; ``read`` decodes bodies, ``answer`` renders JSON."""

    def add(self, router: Router, wrap: Callable[[Handler], Handler]) -> None:
        """Register every route on ``router``, each through ``wrap`` (auth and error rendering)."""
        router.add_get("/api/schedules", wrap(self.list_all))
        router.add_post("/api/schedules", wrap(self.create))
        router.add_post("/api/schedules/{name}/pause", wrap(self.pause))
        router.add_post("/api/schedules/{name}/resume", wrap(self.resume))
        router.add_post("/api/schedules/{name}/trigger", wrap(self.trigger))
        router.add_get("/api/schedules/{name}", wrap(self.get))
        router.add_put("/api/schedules/{name}", wrap(self.replace))
        router.add_delete("/api/schedules/{name}", wrap(self.delete))

    def _out(self, s: Schedule, now: float) -> ScheduleOut:
        return schedule_out(self.engine, s, now)

    async def list_all(self, request: Request) -> Response:
        now = time.time()
        return self._answer(200, ScheduleListOut([self._out(s, now) for s in self.engine.schedules.all()]))

    async def create(self, request: Request) -> Response:
        body: ScheduleIn = await self._read(request, ScheduleIn)
        if body.name is None:
            raise HttpError(422, "INVALID_ARGUMENT", "name: give the schedule a name", "name")
        now = time.time()
        s, created = await self.engine.schedules.put(spec_in(body.name, body), now, replace=False)
        return self._answer(201 if created else 200, self._out(s, now))

    async def replace(self, request: Request) -> Response:
        name = _name(request)
        body: ScheduleIn = await self._read(request, ScheduleIn)
        if body.name is not None and body.name != name:
            raise HttpError(
                422, "INVALID_ARGUMENT", f"name: the body names {body.name!r}, the path {name!r}", "name"
            )
        now = time.time()
        s, created = await self.engine.schedules.put(spec_in(name, body), now, replace=True)
        return self._answer(201 if created else 200, self._out(s, now))

    async def get(self, request: Request) -> Response:
        return self._answer(200, self._out(self.engine.schedules.get(_name(request)), time.time()))

    async def delete(self, request: Request) -> Response:
        now = time.time()
        return self._answer(200, self._out(await self.engine.schedules.delete(_name(request), now), now))

    async def pause(self, request: Request) -> Response:
        now = time.time()
        return self._answer(200, self._out(await self.engine.schedules.pause(_name(request), now), now))

    async def resume(self, request: Request) -> Response:
        now = time.time()
        return self._answer(200, self._out(await self.engine.schedules.resume(_name(request), now), now))

    async def trigger(self, request: Request) -> Response:
        job = await self.engine.schedules.trigger(_name(request), time.time())
        return self._answer(201, mo.job_out(job))


def _name(request: Request) -> str:
    return str(request.route_values["name"])
