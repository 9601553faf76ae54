"""A cluster member's own HTTP answers, served on every member, leading or not (docs/ha.md):

- ``POST /api/cluster/members`` ``{"op": "add"|"remove", "id", "raft"}``: the body is read (at most
  `MAX_BODY` bytes) and decoded here, then handed to the member's `ClusterAdmin` (server/
  cluster_admin.py), which checks the token first and applies the change through the Raft log;
- a follower's page: a browser asking a member that does not lead for a dashboard page is sent to
  the leader's (307, same path), or shown a page that says no leader is elected yet and reloads.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

import msgspec

from .app import decode_body
from .errors import HttpError
from .spa import SERVER_PATHS, SERVER_PREFIXES

__all__ = ["MAX_BODY", "ClusterAdmin", "MemberChange", "follower_page", "is_page", "serve_members"]

#: Largest body ``POST /api/cluster/members`` reads (a change is a few dozen bytes).
MAX_BODY = 64 * 1024


class MemberChange(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/cluster/members``."""

    #: ``add`` or ``remove``.
    op: str
    #: The member's id.
    id: str
    #: ``host:port`` of its Raft port (needed to add; checked against the member's to remove).
    raft: str | None = None


class ClusterAdmin(Protocol):
    """What the route calls (server/cluster_admin.py implements it)."""

    def authorize(self, scope: dict[str, Any]) -> tuple[int, dict[str, Any]] | None: ...

    async def change(self, op: str, node: str, raft: str | None) -> tuple[int, dict[str, Any]]: ...


def _error(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


async def _send(
    send: Any,
    status: int,
    body: bytes,
    kind: bytes = b"application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *(extra or [])]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="spitfire"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(scope: dict[str, Any], receive: Any) -> bytes:
    """The body, refused with 413 past `MAX_BODY` (before reading it when its length is declared).

    :raises HttpError: 413 too large, 400 a Content-Length that is not a number.
    """
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HttpError(400, "BAD_REQUEST", "Content-Length is not a number")
        if int(declared) > MAX_BODY:
            raise HttpError(
                413, "TOO_LARGE", f"the body is {int(declared)} bytes; at most {MAX_BODY} are accepted"
            )
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "BAD_REQUEST", "the client went away before sending its body")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > MAX_BODY:
            raise HttpError(413, "TOO_LARGE", f"the body is over the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def serve_members(scope: dict[str, Any], receive: Any, send: Any, admin: ClusterAdmin) -> None:
    """``POST /api/cluster/members``: token, body, one change, its answer (any other method: 405)."""
    if scope.get("method") != "POST":
        body = _error(
            "METHOD_NOT_ALLOWED", "POST /api/cluster/members only (GET /api/cluster lists the members)"
        )
        await _send(send, 405, json.dumps(body).encode(), extra=[(b"allow", b"POST")])
        return
    denied = admin.authorize(scope)
    if denied is not None:
        await _send(send, denied[0], json.dumps(denied[1]).encode())
        return
    try:
        change = decode_body(await _read_body(scope, receive), MemberChange)
    except HttpError as exc:
        await _send(send, exc.status, json.dumps(_error(exc.code, exc.message, exc.field)).encode())
        return
    status, answer = await admin.change(change.op, change.id, change.raft)
    await _send(send, status, json.dumps(answer).encode())


def is_page(scope: dict[str, Any]) -> bool:
    """Whether a request is a browser's for a dashboard page (a GET or HEAD of a path that is not
    the server's: ``/api`` and below, ``/metrics``, ``/health``, ``/ready``, ``/openapi.json``)."""
    path = str(scope.get("path", ""))
    if scope.get("method") not in ("GET", "HEAD") or path in SERVER_PATHS:
        return False
    return not any(path == prefix or path.startswith(prefix + "/") for prefix in SERVER_PREFIXES)


_WAITING = """<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>Spitfire</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 2em auto">
<h1>Spitfire</h1>
<p>This cluster member does not lead, and no leader is elected yet (an election takes well under a
second; a cluster without a majority of its members up has none). This page reloads every 2 seconds
and then takes you to the leader's dashboard.</p>
</body></html>
"""


async def follower_page(scope: dict[str, Any], send: Any, leader: Callable[[], str | None]) -> None:
    """A page asked of a member that does not lead: 307 to the same path on the leader's HTTP URL,
    or, while no leader is known, a 503 page that reloads itself."""
    url = leader()
    if url is None:
        await _send(
            send, 503, _WAITING.encode(), b"text/html; charset=utf-8", [(b"cache-control", b"no-store")]
        )
        return
    raw = scope.get("raw_path") or quote(str(scope.get("path", "/"))).encode()
    target = url.rstrip("/").encode("latin-1") + bytes(raw)
    query = scope.get("query_string") or b""
    if query:
        target += b"?" + bytes(query)
    body = (
        f"<!doctype html><title>Spitfire</title><p>This cluster member does not lead: the dashboard is at "
        f'<a href="{html.escape(target.decode("latin-1"))}">the leader</a>.</p>'
    ).encode()
    await _send(
        send,
        307,
        body,
        b"text/html; charset=utf-8",
        [(b"location", target), (b"cache-control", b"no-store")],
    )
