"""huey's RedisHuey and no-op task (Redis at $PERF_PEER_URL, huey's defaults), loaded by
``huey_consumer perf.peers.adapters.tasks_huey_redis.huey``."""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey

URL = os.environ.get("PERF_PEER_URL", "redis://127.0.0.1:6379/0")

huey = RedisHuey("bench", url=URL)


@huey.task()
def noop(payload: dict[str, Any]) -> None:
    """The benchmark job: does nothing."""
