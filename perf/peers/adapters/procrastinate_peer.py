"""procrastinate (https://github.com/procrastinate-org/procrastinate) on PostgreSQL: the
comparison's workloads.

Runs in the peers' venv. The service URL is a ``postgresql://`` DSN (`perf.peers.pg_service`).
Every workload starts from an empty queue: it applies procrastinate's schema if missing and
truncates its jobs (and events) otherwise.

- ``enqueue-single``: ``task.defer_async(**payload)`` (procrastinate's ``procrastinate_defer_jobs``
  function, one call per job), ``inflight`` asyncio tasks over a psycopg pool of ``inflight``.
- ``enqueue-threads``: ``task.defer(**payload)``, procrastinate's synchronous defer (an app opened
  with ``App.open()`` defers through its ``SyncPsycopgConnector``, a thread-safe psycopg
  ``ConnectionPool``), from ``threads`` threads sharing the app and a pool of ``threads``.
- ``enqueue-one``: ``task.defer_async`` one at a time from one asyncio task, a pool of one.
- ``enqueue-batch``: ``task.batch_defer_async(*payloads)``, its bulk API (one call per ``batch``
  jobs), ``inflight`` calls outstanding.
- ``drain``: enqueue ``jobs`` no-op jobs, then launch ``processes`` ``procrastinate worker``
  processes (its CLI; ``--concurrency`` ``concurrency``, default 16: procrastinate scales inside a
  process with async concurrency; its own default, 1, is for blocking tasks) and time from launch until no job
  is ``todo`` or ``doing`` in ``procrastinate_jobs``.
- ``open-loop``: ``rate`` defers/s for ``seconds``, one task each, over a pool of ``connections``
  (default 64); latency from each job's scheduled send time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import procrastinate

from perf.peers.adapters import tasks_pg_procrastinate as tasks
from perf.peers.adapters.pgqueuer_peer import DRAIN_POLL, drain_postgres, pool_size
from perf.peers.base import (
    QUEUE,
    PeerSpec,
    drain_processes,
    enqueue_batches_concurrently,
    enqueue_concurrently,
    enqueue_threads,
    open_loop_async,
    payload,
    run_async,
)

NAME = "procrastinate"
#: A job still to run.
UNFINISHED = "('todo', 'doing')"


async def reset() -> str:
    """Apply procrastinate's schema if missing, else empty its jobs and events (app open); returns
    the server's ``synchronous_commit`` (recorded in each result's config)."""
    connector = tasks.app.connector
    row = await connector.execute_query_one_async("SELECT to_regclass('procrastinate_jobs') AS t")
    if row["t"] is None:
        await tasks.app.schema_manager.apply_schema_async()
    else:
        await connector.execute_query_async(
            "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers"
        )
    row = await connector.execute_query_one_async("SELECT current_setting('synchronous_commit') AS s")
    return str(row["s"])


async def with_app(
    dsn: str, connections: int, body: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Open the app on a psycopg pool of ``connections`` (at most pgqueuer_peer.MAX_POOL), reset,
    warm the pool (a defer per connection, concurrently), run ``body``; the result's config records
    the pool and synchronous_commit."""
    size = pool_size(connections)
    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=size, max_size=size)
    with tasks.app.replace_connector(connector):
        async with tasks.app.open_async():
            sync = await reset()
            # Warm the pool's connections (as pgqueuer_peer.warm): one concurrent defer per connection.
            await asyncio.gather(*(tasks.noop.defer_async(**payload(0)) for _ in range(size)))
            result = await body()
    return result | {"config": {"pool": size, "synchronous_commit": sync}}


async def enqueue_single_async(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The enqueue-single workload (see the module docstring)."""
    jobs, inflight = int(cfg["jobs"]), int(cfg["inflight"])

    async def send(i: int) -> None:
        await tasks.noop.defer_async(**payload(i))

    result = await with_app(dsn, inflight, lambda: enqueue_concurrently(send, jobs, inflight))
    return result | {
        "notes": f"task.defer_async, one job per call; {inflight} asyncio tasks, "
        f"psycopg pool of {pool_size(inflight)}"
    }


async def enqueue_one_async(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The enqueue-one workload (see the module docstring)."""
    jobs = int(cfg["jobs"])

    async def send(i: int) -> None:
        await tasks.noop.defer_async(**payload(i))

    result = await with_app(dsn, 1, lambda: enqueue_concurrently(send, jobs, 1))
    return result | {"notes": "task.defer_async one at a time from one asyncio task, psycopg pool of 1"}


async def reset_only(dsn: str) -> str:
    """`reset` on an app opened just for it (one connection); returns synchronous_commit."""
    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=1)
    with tasks.app.replace_connector(connector):
        async with tasks.app.open_async():
            return await reset()


