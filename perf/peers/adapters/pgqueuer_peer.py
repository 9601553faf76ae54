"""pgqueuer (https://github.com/janbjorge/pgqueuer) on PostgreSQL: the comparison's workloads.

Runs in the peers' venv. The service URL is a ``postgresql://`` DSN (`perf.peers.pg_service`).
Every workload starts from an empty queue: it installs pgqueuer's schema if missing (its default
``durable`` variant: logged tables) and truncates the queue and log tables otherwise.

- ``enqueue-single``: ``Queries.enqueue(entrypoint, payload)``, one job per call (one INSERT, whose
  trigger NOTIFYs), ``inflight`` asyncio tasks over an asyncpg pool of ``inflight`` connections.
- ``enqueue-threads``: pgqueuer's synchronous API (``SyncQueries`` over ``SyncPsycopgDriver``, its
  documented way to enqueue from sync code) from ``threads`` threads, one psycopg connection per
  thread (the driver wraps one connection, and a psycopg connection serializes its queries).
- ``enqueue-one``: ``Queries.enqueue`` one at a time from one asyncio task, one connection.
- ``enqueue-batch``: the same call with lists, pgqueuer's bulk form (one ``INSERT ... unnest`` per
  ``batch`` jobs), ``inflight`` calls outstanding over a pool of as many connections.
- ``drain``: enqueue ``jobs`` no-op jobs, then launch ``processes`` (default 1; pgqueuer scales by
  processes) worker processes, each what ``pgqueuer run tasks_pgqueuer:create_pgqueuer --batch-size N`` runs
  (``batch_size``, default pgqueuer's 10), and time from launch until pgqueuer's queue table is
  empty (it deletes a job's row when it logs the job done).
- ``open-loop``: ``rate`` single enqueues/s for ``seconds``, each its own task over a pool of
  ``connections`` (default 64) connections; latency from each job's scheduled send time.

Every pool connection runs one enqueue before the clock starts (see `warm`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
from pgqueuer.db import SyncPsycopgDriver
from pgqueuer.queries import Queries, SyncQueries

from perf.peers.adapters import tasks_pgqueuer
from perf.peers.base import (
    DEADLINE,
    PeerSpec,
    drain_processes,
    drain_with_workers,
    enqueue_batches_concurrently,
    enqueue_concurrently,
    enqueue_threads_each,
    open_loop_async,
    payload,
    run_async,
)

NAME = "pgqueuer"
QUEUE_TABLE = "pgqueuer"
LOG_TABLES = ("pgqueuer_log", "pgqueuer_statistics")
ENTRYPOINT = tasks_pgqueuer.ENTRYPOINT
#: The largest connection pool a workload opens (see `pool_size`).
MAX_POOL = 80


async def reset(dsn: str) -> str:
    """Install pgqueuer's schema if missing, else empty its queue and log tables; returns the
    server's ``synchronous_commit`` (the comparison's knob, recorded in each result's config)."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        if not await queries.schema_is_installed():
            await queries.install()
        await connection.execute(f"TRUNCATE {QUEUE_TABLE}, {', '.join(LOG_TABLES)}")
        return str(await connection.fetchval("SHOW synchronous_commit"))
    finally:
        await connection.close()


def pool_size(wanted: int) -> int:
    """Connections for ``wanted`` concurrent calls, within PostgreSQL's default max_connections
    (100, 3 of them reserved, a few for the workers and the harness)."""
    return max(1, min(wanted, MAX_POOL))


def encode(doc: dict[str, Any]) -> bytes:
    """pgqueuer payloads are bytes: the JSON document, as its docs do."""
    return json.dumps(doc).encode()


