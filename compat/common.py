"""What the three compatibility APIs share: the running server's objects, bodies, times, JSON answers.

Bodies are read and decoded as on the main HTTP port (`spitfire.dashboard.app.read_body` and
`decode_body`: 413 past the limit, 400 for bad JSON, 422 naming the field); errors are answered
``{"error": {"code", "message", "field"?}}`` with the main port's statuses
(`spitfire.dashboard.errors`), so a client of these APIs gets the same rules as one of ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec
from blacksheep import Content, Request, Response
from msgspec import Meta

from spitfire.dashboard.app import decode_body, read_body
from spitfire.dashboard.errors import HttpError
from spitfire.index.job import MAX_PRIORITY
from spitfire.protocol.messages import ErrorCode
from spitfire.server.dispatcher import Dispatcher
from spitfire.server.engine import Engine
from spitfire.server.errors import EngineError, ValidationError
from spitfire.server.service import Service

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
#: Wraps a route's handler: authentication and errors (`spitfire.compat.http.CompatApp`).
Wrap = Callable[[Handler], Handler]

#: Queue of jobs whose request names none (Vesper and crash-resilient queue).
DEFAULT_QUEUE = "default"
#: A queue or handler name (the engine checks the queue-name rule).
Name = Annotated[str, Meta(min_length=1, max_length=200)]
#: An idempotency key (the engine's limit).
Key = Annotated[str, Meta(min_length=1, max_length=256)]
Priority = Annotated[int, Meta(ge=0, le=MAX_PRIORITY)]
#: Bytes a body may have beyond twice the payload limit (the main HTTP port's rule).
BODY_SLACK = 65536

_JSON = b"application/json"
_encode = msgspec.json.encode


def json_response(status: int, value: Any) -> Response:
    """A JSON answer."""
    return Response(status, None, Content(_JSON, _encode(value)))


def rfc3339(at: float) -> str:
    """Epoch seconds as an RFC 3339 UTC time with microseconds, e.g. ``2024-01-15T10:30:00.250000Z``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class Context:
    """The running server's objects every route uses."""

    engine: Engine
    service: Service
    dispatcher: Dispatcher
    #: Largest request body, in bytes (twice the payload limit plus `BODY_SLACK`).
    max_body: int
    #: Seconds without a request after which a simplequeue worker that holds no job counts as gone.
    quiet_after: float
    #: When the server started serving (epoch seconds).
    started_at: float

    async def body(self, request: Request, kind: type[T]) -> T:
        """The request's JSON body as ``kind``. :raises HttpError: 413, 400 or 422."""
        return decode_body(await read_body(request, self.max_body), kind)

    def refused(self, exc: Exception) -> None:
        """Count an enqueue refused for lack of room (BUSY, TOO_LARGE, NO_SPACE) in /metrics, as the
        main HTTP port does."""
        if isinstance(exc, EngineError):
            self.service.refusals.count("http", exc.kind)
        elif isinstance(exc, HttpError) and exc.status == 413:
            self.service.refusals.count("http", ErrorCode.TOO_LARGE)


@contextlib.contextmanager
def named(fields: Mapping[str, str]) -> Iterator[None]:
    """Re-raise the engine's `ValidationError` about one of its fields under the API's name for it
    (Vesper's ``type`` is the engine's ``name``), so that a 422 names what the client sent."""
    try:
        yield
    except ValidationError as exc:
        name = fields.get(exc.field)
        if name is None:
            raise
        raise ValidationError(name, str(exc).partition(": ")[2]) from None


def route(request: Request, name: str) -> str:
    """A path parameter of the matched route."""
    return str(request.route_values[name])


#: Seconds after which a claimer that holds no job and made no request is forgotten.
FORGET_AFTER = 3600.0
#: Claimers remembered at most (the least recently seen go first).
MAX_CLAIMERS = 10_000


@dataclass(slots=True)
class Claimer:
    """A worker of the simplequeue API: who claimed, from where, which topics, when last heard of."""

    #: The engine's worker id (``simplequeue:<worker_id>``).
    id: str
    #: The client address of its last request.
    host: str
    first_seen: float
    last_seen: float
    topics: set[str] = field(default_factory=set)


class Claimers:
    """The simplequeue workers seen recently, bounded (for GET /workers and GET /stats)."""

    def __init__(self) -> None:
        self.claimers: dict[str, Claimer] = {}

    def seen(self, wid: str, host: str, now: float, topic: str | None = None) -> None:
        """Note a request of worker ``wid`` from ``host`` at ``now`` (claiming from ``topic``)."""
        c = self.claimers.pop(wid, None)  # re-inserted last: the dict is least recently seen first
        if c is None:
            c = Claimer(wid, host, now, now)
        c.host, c.last_seen = host, now
        if topic is not None and len(c.topics) < 1000:
            c.topics.add(topic)
        self.claimers[wid] = c
        if len(self.claimers) > MAX_CLAIMERS:
            del self.claimers[next(iter(self.claimers))]

    def active(self, now: float, quiet_after: float, held_by: Callable[[str], list[Any]]) -> list[Claimer]:
        """Claimers holding a job or heard of within ``quiet_after`` seconds; forgets the ones idle for
        `FORGET_AFTER` seconds that hold nothing."""
        out: list[Claimer] = []
        for wid, c in list(self.claimers.items()):
            holding = bool(held_by(wid))
            if holding or now - c.last_seen <= quiet_after:
                out.append(c)
            elif now - c.last_seen > FORGET_AFTER:
                del self.claimers[wid]
        return out
