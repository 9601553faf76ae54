"""Argument checks of the engine's operations: each raises `ValidationError` naming the field."""

from __future__ import annotations

import math

from spitfire.index.backoff import validate_backoff
from spitfire.index.job import MAX_PRIORITY, Backoff
from spitfire.wal.constants import QUEUE_NAME_RE, QUEUE_NAME_RULE

from .config import EngineConfig
from .errors import PayloadTooLarge, ValidationError

#: Longest idempotency key accepted.
MAX_KEY_LENGTH = 256
#: Most headers on one job.
MAX_HEADERS = 64
#: Longest failure error kept, in UTF-8 bytes; a longer one is cut (`truncate_text`), not refused:
#: a worker cannot usefully retry a failure report.
MAX_ERROR_BYTES = 64 * 1024
#: Longest failure traceback kept, in UTF-8 bytes; a longer one is cut (`truncate_text`).
MAX_TRACEBACK_BYTES = 1024 * 1024


def check_name(field: str, value: object, config: EngineConfig) -> str:
    """A queue, handler or worker name: a non-empty printable string of at most ``max_name``."""
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty string")
    if len(value) > config.max_name:
        raise ValidationError(field, f"must be at most {config.max_name} characters")
    if not value.isprintable():
        raise ValidationError(field, "must not contain control characters")
    return value


def check_queue(value: object, config: EngineConfig) -> str:
    """A queue name by the one rule of every surface (`QUEUE_NAME_RE`, stated in PROTOCOL.md and API.md):
    1 to 128 of A-Z a-z 0-9 _ . : -, starting with a letter, a digit or _. It is also a directory
    name; checking it here makes a bad name a ValidationError rather than a storage error."""
    name = check_name("queue", value, config)
    if not QUEUE_NAME_RE.match(name):
        raise ValidationError("queue", QUEUE_NAME_RULE)
    return name


def check_time(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(field, "must be a finite number of seconds")
    return float(value)


def check_bytes(field: str, value: object, limit: int) -> bytes:
    if not isinstance(value, bytes):
        raise ValidationError(field, "must be bytes (msgpack)")
    if len(value) > limit:
        raise PayloadTooLarge(len(value), limit, field)
    return value


def check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise ValidationError("priority", f"must be an integer from 0 to {MAX_PRIORITY}")
    return value


def check_max_attempts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ValidationError("max_attempts", "must be an integer from 1 to 1000000")
    return value


def check_timeout(field: str, value: object, config: EngineConfig) -> float:
    seconds = check_time(field, value)
    if not 0 < seconds <= config.max_timeout:
        raise ValidationError(field, f"must be above 0 and at most {config.max_timeout:g} seconds")
    return seconds


def check_backoff(value: object) -> Backoff | None:
    if value is None:
        return None
    if not isinstance(value, Backoff):
        raise ValidationError("backoff", "must be a Backoff")
    problem = validate_backoff(value)
    if problem is not None:
        raise ValidationError("backoff." + problem.split(":", 1)[0], problem.split(": ", 1)[1])
    return value


def check_key(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError("idempotency_key", "must be a non-empty string")
    if len(value) > MAX_KEY_LENGTH:
        raise ValidationError("idempotency_key", f"must be at most {MAX_KEY_LENGTH} characters")
    return value


def check_headers(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("headers", "must be a map of strings to strings")
    if len(value) > MAX_HEADERS:
        raise ValidationError("headers", f"must have at most {MAX_HEADERS} entries")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValidationError("headers", "must be a map of strings to strings")
    return value or None


def check_run_at(run_at: object, delay: object, now: float) -> float | None:
    """The absolute run time from ``run_at`` or ``delay`` (not both), or None to run now."""
    if run_at is not None and delay is not None:
        raise ValidationError("delay", "give run_at or delay, not both")
    if delay is not None:
        seconds = check_time("delay", delay)
        if seconds < 0:
            raise ValidationError("delay", "must not be negative")
        return now + seconds if seconds > 0 else None
    if run_at is not None:
        at = check_time("run_at", run_at)
        return at if at > now else None
    return None


def check_limit(value: object, field: str = "limit", most: int = 10_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValidationError(field, f"must be an integer from 1 to {most}")
    return value


def truncate_text(text: str, limit_bytes: int) -> str:
    """``text`` unchanged when its UTF-8 encoding is at most ``limit_bytes`` long; otherwise its
    first ``limit_bytes`` bytes, cut back to a character boundary, followed by the marker
    ``"\\n... [truncated: N bytes]"`` where N counts the bytes cut off. The result's encoding is at
    most ``limit_bytes`` plus the marker (under 40 bytes)."""
    if len(text) * 4 <= limit_bytes:  # no character is longer than 4 bytes: nothing to measure
        return text
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate is measured, not an error
    if len(data) <= limit_bytes:
        return text
    cut = limit_bytes
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # back off a continuation byte: a whole character
        cut -= 1
    kept = data[:cut].decode("utf-8", "surrogatepass")
    return f"{kept}\n... [truncated: {len(data) - cut} bytes]"


def check_error(value: object) -> str:
    """A failure's error message, truncated to `MAX_ERROR_BYTES`. :raises ValidationError: not a str."""
    if not isinstance(value, str):
        raise ValidationError("error", "must be a string")
    return truncate_text(value, MAX_ERROR_BYTES)


def check_traceback(value: object) -> str | None:
    """A failure's traceback (or None), truncated to `MAX_TRACEBACK_BYTES`.

    :raises ValidationError: neither None nor a str.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("traceback", "must be a string")
    return truncate_text(value, MAX_TRACEBACK_BYTES)
