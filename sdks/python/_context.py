"""The job context: what a running handler can know about its job (`spitfire.context()`)."""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable

__all__ = ["JobContext", "context"]


class JobContext:
    """The running job, as its handler sees it.

    Get it with `spitfire.context()` anywhere in the handler (and in code it calls), or declare a
    parameter named ``ctx`` (or annotated ``JobContext``) and the worker passes it in.
    """

    __slots__ = (
        "_cancelled",
        "_reporter",
        "attempt",
        "created_at",
        "headers",
        "id",
        "max_attempts",
        "name",
        "priority",
        "queue",
        "started_at",
        "timeout",
    )

    def __init__(
        self,
        id: str,
        queue: str,
        name: str,
        attempt: int,
        max_attempts: int,
        headers: dict[str, str],
        timeout: float,
        created_at: float = 0.0,
        priority: int = 0,
    ) -> None:
        #: The job's id.
        self.id = id
        self.queue = queue
        #: The handler name the job was enqueued with.
        self.name = name
        #: This run's attempt number: 1 on the first run (RetryAfter does not advance it).
        self.attempt = attempt
        self.max_attempts = max_attempts
        #: The job's headers (trace context, tags); empty when it has none.
        self.headers = headers
        #: The job's lease in seconds (the worker's heartbeats keep extending it).
        self.timeout = timeout
        self.created_at = created_at
        self.priority = priority
        self.started_at = time.time()
        self._cancelled = False
        #: Where `progress` goes (set by the worker).
        self._reporter: Callable[[str, float | None, str | None], None] | None = None

    def progress(self, value: float | None = None, message: str | None = None) -> None:
        """Report how far the job is: ``value`` from 0.0 to 1.0 (or None), and/or a short
        ``message`` (at most 1000 characters), e.g. ``ctx.progress(0.4, "resized 4 of 10")``.

        Cheap to call often, from sync and async handlers alike: the worker sends at most 4 reports a
        second per job to the server (the latest wins). The server keeps the last one in memory
        while the job runs (``client.get(id).progress``, the HTTP API, ``event: progress``); it is
        not logged, so a server restart forgets it.

        :raises ValueError: ``value`` outside 0.0..1.0, or ``message`` too long.
        """
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"progress value must be a number from 0.0 to 1.0, not {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"progress value must be from 0.0 to 1.0, not {value!r}")
            value = float(value)
        if message is not None:
            if not isinstance(message, str):
                raise ValueError(f"progress message must be a string, not {type(message).__name__}")
            if len(message) > 1000:
                raise ValueError(f"progress message is {len(message)} characters; the limit is 1000")
        if self._reporter is not None:
            self._reporter(self.id, value, message)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled (or deleted) while running, or the worker is shutting
        down and handing the job back. A sync handler should check it in its loops and return
        early: whatever it returns or raises afterwards is discarded."""
        return self._cancelled

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now would make the job dead."""
        return self.attempt >= self.max_attempts

    def _cancel(self) -> None:
        self._cancelled = True

    def __repr__(self) -> str:
        return (
            f"JobContext(id={self.id!r}, queue={self.queue!r}, name={self.name!r}, "
            f"attempt={self.attempt}/{self.max_attempts}, cancelled={self._cancelled})"
        )


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("spitfire_job")


def context() -> JobContext:
    """The context of the job running in this task or thread.

    :raises RuntimeError: called outside a job run by a spitfire Worker.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "spitfire.context() was called outside a running job; it works only inside a job "
            "handler run by a spitfire Worker (or code that handler calls)"
        ) from None


def _set(ctx: JobContext) -> contextvars.Token[JobContext]:
    return _current.set(ctx)


def _reset(token: contextvars.Token[JobContext]) -> None:
    _current.reset(token)