async def enqueue_batch_async(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The enqueue-batch workload (see the module docstring)."""
    jobs, batch, inflight = int(cfg["jobs"]), int(cfg["batch"]), int(cfg["inflight"])

    async def send_batch(part: list[dict[str, Any]]) -> None:
        await tasks.noop.batch_defer_async(*part)

    result = await with_app(
        dsn, inflight, lambda: enqueue_batches_concurrently(send_batch, jobs, batch, inflight)
    )
    return result | {"notes": f"task.batch_defer_async with {batch} jobs per call; {inflight} outstanding"}


async def open_loop_async_(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The open-loop workload (see the module docstring)."""
    rate, seconds, connections = float(cfg["rate"]), float(cfg["seconds"]), int(cfg.get("connections", 64))

    async def send(i: int) -> None:
        await tasks.noop.defer_async(**payload(i))

    result = await with_app(dsn, connections, lambda: open_loop_async(send, rate, seconds))
    return result | {"notes": f"task.defer_async, one task per job, psycopg pool of {pool_size(connections)}"}


def enqueue_single(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` single defers with ``inflight`` outstanding."""
    return run_async(enqueue_single_async(dsn, cfg))


def enqueue_one(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` single defers, one at a time."""
    return run_async(enqueue_one_async(dsn, cfg))


def enqueue_threads_(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` synchronous ``task.defer`` calls from ``threads`` threads sharing the app, opened
    with ``App.open()`` (procrastinate's sync connector, a psycopg ConnectionPool of ``threads``)."""
    jobs, threads = int(cfg["jobs"]), int(cfg["threads"])
    sync = run_async(reset_only(dsn))
    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=threads, max_size=threads)

    def send(i: int) -> None:
        tasks.noop.defer(**payload(i))

    with tasks.app.replace_connector(connector):
        tasks.app.open()
        try:
            enqueue_threads(send, threads * 2, threads)  # warm every pool connection, not timed
            result = enqueue_threads(send, jobs, threads)
        finally:
            tasks.app.close()
    return result | {
        "config": {"threads": threads, "pool": threads, "synchronous_commit": sync},
        "notes": f"task.defer (procrastinate's sync defer, App.open()) from {threads} OS threads, one call"
        f" at a time each, sharing the app's SyncPsycopgConnector (a thread-safe psycopg pool of {threads})",
    }


def enqueue_batch(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` jobs ``batch`` per ``batch_defer_async``, ``inflight`` calls outstanding."""
    return run_async(enqueue_batch_async(dsn, cfg))


def open_loop(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` defers/s for ``seconds``, latency from the scheduled send time."""
    return run_async(open_loop_async_(dsn, cfg))


def drain(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs, then time ``procrastinate worker`` process(es) until all ran."""
    jobs, workers, concurrency = int(cfg["jobs"]), drain_processes(cfg), int(cfg.get("concurrency", 16))
    enqueue_batch(dsn, {"jobs": jobs, "batch": 1000, "inflight": 4})
    cmd = [
        sys.executable, "-m", "procrastinate", "--app", f"{tasks.__name__}.app", "--log-level", "warning",
        "worker", "--queues", QUEUE, "--concurrency", str(concurrency),
    ]  # fmt: skip
    sql = f"SELECT count(*) FROM procrastinate_jobs WHERE status IN {UNFINISHED}"
    result, sync = drain_postgres(dsn, [cmd] * workers, sql, cfg)
    return result | {
        "config": {"processes": workers, "concurrency": concurrency, "synchronous_commit": sync},
        "notes": f"{workers} `python -m procrastinate worker` process(es), --concurrency {concurrency}, "
        "default --delete-jobs never; done = no job todo/doing in procrastinate_jobs "
        f"(count(*) every {DRAIN_POLL * 1e3:.0f} ms)",
    }


PEER = PeerSpec(
    name=NAME,
    backend="postgres",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-threads": enqueue_threads_,
        "enqueue-one": enqueue_one,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    notes="schema applied with procrastinate's defaults",
    packages=("procrastinate", "psycopg"),
)