async def with_queries(
    dsn: str, connections: int, body: Callable[[Queries], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Reset, open an asyncpg pool of ``connections`` (at most `MAX_POOL`), warm each connection
    (one job each), run ``body``; the result's config records the pool and synchronous_commit."""
    sync = await reset(dsn)
    size = pool_size(connections)
    async with asyncpg.create_pool(dsn, min_size=size, max_size=size) as pool:
        await warm(pool, size)
        result = await body(Queries.from_asyncpg_pool(pool))
    return result | {"config": {"pool": size, "synchronous_commit": sync}}


async def warm(pool: asyncpg.Pool, connections: int) -> None:
    """One enqueue on every pool connection before the clock starts (Spitfire's workloads connect
    first too): asyncpg's first use of pgqueuer's enqueue statement on a connection prepares it and
    introspects its custom types, tens of ms of server CPU each (PostgreSQL's default jit=on); done
    inside the measurement, 64 of them stalled the first ~0.7 s of a 500/s open loop (p90 200+ ms)."""
    held = [await pool.acquire() for _ in range(connections)]
    try:
        await asyncio.gather(
            *(Queries.from_asyncpg_connection(c).enqueue(ENTRYPOINT, encode(payload(0))) for c in held)
        )
    finally:
        for c in held:
            await pool.release(c)


async def enqueue_single_async(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The enqueue-single workload (see the module docstring)."""
    jobs, inflight = int(cfg["jobs"]), int(cfg["inflight"])

    async def body(queries: Queries) -> dict[str, Any]:
        async def send(i: int) -> None:
            await queries.enqueue(ENTRYPOINT, encode(payload(i)))

        return await enqueue_concurrently(send, jobs, inflight)

    result = await with_queries(dsn, inflight, body)
    return result | {
        "notes": f"Queries.enqueue, one job per call; {inflight} asyncio tasks, "
        f"asyncpg pool of {pool_size(inflight)}"
    }


async def enqueue_one_async(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The enqueue-one workload (see the module docstring)."""
    jobs = int(cfg["jobs"])

    async def body(queries: Queries) -> dict[str, Any]:
        async def send(i: int) -> None:
            await queries.enqueue(ENTRYPOINT, encode(payload(i)))

        return await enqueue_concurrently(send, jobs, 1)

    result = await with_queries(dsn, 1, body)
    return result | {"notes": "Queries.enqueue one at a time from one asyncio task, one asyncpg connection"}


async def enqueue_batch_async(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The enqueue-batch workload (see the module docstring)."""
    jobs, batch, inflight = int(cfg["jobs"]), int(cfg["batch"]), int(cfg["inflight"])

    async def body(queries: Queries) -> dict[str, Any]:
        async def send_batch(part: list[dict[str, Any]]) -> None:
            n = len(part)
            await queries.enqueue([ENTRYPOINT] * n, [encode(doc) for doc in part], [0] * n)

        return await enqueue_batches_concurrently(send_batch, jobs, batch, inflight)

    result = await with_queries(dsn, inflight, body)
    return result | {
        "notes": f"Queries.enqueue with lists of {batch} (one INSERT ... unnest); {inflight} outstanding, "
        f"asyncpg pool of {pool_size(inflight)}"
    }


async def open_loop_async_(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The open-loop workload (see the module docstring)."""
    rate, seconds, connections = float(cfg["rate"]), float(cfg["seconds"]), int(cfg.get("connections", 64))

    async def body(queries: Queries) -> dict[str, Any]:
        async def send(i: int) -> None:
            await queries.enqueue(ENTRYPOINT, encode(payload(i)))

        return await open_loop_async(send, rate, seconds)

    result = await with_queries(dsn, connections, body)
    return result | {"notes": f"Queries.enqueue, one task per job, asyncpg pool of {pool_size(connections)}"}


def enqueue_single(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` single enqueues with ``inflight`` outstanding."""
    return run_async(enqueue_single_async(dsn, cfg))


def enqueue_one(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` single enqueues, one at a time."""
    return run_async(enqueue_one_async(dsn, cfg))


def enqueue_threads(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` single enqueues through ``SyncQueries`` from ``threads`` threads, one psycopg
    connection (autocommit, as SyncPsycopgDriver requires) per thread, each warmed by one enqueue."""
    jobs, threads = int(cfg["jobs"]), int(cfg["threads"])
    sync = run_async(reset(dsn))
    connections = [psycopg.connect(dsn, autocommit=True) for _ in range(threads)]
    try:
        senders = []
        for conn in connections:
            queries = SyncQueries(SyncPsycopgDriver(conn))
            queries.enqueue(ENTRYPOINT, encode(payload(0)))

            def send(i: int, queries: SyncQueries = queries) -> None:
                queries.enqueue(ENTRYPOINT, encode(payload(i)))

            senders.append(send)
        result = enqueue_threads_each(senders, jobs)
    finally:
        for conn in connections:
            conn.close()
    return result | {
        "config": {"threads": threads, "connections": threads, "synchronous_commit": sync},
        "notes": f"SyncQueries.enqueue (pgqueuer's sync API) from {threads} OS threads, one call at a time "
        "each, one psycopg connection per thread (SyncPsycopgDriver wraps one connection)",
    }


def enqueue_batch(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` jobs in lists of ``batch`` per call, ``inflight`` calls outstanding."""
    return run_async(enqueue_batch_async(dsn, cfg))


def open_loop(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` enqueues/s for ``seconds``, latency from the scheduled send time."""
    return run_async(open_loop_async_(dsn, cfg))


#: Seconds between two polls of the jobs left during a drain: a count(*) over 20,000 rows costs
#: PostgreSQL 1.5-3 ms, so polling every 5 ms (as Spitfire's drain polls its cheap stats) would take
#: a third of a core from the workers on a 2-core machine; 20 ms is 0.4% of a 5 s drain.
DRAIN_POLL = 0.02


def drain_postgres(
    dsn: str, cmds: list[list[str]], count_unfinished_sql: str, cfg: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """`perf.peers.base.drain_with_workers` (polling every `DRAIN_POLL` s) until
    ``count_unfinished_sql`` (one count) says no job is left, bounded by cfg's ``deadline``; returns
    the result and the server's synchronous_commit setting."""
    with psycopg.connect(dsn, autocommit=True) as conn:

        def remaining() -> int:
            row = conn.execute(count_unfinished_sql).fetchone()
            return int(row[0]) if row else 0

        row = conn.execute("SHOW synchronous_commit").fetchone()
        sync = str(row[0]) if row else "?"
        deadline = float(cfg.get("deadline", DEADLINE))
        result = drain_with_workers(cmds, dsn, remaining, remaining(), poll=DRAIN_POLL, deadline=deadline)
        return result, sync


def drain(dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs, then time ``processes`` pgqueuer worker processes until all ran."""
    jobs, workers, batch_size = int(cfg["jobs"]), drain_processes(cfg), int(cfg.get("batch_size", 10))
    enqueue_batch(dsn, {"jobs": jobs, "batch": 1000, "inflight": 4})
    # ``pgqueuer run <factory> --batch-size N`` through pgqueuer.run (see tasks_pgqueuer.main: the
    # CLI itself dies at start-up with the current typer).
    cmd = [sys.executable, "-m", tasks_pgqueuer.__name__, str(batch_size)]
    result, sync = drain_postgres(dsn, [cmd] * workers, f"SELECT count(*) FROM {QUEUE_TABLE}", cfg)
    return result | {
        "config": {"processes": workers, "batch_size": batch_size, "synchronous_commit": sync},
        "notes": f"{workers} worker process(es), each pgqueuer.run(factory, batch_size={batch_size}) as "
        "`pgqueuer run` does (its CLI fails to start with typer 0.29), one asyncpg connection each; "
        f"done = pgqueuer's queue table empty (count(*) every {DRAIN_POLL * 1e3:.0f} ms)",
    }


PEER = PeerSpec(
    name=NAME,
    backend="postgres",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-threads": enqueue_threads,
        "enqueue-one": enqueue_one,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    notes="schema installed with pgqueuer's defaults (durability=durable: logged tables)",
    packages=("pgqueuer", "asyncpg"),
)
