"""huey with RedisHuey: enqueue by calling the task from threads sharing the RedisHuey (its
redis-py pool is thread-safe; enqueue-threads and enqueue-one as every threaded peer,
`threaded_producers`); drain with ``processes`` ``huey_consumer`` processes with 8 worker threads
each (``-w 8 -k thread``; several consumers on one Redis is huey's way to scale out).

huey has no bulk enqueue API (``Task.map`` enqueues one task at a time), so enqueue-batch is
skipped. Completion of a drain is huey's own ``pending_count()`` reaching 0; a task leaves the
queue when a consumer thread takes it, so up to 8 no-ops may still be running then.
"""

from __future__ import annotations

import os
from typing import Any

from perf.peers.base import (
    DEADLINE,
    URL_ENV,
    PeerSpec,
    Producer,
    Skip,
    drain_processes,
    drain_with_workers,
    enqueue_threads,
    payload,
    threaded_producers,
    venv_bin,
)

#: Consumer worker threads of the drain (huey's default is 1 worker; 8 threads as Dramatiq's).
WORKERS = 8


def _task(url: str) -> Any:
    """The no-op task bound to a RedisHuey at ``url`` (flushed first)."""
    import redis

    redis.Redis.from_url(url).flushdb()
    os.environ[URL_ENV] = url
    from perf.peers.adapters import tasks_huey_redis

    return tasks_huey_redis.noop


def _producer(url: str, cfg: dict[str, Any]) -> Producer:
    """Task calls from ``inflight`` threads sharing huey's Redis connection pool."""
    noop = _task(url)
    return (lambda i: noop(payload(i))), int(cfg.get("inflight", 64)), "sharing RedisHuey's pool"


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """huey has no bulk enqueue API."""
    raise Skip("no bulk enqueue API (huey's Task.map enqueues one task at a time)")


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op tasks, then time ``processes`` ``huey_consumer ... -w 8 -k thread``
    until huey's pending count is 0."""
    jobs, processes = int(cfg["jobs"]), drain_processes(cfg)
    noop = _task(url)
    enqueue_threads(lambda i: noop(payload(i)), jobs, 16)
    huey = noop.huey
    cmd = [
        venv_bin("huey_consumer"),
        "perf.peers.adapters.tasks_huey_redis.huey",
        "-w",
        str(WORKERS),
        "-k",
        "thread",
    ]
    waiting = int(huey.pending_count())
    deadline = float(cfg.get("deadline", DEADLINE))
    result = drain_with_workers(
        [cmd] * processes, url, lambda: int(huey.pending_count()), waiting, deadline=deadline
    )
    result["config"] = {"concurrency": WORKERS, "worker_type": "thread", "processes": processes}
    result["notes"] = f"{processes} `huey_consumer -w {WORKERS} -k thread` process(es)"
    return result


PEER = PeerSpec(
    name="huey (RedisHuey)",
    backend="redis",
    workloads={**threaded_producers(_producer), "enqueue-batch": enqueue_batch, "drain": drain},
    packages=("huey", "redis"),
)
