"""Serves a `Dashboard` with uvicorn's `Server` on the running event loop (no thread, no process).

The socket is bound here (a bind error is an `OSError` for the caller to report, never uvicorn's
``sys.exit``), uvicorn installs no signal handlers (the spitfire-server runtime owns SIGTERM and
SIGINT), and `HttpServer.stop` closes the listener, ends every event stream, and gives in-flight
requests ``grace`` seconds before their connections are closed.

Given a certificate and key (``--tls-cert``/``--tls-key``, the files QUIC uses) it serves HTTPS
(uvicorn's ``ssl_certfile``/``ssl_keyfile``; TLS 1.2 or later, Python's server defaults). QUIC's
self-signed certificate in ``<data-dir>/tls/`` never turns HTTPS on by itself: browsers and HTTP
clients would refuse it, and a plain-HTTP deployment must not change under its users.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import uvicorn

from .app import CURRENT_SEND
from .cluster import ClusterAdmin, follower_page, is_page, serve_members

log = logging.getLogger("spitfire.dashboard")


_JSON_HEADERS = [(b"content-type", b"application/json")]
_STARTING = b'{"error":{"code":"STARTING","message":"the server is recovering its data; retry shortly"}}'
_NOT_LEADER_READY = b'{"status":"unavailable","checks":{"cluster":"this cluster member does not lead"}}'
_NOT_READY = b'{"status":"unavailable","checks":{"recovery":"the data directory is being recovered"}}'


class Served(Protocol):
    """What `HttpServer` serves: the `Dashboard`, or an app of the same shape (the compatibility
    listener's): an ASGI ``app`` started and stopped with the server, ``attach`` once served,
    ``close`` before the server stops."""

    app: Any

    def attach(self) -> None: ...

    async def close(self) -> None: ...


class _Asgi:
    """The ASGI entry point: answers on its own until the dashboard is set (during recovery:
    /health 200, everything else 503), then hands requests to the blacksheep app, lending
    /api/events its ``send`` (to abort a stalled stream)."""

    def __init__(self, health: frozenset[str]) -> None:
        self.app: Any = None
        #: Paths answered 200 before recovery (the process is up).
        self.health = health
        #: A cluster member's ``GET /api/cluster``: (ASGI scope) -> (status, JSON body).
        self.cluster: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None = None
        #: A cluster member that does not lead: the 503 body of every API request (before `serve`).
        self.standby: Callable[[], dict[str, Any]] | None = None
        #: A cluster member's ``POST /api/cluster/members`` (dashboard/cluster.py), leading or not.
        self.cluster_admin: ClusterAdmin | None = None
        #: A cluster member that does not lead: the leader's HTTP URL (None while none is known),
        #: where a browser asking for a dashboard page is sent.
        self.leader_url: Callable[[], str | None] | None = None
        #: A cluster leader's lease check, awaited before each request once served: None to serve
        #: it, else the 503 body to answer (health paths are never held).
        self.gate: Callable[[], Awaitable[dict[str, Any] | None]] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.app
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # the blacksheep app is started and stopped by HttpServer
                await _lifespan(receive, send)
            return
        if self.cluster is not None and scope["path"] == "/api/cluster":
            status, body = self.cluster(scope)
            await _respond(send, status, json.dumps(body).encode())
        elif self.cluster_admin is not None and scope["path"] == "/api/cluster/members":
            await serve_members(scope, receive, send, self.cluster_admin)
        elif app is None and self.leader_url is not None and self.standby is not None and is_page(scope):
            await follower_page(scope, send, self.leader_url)
        elif app is None:
            await _before_recovery(scope, send, self.health, self.standby)
        elif self.gate is not None and scope["path"] not in self.health and (refused := await self.gate()):
            await _respond(send, 503, json.dumps(refused).encode())
        elif scope["path"] == "/api/events":
            token = CURRENT_SEND.set(send)
            try:
                await app(scope, receive, send)
            finally:
                CURRENT_SEND.reset(token)
        else:
            await app(scope, receive, send)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _before_recovery(
    scope: dict[str, Any],
    send: Any,
    health: frozenset[str],
    standby: Callable[[], dict[str, Any]] | None = None,
) -> None:
    if scope["path"] in health:
        status, body = 200, b'{"status":"ok","checks":{}}'
    elif scope["path"] == "/ready":
        status, body = 503, _NOT_LEADER_READY if standby is not None else _NOT_READY
    elif standby is not None:
        status, body = 503, json.dumps(standby()).encode()
    else:
        status, body = 503, _STARTING
    await _respond(send, status, body)


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    """uvicorn serving one dashboard on the current loop. It may start before the dashboard exists
    (while the server recovers: /health answers, /ready and the API answer 503) and be given the
    dashboard later with `serve`."""

    def __init__(
        self,
        dashboard: Served | None,
        host: str,
        port: int,
        *,
        grace: float = 5.0,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        health_paths: frozenset[str] = frozenset({"/health"}),
    ) -> None:
        """``health_paths`` answer 200 before the app is served (while the server recovers)."""
        if (certfile is None) != (keyfile is None):
            raise ValueError("HTTPS needs both a certificate and a key file (or neither, for HTTP)")
        self.dashboard: Served | None = None
        #: PEM certificate and key: HTTPS when given.
        self.certfile = certfile
        self.keyfile = keyfile
        self._pending = dashboard
        self._asgi = _Asgi(health_paths)
        self.host = host
        self.port = port
        self.grace = grace
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._main: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the TLS files (if any), bind, start uvicorn and the dashboard's ticker.

        :raises OSError: cannot bind, or the certificate or key cannot be read or do not match
            (`ssl.SSLError` is an OSError).
        """
        if not log.isEnabledFor(logging.DEBUG):  # uvicorn's start/stop chatter is not news
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(
            self._asgi,
            loop="none",
            http="httptools",
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, round(self.grace)),
            timeout_keep_alive=30,
            ssl_certfile=self.certfile,
            ssl_keyfile=self.keyfile,
        )
        try:  # before binding: a bad certificate must not leave a socket behind
            config.load()
        except OSError as exc:  # ssl.SSLError, FileNotFoundError, PermissionError
            if not self.tls:
                raise
            raise OSError(
                f"cannot use --tls-cert {self.certfile} and --tls-key {self.keyfile} for HTTPS: {exc} "
                "(give a readable PEM certificate and its matching, unencrypted private key)"
            ) from exc
        sock = self._sock = bind(self.host, self.port)
        self.port = int(sock.getsockname()[1])
        server = self._server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._main = asyncio.get_running_loop().create_task(server.main_loop())
        if self._pending is not None:
            await self.serve(self._pending)

    async def serve(self, dashboard: Served) -> None:
        """Start answering with ``dashboard`` (after recovery) and attach its job observer."""
        self._pending = None
        await dashboard.app.start()
        dashboard.attach()
        self.dashboard = dashboard
        self._asgi.app = dashboard.app

    async def stop(self) -> None:
        """Stop accepting, end the event streams, finish in-flight requests (up to ``grace``)."""
        server = self._server
        if server is None:
            return
        self._server = None
        if self.dashboard is not None:
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
        if self.dashboard is not None:
            await self.dashboard.app.stop()

    @property
    def cluster(self) -> Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None:
        """A cluster member's ``GET /api/cluster`` handler, answered before and after `serve`."""
        return self._asgi.cluster

    @cluster.setter
    def cluster(self, handler: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None) -> None:
        self._asgi.cluster = handler

    @property
    def standby(self) -> Callable[[], dict[str, Any]] | None:
        """Set on a cluster member that does not lead: the 503 body of API requests until `serve`."""
        return self._asgi.standby

    @standby.setter
    def standby(self, body: Callable[[], dict[str, Any]] | None) -> None:
        self._asgi.standby = body

    @property
    def cluster_admin(self) -> ClusterAdmin | None:
        """A cluster member's ``POST /api/cluster/members`` handler, answered before and after `serve`."""
        return self._asgi.cluster_admin

    @cluster_admin.setter
    def cluster_admin(self, admin: ClusterAdmin | None) -> None:
        self._asgi.cluster_admin = admin

    @property
    def leader_url(self) -> Callable[[], str | None] | None:
        """Set on a cluster member: the leader's HTTP URL, where a follower sends browsers."""
        return self._asgi.leader_url

    @leader_url.setter
    def leader_url(self, leader: Callable[[], str | None] | None) -> None:
        self._asgi.leader_url = leader

    @property
    def gate(self) -> Callable[[], Awaitable[dict[str, Any] | None]] | None:
        """Set on a cluster leader: awaited before each request (None: serve it; else the 503 body)."""
        return self._asgi.gate

    @gate.setter
    def gate(self, check: Callable[[], Awaitable[dict[str, Any] | None]] | None) -> None:
        self._asgi.gate = check

    @property
    def tls(self) -> bool:
        """True when serving HTTPS."""
        return self.certfile is not None

    @property
    def url(self) -> str:
        """``http://host:port``, or ``https://`` when serving TLS."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"
