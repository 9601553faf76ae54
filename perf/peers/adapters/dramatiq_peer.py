"""Dramatiq (RedisBroker): ``actor.send`` from threads sharing the broker (its redis-py pool is
thread-safe; enqueue-threads and enqueue-one as every threaded peer, `threaded_producers`); drain
with the ``dramatiq`` CLI's own process option, ``processes`` worker processes of 8 threads each
(``-p N -t 8``; 8 is Dramatiq's default thread count, its CLI's default process count is the CPUs).

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
    drain_processes,
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
    """Enqueue ``jobs`` no-op messages, then time ``dramatiq MODULE -p PROCESSES -t 8`` until the
    broker reports the queue empty."""
    jobs, processes = int(cfg["jobs"]), drain_processes(cfg)
    noop = _actor(url)
    enqueue_threads(lambda i: noop.send(payload(i)), jobs, 16)
    broker = noop.broker

    def remaining() -> int:
        return int(broker.do_qsize(QUEUE))

    cmd = [
        venv_bin("dramatiq"), "perf.peers.adapters.tasks_dramatiq", "-p", str(processes), "-t", str(THREADS),
    ]  # fmt: skip
    result = drain_with_worker(
        cmd, url, remaining, remaining(), deadline=float(cfg.get("deadline", DEADLINE))
    )
    result["config"] = {"processes": processes, "threads": THREADS}
    result["notes"] = (
        f"one `dramatiq -p {processes} -t {THREADS}` command: a supervisor plus {processes} worker"
        f" process(es) of {THREADS} threads"
    )
    return result


PEER = PeerSpec(
    name="dramatiq",
    backend="redis",
    workloads={**threaded_producers(_producer), "enqueue-batch": enqueue_batch, "drain": drain},
    packages=("dramatiq", "redis"),
)
