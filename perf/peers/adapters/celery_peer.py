"""Celery (Redis broker, no result backend): ``apply_async`` from threads sharing the app (Celery's
producer pool, ``broker_pool_limit`` 10, hands each thread its own producer and connection;
enqueue-threads and enqueue-one as every threaded peer, `threaded_producers`); drain with
``processes`` ``celery -A ... worker`` processes (each its own node name) as a user runs one on
this machine: the prefork pool with one child per CPU (Celery's default concurrency), default
mingle/gossip/heartbeat and prefetch.

Celery has no bulk enqueue API (a group sends one message per task), so enqueue-batch is skipped.
Completion of a drain is the broker's queue list and unacked hash both empty (kombu's Redis
transport): with Celery's default early ack, at most ``concurrency`` jobs may still be running
then, a no-op's worth of time.
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


def _task(url: str) -> Any:
    """The no-op task bound to an app whose broker is ``url`` (flushed first)."""
    import redis

    redis.Redis.from_url(url).flushdb()
    os.environ[URL_ENV] = url
    from perf.peers.adapters import tasks_celery

    return tasks_celery.noop


def _threads(noop: Any, cfg: dict[str, Any]) -> int:
    """Publishing threads: ``inflight``, but no more than Celery's producer pool holds
    (``broker_pool_limit``, 10 by default): more threads only queue for a producer, and measured
    slower (2,000 jobs: 1,330/s with 64 threads, 1,930/s with 10)."""
    return min(int(cfg.get("inflight", 64)), int(noop.app.conf.broker_pool_limit or 1))


def _producer(url: str, cfg: dict[str, Any]) -> Producer:
    """apply_async from up to ``inflight`` threads sharing Celery's producer pool."""
    noop = _task(url)
    threads = _threads(noop, cfg)
    return (lambda i: noop.apply_async(args=(payload(i),))), threads, "sharing Celery's producer pool"


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Celery has no bulk enqueue API."""
    raise Skip("no bulk enqueue API (a Celery group publishes one message per task)")


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs, then time ``processes`` ``celery worker`` (prefork, one child
    per CPU, each its own node name) until the queue and the unacked hash are empty."""
    import redis

    jobs, processes = int(cfg["jobs"]), drain_processes(cfg)
    noop = _task(url)
    enqueue_threads(lambda i: noop.apply_async(args=(payload(i),)), jobs, 16)
    client = redis.Redis.from_url(url)
    concurrency = os.cpu_count() or 1

    def remaining() -> int:
        with client.pipeline(transaction=False) as pipe:
            queued, unacked = pipe.llen("celery").hlen("unacked").execute()
        return int(queued) + int(unacked)

    cmds = [
        [
            venv_bin("celery"), "-A", "perf.peers.adapters.tasks_celery", "worker", f"--hostname=bench{k}@%h",
            "--pool=prefork", f"--concurrency={concurrency}", "--loglevel=WARNING",
        ]
        for k in range(processes)
    ]  # fmt: skip
    waiting = remaining()
    try:
        result = drain_with_workers(
            cmds, url, remaining, waiting, deadline=float(cfg.get("deadline", DEADLINE))
        )
    finally:
        client.close()
    result["config"] = {"pool": "prefork", "concurrency": concurrency, "processes": processes}
    result["notes"] = (
        f"{processes} `celery worker --pool=prefork --concurrency={concurrency}` (Celery's default on this"
        " machine: 1 main + 1 child per CPU, each)"
    )
    return result


PEER = PeerSpec(
    name="celery",
    backend="redis",
    workloads={**threaded_producers(_producer), "enqueue-batch": enqueue_batch, "drain": drain},
    packages=("celery", "kombu", "redis"),
)
