"""The HTTP routes of job definitions (docs/job-definitions.md) and their JSON shapes.

Each route parses, calls one `Definitions` command of the engine, and renders; every rule (names,
options, schemas, limits, what an enqueue takes from a definition) lives in `server/definitions.py`.

    GET    /api/job-definitions          {"definitions": [...]} by name
    POST   /api/job-definitions          register (HTTP workers): {"definitions": [...]} -> 200
    GET    /api/job-definitions/{name}   one definition; 404
    DELETE /api/job-definitions/{name}   forget it -> 200 as it was; 404
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from blacksheep import Request, Response
from blacksheep.server.routing import Router
from msgspec import Meta

from spitfire.server.definitions import MAX_DEFINITIONS, DefinitionOptions, DefinitionSpec, JobDefinition

from . import model as mo
from .routes import EngineRoutes, Handler


class DefinitionIn(msgspec.Struct, forbid_unknown_fields=True):
    """One job's definition, as a worker registers it."""

    name: mo.Name
    queue: mo.Name | None = None
    priority: mo.Priority = 0
    max_attempts: mo.Attempts | None = None
    backoff: mo.BackoffIn | None = None
    timeout_ms: mo.PositiveMillis | None = None
    #: The JSON Schema (Draft 2020-12) of the job's payload.
    schema: dict[str, Any] | bool | None = None
    validate: bool = False


class RegisterIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/job-definitions."""

    definitions: Annotated[list[DefinitionIn], Meta(max_length=MAX_DEFINITIONS)]


class DefinitionOut(msgspec.Struct):
    """A job definition: the defaults of every enqueue of the job, and its arguments' schema."""

    name: str
    queue: str | None
    priority: int
    max_attempts: int | None
    backoff: mo.BackoffOut | None
    timeout_ms: int | None
    schema: Any
    validate: bool
    #: The client whose registration last changed it, and when.
    registered_by: str
    created_at: float
    updated_at: float


class DefinitionListOut(msgspec.Struct):
    definitions: list[DefinitionOut]


class RegisteredOut(msgspec.Struct):
    """Answer of POST /api/job-definitions: the definitions named, as held now, and which changed."""

    definitions: list[DefinitionOut]
    changed: list[str]


def spec_in(d: DefinitionIn) -> DefinitionSpec:
    """The engine's definition from a JSON one (the engine checks the rest, naming fields)."""
    timeout = None if d.timeout_ms is None else d.timeout_ms / 1000
    options = DefinitionOptions(d.priority, d.max_attempts, mo.backoff_in(d.backoff), timeout)
    schema = None if d.schema is None else msgspec.json.encode(d.schema).decode()
    return DefinitionSpec(d.name, d.queue, options, schema, d.validate)


def definition_out(d: JobDefinition) -> DefinitionOut:
    spec, o = d.spec, d.spec.options
    backoff, timeout_ms = mo.backoff_out(o.backoff), mo.millis(o.timeout)
    schema = None if spec.schema is None else msgspec.Raw(spec.schema.encode())
    return DefinitionOut(
        spec.name, spec.queue, o.priority, o.max_attempts, backoff, timeout_ms, schema, spec.validate,
        d.registered_by, d.created_at, d.updated_at,
    )  # fmt: skip


class DefinitionRoutes(EngineRoutes):
    """The job-definition routes over one engine; ``read`` decodes bodies, ``answer`` renders JSON."""

    def add(self, router: Router, wrap: Callable[[Handler], Handler]) -> None:
        """Register every route on ``router``, each through ``wrap`` (auth and error rendering)."""
        router.add_get("/api/job-definitions", wrap(self.list_all))
        router.add_post("/api/job-definitions", wrap(self.register))
        router.add_get("/api/job-definitions/{name}", wrap(self.get))
        router.add_delete("/api/job-definitions/{name}", wrap(self.delete))

    async def list_all(self, request: Request) -> Response:
        items = self.engine.definitions.all()
        return self._answer(200, DefinitionListOut([definition_out(d) for d in items]))

    async def register(self, request: Request) -> Response:
        body: RegisterIn = await self._read(request, RegisterIn)
        specs = [spec_in(d) for d in body.definitions]
        who = f"http {request.client_ip}"
        done = await self.engine.definitions.register(specs, who, time.time())
        out = RegisteredOut(
            [definition_out(d) for d, _ in done], [d.spec.name for d, changed in done if changed]
        )
        return self._answer(200, out)

    async def get(self, request: Request) -> Response:
        return self._answer(200, definition_out(self.engine.definitions.get(_name(request))))

    async def delete(self, request: Request) -> Response:
        d = await self.engine.definitions.delete(_name(request), time.time())
        return self._answer(200, definition_out(d))


def _name(request: Request) -> str:
    return str(request.route_values["name"])
