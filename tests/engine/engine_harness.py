"""One engine test suite, two storage backends: MemoryStorage and the file engine (when it exists)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.wal.api import Storage
from spitfire.wal.memory import MemoryState

T0 = 1_700_000_000.0


def file_storage_factory(path: Path) -> Callable[[], Storage] | None:
    try:
        import spitfire.wal as wal
    except ImportError:
        return None
    file_storage = getattr(wal, "FileStorage", None)
    wal_config = getattr(wal, "WalConfig", None)
    if file_storage is None or wal_config is None:
        return None

    def make() -> Storage:
        storage: Storage = file_storage(path, wal_config(segment_size=1 << 20))
        return storage

    return make


class Harness:
    """Opens an engine over a backend and restarts it over the same data."""

    def __init__(self, make_storage: Callable[[], Storage], state: MemoryState | None) -> None:
        self.make_storage = make_storage
        #: The MemoryState (memory backend only), for disk-full simulation.
        self.state = state
        self.engine: Engine | None = None
        self.ready: list[str] = []

    async def open(self, now: float = T0, config: EngineConfig | None = None) -> Engine:
        self.config = config or EngineConfig()
        self.engine = Engine(self.make_storage(), self.config, on_ready=self.ready.append)
        await self.engine.open(now)
        return self.engine

    async def restart(self, now: float) -> Engine:
        assert self.engine is not None
        await self.engine.close()
        return await self.open(now, self.config)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None


def run(coro_fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (no pytest-asyncio here)."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            h = kwargs.get("harness")
            try:
                await coro_fn(*args, **kwargs)
            finally:
                if isinstance(h, Harness):
                    await h.close()

        asyncio.run(main())

    wrapper.__name__ = coro_fn.__name__
    wrapper.__doc__ = coro_fn.__doc__
    import inspect

    wrapper.__signature__ = inspect.signature(coro_fn)  # type: ignore[attr-defined]
    return wrapper
