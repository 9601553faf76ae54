"""The procrastinate app the drain workload's worker loads:
``python -m procrastinate --app perf.peers.adapters.tasks_pg_procrastinate.app worker``.

One no-op task, ``noop``, on queue ``bench``. The worker's connector reads the DSN from
``PERF_PEER_URL`` (perf.peers.base.URL_ENV); the producer side swaps in its own connector (a pool
sized for its concurrency) with ``App.replace_connector``.
"""

from __future__ import annotations

import os
from typing import Any

import procrastinate

from perf.peers.base import QUEUE, URL_ENV

#: The task every benchmark job names.
TASK = "noop"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get(URL_ENV, "")))


@app.task(name=TASK, queue=QUEUE)
async def noop(**kwargs: Any) -> None:
    """Does nothing: the drain measures the queue, not the work."""
