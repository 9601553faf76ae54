"""Celery's app and no-op task (Redis broker from $PERF_PEER_URL, no result backend: Celery's
default), loaded by ``celery -A perf.peers.adapters.tasks_celery worker``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

URL = os.environ.get("PERF_PEER_URL", "redis://127.0.0.1:6379/0")

app = Celery("perf_peers", broker=URL)
app.conf.broker_connection_retry_on_startup = True  # Celery 5's default, set to silence its warning


@app.task(name="noop")
def noop(payload: dict[str, Any]) -> None:
    """The benchmark job: does nothing."""
