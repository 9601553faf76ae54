"""What the dashboard's route groups share: handler and body-reader types, and `EngineRoutes`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from blacksheep import Request, Response

from spitfire.server.engine import Engine

Handler = Callable[[Request], Awaitable[Response]]
#: Reads and decodes a request's JSON body into the given struct (400/413/422 on a bad one).
ReadBody = Callable[[Request, type[Any]], Awaitable[Any]]
#: Renders a status and a body as the JSON response.
Answer = Callable[[int, Any], Response]


class EngineRoutes:
    """A group of routes over one engine: ``read`` decodes bodies, ``answer`` renders JSON."""

    def __init__(self, engine: Engine, read: ReadBody, answer: Answer) -> None:
        self.engine = engine
        self._read = read
        self._answer = answer
