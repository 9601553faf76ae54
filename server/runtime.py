"""Runs the server: opens the data directory, recovers, keeps the engine's timers, shuts down cleanly.

SIGTERM and SIGINT stop the server: stop accepting work, let in-flight writes finish, fsync every
log and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from spitfire.server.config import EngineConfig
from spitfire.server.datadir import DataDirLock
from spitfire.server.engine import Engine
from spitfire.server.options import ServerOptions
from spitfire.wal import FileStorage

log = logging.getLogger("spitfire.server")

#: Longest the maintenance timer sleeps, so that a clock step is noticed within this many seconds.
MAX_TICK_INTERVAL = 1.0


class Server:
    """One spitfire-server: storage, engine and maintenance, on the running event loop."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.storage: FileStorage | None = None
        self.engine: Engine | None = None
        self._stopping = asyncio.Event()
        self._lock = DataDirLock(options.data_dir)

    async def start(self) -> None:
        """Open the data directory and recover every queue."""
        started = time.perf_counter()
        self.options.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        self.storage = FileStorage(self.options.data_dir)
        self.engine = Engine(self.storage, EngineConfig(durability=self.options.durability))
        await self.engine.open(now=time.time())
        elapsed = time.perf_counter() - started
        stats = self.engine.stats()
        log.info(
            "recovered %d jobs in %d queues from %s in %.3f s",
            stats.total_jobs,
            len(stats.queues),
            self.options.data_dir,
            elapsed,
        )

    async def run_until_stopped(self) -> None:
        """Run maintenance until `stop` is called (by a signal or a test)."""
        assert self.engine is not None
        while not self._stopping.is_set():
            now = time.time()
            deadline = await self.engine.tick(now)
            delay = (
                MAX_TICK_INTERVAL if deadline is None else min(MAX_TICK_INTERVAL, max(0.0, deadline - now))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def stop(self) -> None:
        """Ask the server to shut down (idempotent)."""
        self._stopping.set()

    async def close(self) -> None:
        """Flush everything to disk and release files."""
        try:
            if self.engine is not None:
                await self.engine.close()
            elif self.storage is not None:
                await self.storage.close()
        finally:
            self._lock.release()


def describe(options: ServerOptions) -> str:
    """The start-up banner: what this build serves and where its data lives."""
    return (
        f"spitfire-server ready\n"
        f"  data dir:    {options.data_dir.resolve()}\n"
        f"  durability:  {options.durability.value} (default for new queues)\n"
        f"  binary:      tcp://{options.listen} and quic://{options.listen} "
        "(listeners arrive with the network server; not served by this build yet)\n"
        f"  http:        http://{options.http}/ (dashboard and API arrive later; not served yet)\n"
        "  stop with Ctrl-C or SIGTERM: logs are flushed and fsynced before exit"
    )


async def serve(options: ServerOptions) -> int:
    """Start, print the banner, run until SIGTERM/SIGINT, flush and return the exit code."""
    server = Server(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    try:
        await server.start()
        print(describe(options), flush=True)
        await server.run_until_stopped()
    finally:
        await server.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped cleanly")
    return 0
