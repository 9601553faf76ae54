"""Exceptions the SDK raises: one per protocol error code, plus connection failures.

Every exception is a `SpitfireError`; catch that to handle them all. Each message says what went
wrong and what to do about it. ``code`` is the protocol's stable error code (or a client-side code
such as ``CONNECTION_LOST``).
"""

from __future__ import annotations

from typing import Any

from spitfire.protocol.messages import Error, ErrorCode

__all__ = [
    "BadRequest",
    "Busy",
    "Conflict",
    "ConnectionLost",
    "InvalidURL",
    "JobArgumentError",
    "JobNotFound",
    "NoSpace",
    "NotConnected",
    "NotFound",
    "ProtocolError",
    "QueueNotFound",
    "RequestTimeout",
    "ScheduleNotFound",
    "ServerError",
    "SpitfireError",
    "TLSVerificationFailed",
    "TooLarge",
    "Unauthorized",
    "UnsupportedVersion",
    "error_from_frame",
]


class SpitfireError(Exception):
    """Base of every exception the SDK raises on purpose."""

    #: The protocol's error code (ErrorCode), or a client-side code for connection problems.
    code: str = "ERROR"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(SpitfireError):
    """The server has no such job or queue."""

    code = ErrorCode.NOT_FOUND.value


class JobNotFound(NotFound, KeyError):
    """No job with this id: it never existed, or it was deleted or aged out of the history."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise show the message in quotes
        return self.message


class QueueNotFound(NotFound, KeyError):
    """No queue with this name: queues come into being with their first job."""

    def __init__(self, message: str, queue: str | None = None) -> None:
        self.queue = queue
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class ScheduleNotFound(NotFound, KeyError):
    """No schedule with this name: create it with ``client.schedules.add`` (or ``@app.cron``)."""

    def __init__(self, message: str, name: str | None = None) -> None:
        self.name = name
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class Busy(SpitfireError):
    """The server is applying backpressure: it holds too many jobs or bytes.

    Wait ``retry_after`` seconds (when the server gave a hint) and try again; workers draining the
    queues make room.
    """

    code = ErrorCode.BUSY.value

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Unauthorized(SpitfireError):
    """The server wants an auth token and none, or a wrong one, was given.

    Pass ``auth_token=`` or set ``SPITFIRE_AUTH_TOKEN`` to the server's ``--auth-token``.
    """

    code = ErrorCode.UNAUTHORIZED.value


class NoSpace(SpitfireError):
    """The server's disk is full: new jobs are refused while workers keep finishing jobs.

    Free disk space on the server (or let workers drain); enqueues succeed again afterwards.
    """

    code = ErrorCode.NO_SPACE.value


class BadRequest(SpitfireError, ValueError):
    """An argument was invalid; ``field`` names it when the server said which."""

    code = ErrorCode.BAD_REQUEST.value

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class TooLarge(BadRequest):
    """A payload, result or frame is over the server's limit (1 MiB payloads by default).

    Store big blobs elsewhere (object storage, a database) and pass a reference in the payload.
    """

    code = ErrorCode.TOO_LARGE.value


class Conflict(SpitfireError):
    """The job's state does not allow this (retrying a succeeded job, enqueueing into a paused
    queue), or the worker no longer holds the job's lease."""

    code = ErrorCode.CONFLICT.value


class UnsupportedVersion(SpitfireError):
    """The server does not speak this SDK's protocol version: upgrade the SDK or the server."""

    code = ErrorCode.UNSUPPORTED_VERSION.value


class NotLeader(SpitfireError):
    """The server is a cluster member that does not lead: nothing was done. ``leader`` is the
    leader's address (``host:port``), None while no leader is known; send the request there."""

    code = ErrorCode.NOT_LEADER.value

    def __init__(self, message: str, leader: str | None = None) -> None:
        self.leader = leader
        super().__init__(message)


class ServerError(SpitfireError):
    """A bug in the server (INTERNAL). The request may or may not have taken effect: check with
    `get` before repeating it, or repeat it with an idempotency key. Please report it."""

    code = ErrorCode.INTERNAL.value


class ConnectionLost(SpitfireError, ConnectionError):
    """The connection dropped while this request was in flight and the request was not safe to
    send again. It may or may not have taken effect: check with `get`, or use an idempotency key
    so that enqueues can be resent safely."""

    code = "CONNECTION_LOST"


class NotConnected(SpitfireError, ConnectionError):
    """No connection to the server could be made within the client's timeout.

    Check that spitfire-server is running and that the URL (``url=`` or ``SPITFIRE_URL``) is right.
    """

    code = "NOT_CONNECTED"


