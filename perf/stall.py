"""Measures how long the event loop stops answering: a ticker that records its largest gap."""

from __future__ import annotations

import asyncio
import time


class StallProbe:
    """Runs a task that wakes every ``interval`` seconds and remembers the longest gap between wakes."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.interval)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last - self.interval)
            last = now

    def __enter__(self) -> StallProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
