"""Serves a `Dashboard` with uvicorn's `Server` on the running event loop (no thread, no process).

The socket is bound here (a bind error is an `OSError` for the caller to report, never uvicorn's
``sys.exit``), uvicorn installs no signal handlers (the spitfire-server runtime owns SIGTERM and
SIGINT), and `HttpServer.stop` closes the listener, ends every event stream, and gives in-flight
requests ``grace`` seconds before their connections are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import uvicorn

from .app import CURRENT_SEND, Dashboard

log = logging.getLogger("spitfire.dashboard")


class _Asgi:
    """The blacksheep app behind a thin ASGI wrapper that lends /api/events its ``send``."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.app = dashboard.app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/events":
            token = CURRENT_SEND.set(send)
            try:
                await self.app(scope, receive, send)
            finally:
                CURRENT_SEND.reset(token)
            return
        await self.app(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port). :raises OSError:"""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """uvicorn serving one dashboard on the current loop."""

    def __init__(self, dashboard: Dashboard, host: str, port: int, *, grace: float = 5.0) -> None:
        self.dashboard = dashboard
        self.host = host
        self.port = port
        self.grace = grace
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._main: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind, start uvicorn and the dashboard's ticker. :raises OSError: cannot bind."""
        if not log.isEnabledFor(logging.DEBUG):  # uvicorn's start/stop chatter is not news
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        sock = self._sock = bind(self.host, self.port)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            _Asgi(self.dashboard),
            loop="none",
            http="httptools",
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, round(self.grace)),
            timeout_keep_alive=30,
        )
        server = self._server = uvicorn.Server(config)
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self.dashboard.attach()
        self._main = asyncio.get_running_loop().create_task(server.main_loop())

    async def stop(self) -> None:
        """Stop accepting, end the event streams, finish in-flight requests (up to ``grace``)."""
        server = self._server
        if server is None:
            return
        self._server = None
        await self.dashboard.close()
        server.should_exit = True
        if self._main is not None:
            with contextlib.suppress(Exception):
                await self._main
        try:
            await server.shutdown(sockets=[self._sock] if self._sock is not None else None)
        except Exception:
            log.exception("HTTP shutdown failed")
        if self._sock is not None:
            self._sock.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
