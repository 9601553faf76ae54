"""HTTP errors: every failure is answered as ``{"error": {"code", "message"[, "field"]}}``.

Engine errors keep their own codes (``spitfire.server.errors``: NOT_FOUND, INVALID_ARGUMENT,
INVALID_STATE, ...) and get the status API.md gives: 422 for a bad field, 413 for
a payload over the limit, 404, 409 for an impossible transition or a lost lease, 429 with
Retry-After under backpressure, 507 when the disk is full. Anything unexpected is a 500 with the
traceback in the server log.
"""

from __future__ import annotations

import logging
import math

import msgspec
from blacksheep import Content, Response

from spitfire.protocol.messages import ErrorCode
from spitfire.server.errors import EngineError, Overloaded

from .model import ErrorBody, ErrorOut

log = logging.getLogger("spitfire.dashboard")

_JSON = b"application/json"
_encode = msgspec.json.encode


class HttpError(Exception):
    """An error answered with ``status`` and ``code`` (raised by the HTTP layer itself)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    retry_after: float | None = None,
) -> Response:
    """The JSON error answer (with Retry-After when ``retry_after`` is given)."""
    body = _encode(ErrorOut(ErrorBody(code, message, field, retry_after)))
    headers: list[tuple[bytes, bytes]] = []
    if retry_after is not None:
        headers.append((b"Retry-After", str(max(1, math.ceil(retry_after))).encode()))
    if status == 401:
        headers.append((b"WWW-Authenticate", b'Bearer realm="spitfire"'))
    return Response(status, headers, Content(_JSON, body))


#: The HTTP status of each protocol error code (API.md).
STATUS = {
    ErrorCode.BAD_REQUEST: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.BUSY: 429,
    ErrorCode.NO_SPACE: 507,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNSUPPORTED_VERSION: 400,
    ErrorCode.INTERNAL: 500,
}


#: Engine error codes whose status is finer than their protocol code's: a failed storage is the
#: server's trouble, not a bug in the request (503: retry once the server has restarted).
CODE_STATUS = {"STORAGE_FAILED": 503}


def status_of(exc: EngineError) -> int:
    """The HTTP status of an engine error."""
    return CODE_STATUS.get(exc.code) or STATUS[exc.kind]


def response_for(exc: BaseException) -> Response:
    """The answer to a request that raised ``exc``."""
    if isinstance(exc, HttpError):
        return error_response(exc.status, exc.code, exc.message, exc.field)
    if isinstance(exc, EngineError):
        field = getattr(exc, "field", None)
        retry = exc.retry_after if isinstance(exc, Overloaded) else None
        return error_response(status_of(exc), exc.code, str(exc), field, retry)
    log.error("HTTP request failed", exc_info=exc)
    return error_response(500, "INTERNAL", f"internal error ({type(exc).__name__}); see the server log")
