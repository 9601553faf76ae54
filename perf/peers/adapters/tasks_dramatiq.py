"""Dramatiq's broker and no-op actor (RedisBroker at $PERF_PEER_URL, Dramatiq's default
middleware), loaded by ``dramatiq perf.peers.adapters.tasks_dramatiq``."""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("PERF_PEER_URL", "redis://127.0.0.1:6379/0")

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop(payload: dict[str, Any]) -> None:
    """The benchmark job: does nothing."""