class TLSVerificationFailed(NotConnected):
    """The QUIC server's TLS certificate did not verify (self-signed, wrong host, unknown CA).

    Pass ``tls_ca=`` the server's CA file (for the server's own self-signed certificate, that is
    ``<data-dir>/tls/cert.pem``). Retrying does not help, so the client does not.
    """

    code = "TLS_VERIFICATION_FAILED"


class RequestTimeout(SpitfireError, TimeoutError):
    """The server did not answer within the client's ``timeout``. The request may still take
    effect; raise ``timeout=`` if the server is merely slow, or check it is healthy."""

    code = "TIMEOUT"


class ProtocolError(SpitfireError):
    """The server sent something this SDK cannot understand (a bug on one side, or not a
    spitfire-server at that address)."""

    code = "PROTOCOL_ERROR"


class InvalidURL(SpitfireError, ValueError):
    """A server URL that is not ``tcp://host:port`` or ``quic://host:port``."""

    code = "INVALID_URL"


class JobArgumentError(SpitfireError, TypeError):
    """Arguments given to ``fn.enqueue(...)`` do not fit the job function's signature or type hints.

    ``argument`` names the parameter at fault (None when the problem is not one parameter's).
    Raised before anything is sent, so nothing was enqueued.
    """

    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, argument: str | None = None) -> None:
        self.argument = argument
        super().__init__(message)


class JobError(SpitfireError):
    """`wait` found the job finished without a result: ``job`` is its final record (`Job`)."""

    code = "JOB_FAILED"

    def __init__(self, message: str, job: Any) -> None:
        self.job = job
        super().__init__(message)


class JobFailed(JobError):
    """The job waited on is ``dead``: it ran out of attempts or failed permanently. The message
    holds its last error; ``job.errors`` every attempt's error and traceback."""


class JobCancelled(JobError):
    """The job waited on was cancelled (it will not run again unless retried)."""

    code = "JOB_CANCELLED"


class WaitTimeout(SpitfireError, TimeoutError):
    """`wait` gave up before the job finished: ``job`` is the job as it was then (it goes on)."""

    code = "WAIT_TIMEOUT"

    def __init__(self, message: str, job: Any) -> None:
        self.job = job
        super().__init__(message)


_HINTS: dict[str, str] = {
    ErrorCode.UNAUTHORIZED: "pass auth_token=... or set SPITFIRE_AUTH_TOKEN to the server's --auth-token",
    ErrorCode.UNSUPPORTED_VERSION: "upgrade the spitfire package or the server so that they match",
    ErrorCode.NO_SPACE: "free disk space on the server; workers can still finish jobs meanwhile",
    ErrorCode.BUSY: "retry later; the server is shedding load until workers drain its queues",
    ErrorCode.TOO_LARGE: "keep payloads small: store big data elsewhere and enqueue a reference",
    ErrorCode.INTERNAL: "a server bug: check with get() before repeating; please report it",
}


def _with_hint(code: str, message: str) -> str:
    hint = _HINTS.get(code)
    if hint is None or hint in message:
        return message
    return f"{message} ({hint})"


def error_from_frame(
    error: Error, *, job_id: str | None = None, queue: str | None = None, schedule: str | None = None
) -> SpitfireError:
    """The exception for an ERROR frame. ``job_id``/``queue``/``schedule`` say what the request was
    about, so that NOT_FOUND becomes `JobNotFound`, `QueueNotFound` or `ScheduleNotFound`."""
    code, message = error.code, error.message
    text = _with_hint(code, message)
    if code == ErrorCode.NOT_FOUND:
        if schedule is not None:
            return ScheduleNotFound(text, schedule)
        if job_id is not None:
            return JobNotFound(text, job_id)
        if queue is not None:
            return QueueNotFound(text, queue)
        return NotFound(text)
    if code == ErrorCode.BUSY:
        return Busy(text, error.retry_after)
    if code in (ErrorCode.BAD_REQUEST, ErrorCode.TOO_LARGE):
        cls = TooLarge if code == ErrorCode.TOO_LARGE else BadRequest
        return cls(text, error.field)
    if code == ErrorCode.NOT_LEADER:
        return NotLeader(text, error.field)  # the leader's address travels in ``field``
    simple: dict[str, type[SpitfireError]] = {
        ErrorCode.UNAUTHORIZED: Unauthorized,
        ErrorCode.NO_SPACE: NoSpace,
        ErrorCode.CONFLICT: Conflict,
        ErrorCode.UNSUPPORTED_VERSION: UnsupportedVersion,
        ErrorCode.INTERNAL: ServerError,
    }
    cls_ = simple.get(code)
    if cls_ is None:
        # A code newer than this SDK: still an error the caller can catch and read.
        err = SpitfireError(f"{code}: {message}")
        err.code = code
        return err
    return cls_(text)
