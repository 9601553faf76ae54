"""The open-loop load generator shared by Spitfire's and the peers' asyncio workloads: a fixed
send schedule, latency from each request's scheduled time (no coordinated omission), an HDR
histogram read as p50/p90/p99/p999/max. Imports nothing of Spitfire (it runs in the peers' venv).

Send times are precise:
An event loop's timers have millisecond resolution (uvloop and epoll round the wait to whole
milliseconds), so a generator that simply sleeps sends up to about a millisecond late, and that
lateness is counted as the server's latency (latency runs from each request's scheduled time).
Measured at 1,000 jobs/s against an `async` server: p50 0.29 ms but p90 1.0 ms from the timer alone.
The thread-based generators sleep with `time.sleep`, which is precise to tens of microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

#: Highest latency the histograms record, in microseconds (60 s).
HIST_MAX_US = 60_000_000
#: Seconds the answers to an open loop's requests may take after the last was sent.
ANSWER_DEADLINE = 300.0

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


def open_loop_result(hist: Any, rate: float, elapsed: float) -> dict[str, Any]:
    """An open loop's figures from its `hdrh` histogram of microseconds."""

    def ms(p: float) -> float:
        return float(hist.get_value_at_percentile(p)) / 1e3

    return {
        "offered_per_s": rate,
        "achieved_per_s": hist.get_total_count() / elapsed,
        "jobs": hist.get_total_count(),
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
        "max_ms": hist.get_max_value() / 1e3,
    }


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while the block runs (an open loop: bounded in time).

    A load generator's own collections stall its loop (a full one took 9 ms at 20,000/s, measured
    with gc.callbacks), and every request scheduled during the stall counts it as latency: at
    20,000/s a 9 ms pause alone is 0.09% of the requests, the whole p999. The stall is the
    generator's, not the system's under test; every system's open loop gets the same treatment.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def open_loop_async(
    send: Callable[[int], Awaitable[Any]], rate: float, seconds: float
) -> dict[str, Any]:
    """Offer ``rate`` calls of ``await send(i)`` per second for ``seconds`` on a fixed schedule,
    each in its own task; latency counts from each call's scheduled time."""
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

    total = int(rate * seconds)
    hist = HdrHistogram(1, HIST_MAX_US, 3)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        await send(i)
        hist.record_value(max(1, int((time.perf_counter() - scheduled) * 1e6)))

    with collector_paused():
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate
            await sleep_until(scheduled)
            task = loop.create_task(one(i, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.wait_for(asyncio.gather(*pending), timeout=ANSWER_DEADLINE)
        return open_loop_result(hist, rate, time.perf_counter() - start)
