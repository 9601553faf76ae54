"""What a job handler can raise to choose its job's fate, beyond returning (success) or raising
any other exception (a failed attempt, retried with backoff while attempts remain)."""

from __future__ import annotations

from datetime import timedelta

__all__ = ["Permanent", "RetryAfter"]


class Permanent(Exception):
    """Fail the job for good: it goes to ``dead`` at once, whatever attempts it has left.

    Raise it when retrying cannot help (invalid input, a record that no longer exists). The
    attempt is counted, ``message`` is recorded as the attempt's error (as "Permanent: message")
    with the traceback, and the job is not run again unless someone retries it by hand
    (`Client.retry`, the dashboard). ``raise Permanent("...") from exc`` keeps the cause in the
    recorded traceback.
    """

    def __init__(self, message: str = "") -> None:
        self.message = message
        super().__init__(message)


class RetryAfter(Exception):
    """Run the job again ``seconds`` from now, without counting this as a failed attempt.

    Raise it when the job cannot make progress yet (a rate limit, a resource not ready). Exactly:
    the worker reports the job with ``retry_at = now + seconds`` (its own clock); the server
    schedules the job for that time, records no error, and does not count the attempt, so
    ``attempts`` and the remaining attempts are unchanged and the job's backoff policy is not used.
    ``ctx.attempt`` is therefore the same on the next run. Because it is not counted, a job that
    raises RetryAfter every time runs forever: bound it yourself if that can happen.
    ``seconds`` may be a timedelta; it must not be negative (0 means as soon as possible).
    """

    def __init__(self, seconds: float | timedelta, message: str = "") -> None:
        value = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if not value >= 0:
            raise ValueError(f"RetryAfter needs seconds >= 0, got {seconds!r}")
        self.seconds = value
        self.message = message
        super().__init__(message or f"retry after {value:g} s")
