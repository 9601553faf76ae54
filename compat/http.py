"""The compatibility listener (``--compat-http HOST:PORT``): the HTTP APIs of Vesper, the
crash-resilient queue and simplequeue, on a port of their own so that no path collides with the
main HTTP API or the dashboard (docs/compat.md).

`CompatApp` is a blacksheep application over the running server's engine, served by the same
uvicorn wrapper as the main HTTP port (`spitfire.dashboard.HttpServer`, on the server's one event
loop): started before recovery (/health and /healthz answer 200, /ready and everything else 503),
given the app once the data directory is recovered. Every route parses its request, calls one engine
command and renders the answer in the API's own shape; validation, limits, errors and auth are the
main HTTP port's: a bad field is 422 naming it, a body over the limit 413, backpressure 429 with
Retry-After, a full disk 507, and with ``--auth-token`` every route but /health, /healthz and
/ready needs ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

import msgspec
from blacksheep import Application, Content, Request, Response
from blacksheep.server.routing import Router

from spitfire.dashboard.errors import HttpError, error_response, response_for
from spitfire.dashboard.model import Health
from spitfire.server.engine import Engine
from spitfire.server.service import Service

from .common import BODY_SLACK, Claimers, Context, Handler, json_response
from .crq import Crq
from .openapi import openapi_document
from .simplequeue import Simplequeue
from .vesper import Vesper

#: Routes answered without a token (as /health and /ready on the main HTTP port).
OPEN_PATHS = frozenset({"/health", "/healthz", "/ready"})
#: A simplequeue worker quiet for this many heartbeat intervals, holding nothing, is not counted.
QUIET_INTERVALS = 3


class CompatApp:
    """The three compatibility APIs of one running server (served by `spitfire.dashboard.HttpServer`)."""

    def __init__(
        self,
        engine: Engine,
        service: Service,
        *,
        auth_token: str | None = None,
        ready: Callable[[], dict[str, str]] = dict,
        metrics: Callable[[], bytes] = bytes,
        heartbeat_interval: float = 10.0,
    ) -> None:
        """``ready`` names the failing readiness checks (empty: ready), ``metrics`` renders the
        server's Prometheus text (the main HTTP port's)."""
        self.auth_token = auth_token.encode() if auth_token else None
        self.ready = ready
        self.metrics = metrics
        self.ctx = Context(
            engine,
            service,
            service.dispatcher,
            max_body=2 * engine.config.max_payload + BODY_SLACK,
            quiet_after=QUIET_INTERVALS * heartbeat_interval,
            started_at=time.time(),
        )
        self.claimers = Claimers()
        self._openapi = msgspec.json.encode(openapi_document())
        # A router of its own: the dashboard's Application uses the default one of the process.
        self.app = Application(router=Router(), show_error_details=False)
        self.app.router.fallback = self._wrap(self._not_found)
        r, w = self.app.router, self._wrap
        Vesper(self.ctx, self.claimers).add(r, w)
        Crq(self.ctx).add(r, w)
        Simplequeue(self.ctx, self.claimers).add(r, w)
        r.add_get("/health", w(self.health))
        r.add_get("/ready", w(self.readiness))
        r.add_get("/metrics", w(self.prometheus))
        r.add_get("/openapi.json", w(self.openapi))

    def attach(self) -> None:
        """Nothing to observe (the `spitfire.dashboard.HttpServer` interface)."""

    async def close(self) -> None:
        """Nothing to end (the `spitfire.dashboard.HttpServer` interface)."""

    def _wrap(self, handler: Handler) -> Handler:
        """Authenticate, run ``handler``, and turn any exception into a JSON error."""

        async def wrapped(request: Request) -> Response:
            try:
                self._authenticate(request)
                return await handler(request)
            except Exception as exc:
                return response_for(exc)

        return wrapped

    def _authenticate(self, request: Request) -> None:
        """Require ``Authorization: Bearer TOKEN`` (the main HTTP port's rule; no query token here).

        :raises HttpError: 401 when the token is missing, wrong, or not sent as a Bearer token.
        """
        token = self.auth_token
        if token is None or request.path in OPEN_PATHS:
            return
        header = request.get_first_header(b"authorization") or b""
        scheme, _, given = header.strip().partition(b" ")
        if header and scheme.lower() != b"bearer":
            raise HttpError(
                401, "UNAUTHORIZED", "send the token as Authorization: Bearer TOKEN (no other scheme)"
            )
        # compare_digest: the time taken does not depend on how much of the token matched.
        if not hmac.compare_digest(given.strip(), token):
            raise HttpError(401, "UNAUTHORIZED", "missing or wrong token: send Authorization: Bearer TOKEN")

    async def health(self, request: Request) -> Response:
        return json_response(200, Health("ok"))

    async def readiness(self, request: Request) -> Response:
        """200 once recovered with the log writable; 503 naming the failing checks otherwise."""
        failing = self.ready()
        return (
            json_response(503, Health("unavailable", failing))
            if failing
            else json_response(200, Health("ready"))
        )

    async def prometheus(self, request: Request) -> Response:
        return Response(200, None, Content(b"text/plain; version=0.0.4; charset=utf-8", self.metrics()))

    async def openapi(self, request: Request) -> Response:
        return Response(200, None, Content(b"application/json", self._openapi))

    async def _not_found(self, request: Request) -> Response:
        """404 for an unknown path; 405 with Allow for a known path and another method."""
        path = request.url.path
        routes = self.app.router.routes
        allowed = [
            method.decode()
            for method in (b"GET", b"POST")
            if any(route.match_by_path(path) for route in routes.get(method, ()))
        ]
        if allowed:
            response = error_response(
                405, "METHOD_NOT_ALLOWED", f"{request.method} {request.path}: use {', '.join(allowed)}"
            )
            response.add_header(b"Allow", ", ".join(allowed).encode())
            return response
        return error_response(404, "ROUTE_NOT_FOUND", f"no route {request.method} {request.path}")
