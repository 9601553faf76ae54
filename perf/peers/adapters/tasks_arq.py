"""arq's worker side: the no-op job and the WorkerSettings that ``arq`` (its CLI) loads.

The Redis URL comes from $PERF_PEER_URL; ``max_jobs`` from $PERF_PEER_CONCURRENCY (arq's default,
10, when unset).
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

URL = os.environ.get("PERF_PEER_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """The benchmark job: does nothing."""


class WorkerSettings:
    """Read by ``arq perf.peers.adapters.tasks_arq.WorkerSettings``."""

    functions = [noop]
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = int(os.environ.get("PERF_PEER_CONCURRENCY", "10"))
