"""Precise send times for the asyncio open-loop load generators (Spitfire's and the peers').

An event loop's timers have millisecond resolution (uvloop and epoll round the wait to whole
milliseconds), so a generator that simply sleeps sends up to about a millisecond late, and that
lateness is counted as the server's latency (latency runs from each request's scheduled time).
Measured at 1,000 jobs/s against an `async` server: p50 0.29 ms but p90 1.0 ms from the timer alone.
The thread-based generators sleep with `time.sleep`, which is precise to tens of microseconds.
"""

from __future__ import annotations

import asyncio
import time

#: How early the loop's timer wakes us before a send time; the rest is waited out by yielding
#: loop turns (answers keep being read meanwhile). Covers the timer's rounding with room to spare.
TIMER_SLACK = 0.002


async def sleep_until(when: float) -> None:
    """Return once ``time.perf_counter()`` has reached ``when`` (to within one loop turn)."""
    delay = when - time.perf_counter() - TIMER_SLACK
    if delay > 0:
        await asyncio.sleep(delay)
    while time.perf_counter() < when:
        await asyncio.sleep(0)
