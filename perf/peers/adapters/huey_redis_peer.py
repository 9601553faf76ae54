"""huey with RedisHuey: enqueue by calling the task from threads; drain with ``huey_consumer``
with 8 worker threads (``-w 8 -k thread``).

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
    Skip,
    drain_with_worker,
    enqueue_threads,
    open_loop_threads,
    payload,
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


def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` task calls from ``inflight`` threads sharing huey's Redis connection pool."""
    noop = _task(url)
    noop(payload(0))
    result = enqueue_threads(lambda i: noop(payload(i)), int(cfg["jobs"]), int(cfg["inflight"]))
    result["notes"] = f"{cfg['inflight']} threads in one process sharing RedisHuey's connection pool"
    return result


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """huey has no bulk enqueue API."""
    raise Skip("no bulk enqueue API (huey's Task.map enqueues one task at a time)")


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op tasks, then time ``huey_consumer ... -w 8 -k thread`` until huey's
    pending count is 0."""
    jobs = int(cfg["jobs"])
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
    result = drain_with_worker(cmd, url, lambda: int(huey.pending_count()), waiting, deadline=deadline)
    result["config"] = {"workers": WORKERS, "worker_type": "thread"}
    result["notes"] = f"one `huey_consumer -w {WORKERS} -k thread` process"
    return result


def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` task calls per second handed to a pool of ``inflight`` threads."""
    noop = _task(url)
    noop(payload(0))
    threads = int(cfg.get("inflight", 64))
    result = open_loop_threads(lambda i: noop(payload(i)), float(cfg["rate"]), float(cfg["seconds"]), threads)
    result["notes"] = f"a scheduler thread hands each job to a pool of {threads} threads"
    return result


PEER = PeerSpec(
    name="huey (RedisHuey)",
    backend="redis",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    packages=("huey", "redis"),
)
