"""Dramatiq (RedisBroker): ``actor.send`` from threads; drain with the ``dramatiq`` CLI, one worker
process with 8 threads (``-p 1 -t 8``, Dramatiq's default thread count).

Dramatiq has no bulk enqueue API (``group`` sends one message at a time), so enqueue-batch is
skipped. Completion of a drain is the broker's own queue size (``RedisBroker.do_qsize``: messages
not acknowledged yet; Dramatiq acknowledges a message after its actor ran).
"""

from __future__ import annotations

import os
from typing import Any

from perf.peers.base import (
    DEADLINE,
    QUEUE,
    URL_ENV,
    PeerSpec,
    Producer,
    Skip,
    drain_with_worker,
    enqueue_threads,
    payload,
    threaded_producers,
    venv_bin,
)

#: Worker threads of the drain's one process (Dramatiq's default is 8 threads per process).
THREADS = 8


def _actor(url: str) -> Any:
    """The no-op actor bound to a RedisBroker at ``url`` (flushed first)."""
    import redis

    redis.Redis.from_url(url).flushdb()
    os.environ[URL_ENV] = url
    from perf.peers.adapters import tasks_dramatiq

    return tasks_dramatiq.noop


def _producer(url: str, cfg: dict[str, Any]) -> Producer:
    """actor.send from ``inflight`` threads sharing the RedisBroker's connection pool."""
    noop = _actor(url)
    return (lambda i: noop.send(payload(i))), int(cfg.get("inflight", 64)), "sharing the RedisBroker's pool"


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Dramatiq has no bulk enqueue API."""
    raise Skip("no bulk enqueue API (a Dramatiq group enqueues one message at a time)")


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op messages, then time ``dramatiq MODULE -p 1 -t 8`` until the broker
    reports the queue empty."""
    jobs = int(cfg["jobs"])
    noop = _actor(url)
    enqueue_threads(lambda i: noop.send(payload(i)), jobs, 16)
    broker = noop.broker

    def remaining() -> int:
        return int(broker.do_qsize(QUEUE))

    cmd = [venv_bin("dramatiq"), "perf.peers.adapters.tasks_dramatiq", "-p", "1", "-t", str(THREADS)]
    result = drain_with_worker(
        cmd, url, remaining, remaining(), deadline=float(cfg.get("deadline", DEADLINE))
    )
    result["config"] = {"processes": 1, "threads": THREADS}
    result["notes"] = f"one `dramatiq -p 1 -t {THREADS}` worker (a supervisor plus one worker process)"
    return result


PEER = PeerSpec(
    name="dramatiq",
    backend="redis",
    workloads={**threaded_producers(_producer), "enqueue-batch": enqueue_batch, "drain": drain},
    packages=("dramatiq", "redis"),
)
