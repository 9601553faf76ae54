"""arq (asyncio, Redis): enqueue with ``ArqRedis.enqueue_job`` from concurrent asyncio tasks
(enqueue-one: one task); drain with ``processes`` of arq's own CLI worker (``arq ... --burst``).

arq has no bulk enqueue API, so enqueue-batch is skipped; it has no synchronous API either and its
docs say nothing of enqueuing from threads, so enqueue-threads is skipped too (an event loop per
thread would be this harness's invention, not arq's way). Completion of a drain is arq's queue
sorted set reaching zero members: arq removes a job from it only when the job has finished.
"""

from __future__ import annotations

import os
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name

from perf.peers.base import (
    DEADLINE,
    PeerSpec,
    Skip,
    drain_processes,
    drain_with_workers,
    enqueue_concurrently,
    open_loop_async,
    payload,
    run_async,
    venv_bin,
)


async def _pool(url: str) -> ArqRedis:
    pool = await create_pool(RedisSettings.from_dsn(url))
    await pool.flushdb()
    return pool


def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` enqueue_job calls from ``inflight`` asyncio tasks sharing one ArqRedis pool."""

    async def main() -> dict[str, Any]:
        pool = await _pool(url)
        try:
            await pool.enqueue_job("noop", payload(0))
            result = await enqueue_concurrently(
                lambda i: pool.enqueue_job("noop", payload(i)), int(cfg["jobs"]), int(cfg["inflight"])
            )
        finally:
            await pool.aclose()
        result["notes"] = f"{cfg['inflight']} asyncio tasks on one ArqRedis pool (uvloop)"
        return result

    return run_async(main())


def enqueue_threads(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """arq has no synchronous client."""
    raise Skip(
        "arq's client is asyncio only (no sync API) and its docs do not cover enqueuing from threads;"
        " see enqueue-single (asyncio tasks) and enqueue-one"
    )


def enqueue_one(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` enqueue_job calls one at a time from one asyncio task."""

    async def main() -> dict[str, Any]:
        pool = await _pool(url)
        try:
            await pool.enqueue_job("noop", payload(0))
            return await enqueue_concurrently(
                lambda i: pool.enqueue_job("noop", payload(i)), int(cfg["jobs"]), 1
            )
        finally:
            await pool.aclose()

    result = run_async(main())
    result["notes"] = "one asyncio task awaiting each enqueue_job in turn, one ArqRedis pool (uvloop)"
    return result


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """arq has no bulk enqueue API."""
    raise Skip("no bulk enqueue API (arq enqueues one job per enqueue_job call)")


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs, then time ``processes`` ``arq ... --burst`` (max_jobs =
    ``concurrency``, 256 like Spitfire's drain worker) until arq's queue is empty (a burst worker
    exits only once arq's queue, which holds a job until it finished, is empty)."""
    jobs, concurrency = int(cfg["jobs"]), int(cfg.get("concurrency", 256))
    processes = drain_processes(cfg)

    async def fill() -> None:
        pool = await _pool(url)
        try:
            await enqueue_concurrently(lambda i: pool.enqueue_job("noop", payload(i)), jobs, 64)
        finally:
            await pool.aclose()

    run_async(fill())
    import redis

    client = redis.Redis.from_url(url)
    waiting = int(client.zcard(default_queue_name))
    os.environ["PERF_PEER_CONCURRENCY"] = str(concurrency)
    cmd = [venv_bin("arq"), "perf.peers.adapters.tasks_arq.WorkerSettings", "--burst"]
    try:
        deadline = float(cfg.get("deadline", DEADLINE))
        result = drain_with_workers(
            [cmd] * processes, url, lambda: int(client.zcard(default_queue_name)), waiting, deadline=deadline
        )
    finally:
        client.close()
    result["config"] = {"concurrency": concurrency, "processes": processes}
    result["notes"] = (
        f"{processes} `arq --burst` worker process(es), max_jobs={concurrency} each (arq's default is 10)"
    )
    return result


def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` enqueue_job calls per second, each in its own asyncio task, one ArqRedis pool."""

    async def main() -> dict[str, Any]:
        pool = await _pool(url)
        try:
            await pool.enqueue_job("noop", payload(0))
            return await open_loop_async(
                lambda i: pool.enqueue_job("noop", payload(i)), float(cfg["rate"]), float(cfg["seconds"])
            )
        finally:
            await pool.aclose()

    result = run_async(main())
    result["notes"] = "one asyncio task per job on one ArqRedis pool (uvloop)"
    return result


PEER = PeerSpec(
    name="arq",
    backend="redis",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-threads": enqueue_threads,
        "enqueue-one": enqueue_one,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    packages=("arq", "redis"),
)
