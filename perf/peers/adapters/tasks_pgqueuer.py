"""The pgqueuer worker the drain workload launches: ``python -m pgqueuer run <this>:create_pgqueuer``.

One no-op entrypoint, ``noop``, over one asyncpg connection (as pgqueuer's own benchmark and
docs set a worker up). The DSN comes from ``PERF_PEER_URL`` (perf.peers.base.URL_ENV).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.models import Job

from perf.peers.base import URL_ENV

#: The entrypoint every benchmark job names.
ENTRYPOINT = "noop"


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """pgqueuer's CLI factory: a PgQueuer with the no-op entrypoint on its own connection."""
    connection = await asyncpg.connect(os.environ[URL_ENV])
    pgq = PgQueuer.from_asyncpg_connection(connection)

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        """Does nothing: the drain measures the queue, not the work."""

    try:
        yield pgq
    finally:
        await connection.close()


def main(argv: list[str]) -> None:
    """``python -m perf.peers.adapters.tasks_pgqueuer [BATCH_SIZE]``: what ``pgqueuer run
    perf.peers.adapters.tasks_pgqueuer:create_pgqueuer --batch-size N`` does, through pgqueuer's
    own programmatic entry point (``pgqueuer.run``, "as pgq run does, without the CLI"), on uvloop
    as its CLI runs when installed. The CLI itself fails at start-up with typer >= 0.20-ish
    (pgqueuer 1.6.0: ``setup_fancy_logger`` gets the ``--log-level`` as a str, AttributeError).
    """
    from datetime import timedelta

    import pgqueuer

    from perf.peers.base import run_async

    batch_size = int(argv[0]) if argv else 10
    run_async(pgqueuer.run(create_pgqueuer, batch_size=batch_size, dequeue_timeout=timedelta(seconds=30)))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
