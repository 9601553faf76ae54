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
    Skip,
    drain_with_worker,
    enqueue_threads,
    open_loop_threads,
    payload,
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


def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` actor.send calls from ``inflight`` threads sharing the broker's connection pool."""
    noop = _actor(url)
    noop.send(payload(0))
    result = enqueue_threads(lambda i: noop.send(payload(i)), int(cfg["jobs"]), int(cfg["inflight"]))
    result["notes"] = f"{cfg['inflight']} threads in one process sharing the RedisBroker's connection pool"
    return result


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


def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` actor.send calls per second handed to a pool of ``inflight`` threads."""
    noop = _actor(url)
    noop.send(payload(0))
    threads = int(cfg.get("inflight", 64))
    result = open_loop_threads(
        lambda i: noop.send(payload(i)), float(cfg["rate"]), float(cfg["seconds"]), threads
    )
    result["notes"] = f"a scheduler thread hands each job to a pool of {threads} threads"
    return result


PEER = PeerSpec(
    name="dramatiq",
    backend="redis",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    packages=("dramatiq", "redis"),
)
