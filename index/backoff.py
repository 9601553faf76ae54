"""Retry delays from a `Backoff` policy. Pure: the random source is a parameter."""

from __future__ import annotations

from collections.abc import Callable

from .job import DEFAULT_BACKOFF, Backoff, BackoffKind

#: Most delays one DELAYS policy lists, and the longest one (30 days, in seconds).
MAX_DELAYS = 100
MAX_DELAY = 30 * 86400.0


def retry_delay(backoff: Backoff | None, attempt: int, random: Callable[[], float] | None = None) -> float:
    """Seconds to wait before retrying after failed attempt number ``attempt`` (1 for the first run).

    Deterministic unless the policy has ``jitter``; then ``random()`` (uniform in [0, 1)) draws the
    delay from [delay / 2, delay].
    """
    policy = backoff or DEFAULT_BACKOFF
    n = max(1, attempt)
    if policy.kind is BackoffKind.DELAYS and policy.delays:
        delay = policy.delays[min(n, len(policy.delays)) - 1]
        if policy.jitter and random is not None:
            delay = delay / 2 + (delay / 2) * random()
        return delay
    if policy.kind is BackoffKind.FIXED:
        delay = policy.base
    elif policy.kind is BackoffKind.LINEAR:
        delay = policy.base * n
    else:
        # Cap the exponent first so that huge attempt counts cannot overflow a float.
        exponent = min(n - 1, 1024)
        try:
            delay = policy.base * policy.factor**exponent
        except OverflowError:
            delay = policy.cap
    delay = min(policy.cap, delay)
    if policy.jitter and random is not None:
        delay = delay / 2 + (delay / 2) * random()
    return delay


def validate_backoff(backoff: Backoff) -> str | None:
    """Why ``backoff`` is unusable (a message naming the field), or None when it is fine."""
    for name in ("base", "cap"):
        value = getattr(backoff, name)
        if not (value >= 0 and value < float("inf")):
            return f"{name}: must be a finite number >= 0"
    if not (backoff.factor >= 1 and backoff.factor < float("inf")):
        return "factor: must be a finite number >= 1"
    delays = backoff.delays
    if backoff.kind is BackoffKind.DELAYS:
        if not delays or len(delays) > MAX_DELAYS:
            return f"delays: give 1 to {MAX_DELAYS} delays (seconds) for kind delays"
        if not all(d >= 0 and d <= MAX_DELAY for d in delays):
            return f"delays: each must be a number of seconds from 0 to {MAX_DELAY:.0f}"
    elif delays is not None:
        return "delays: only kind delays takes a list of delays"
    return None
