"""The maintenance timer: runs `Engine.tick` when the engine next has work, and no later.

The engine returns its next deadline from each tick. Requests create earlier deadlines between
ticks (a delayed job, a retry backoff, a RetryAfter, a new lease): they call `note`, which wakes
the timer at once when the new deadline comes before the one it sleeps towards. So promotions and
lease expiries happen on time, not up to a polling interval late.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from .engine import Engine

log = logging.getLogger("spitfire.server.maintenance")

#: Longest the timer sleeps, so that a wall-clock step is noticed within this many seconds.
MAX_TICK_INTERVAL = 1.0


class Maintenance:
    """Keeps the engine's timers. ``clock`` gives epoch seconds (the engine's time base)."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float] = time.time,
        after_tick: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._after_tick = after_tick
        #: The time the timer sleeps towards (-inf while a tick runs: notes are only collected).
        self._planned = -math.inf
        #: The earliest deadline noted since the current tick began.
        self._noted = math.inf
        self._wake = asyncio.Event()
        self._stopping = False

    def note(self, deadline: float) -> None:
        """Something will be due at ``deadline`` (epoch seconds): tick by then."""
        if deadline < self._noted:
            self._noted = deadline
            if deadline < self._planned:
                self._wake.set()

    def stop(self) -> None:
        """End `run` after the current tick."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Tick until `stop`; a failing tick is logged and retried after a pause."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._planned = -math.inf
            self._noted = math.inf
            self._wake.clear()
            now = self._clock()
            try:
                deadline = await self.engine.tick(now)
            except Exception:
                log.exception("maintenance tick failed; retrying in %.0f s", MAX_TICK_INTERVAL)
                deadline = None
            if self._after_tick is not None:
                self._after_tick()
            nxt = min(self._noted, now + MAX_TICK_INTERVAL, math.inf if deadline is None else deadline)
            self._planned = nxt
            delay = nxt - self._clock()
            if delay <= 0 or self._stopping:
                await asyncio.sleep(0)  # let the loop breathe between back-to-back ticks
                continue
            handle = loop.call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                handle.cancel()
