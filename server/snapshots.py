"""Writing a queue's snapshot without stalling the loop.

A snapshot claims the queue's *applied* LSN, never a higher one: memory reflects only durable
records (commit, then apply), so a record appended but still waiting for its commit is neither in
the snapshot nor claimed by it, and replay after the snapshot applies it. Jobs are encoded a chunk
at a time with a yield to the loop between chunks, so a job may be written in a state newer than
the snapshot's LSN; that state is durable too (it was applied), and replay skips the records the
job already reflects (``job.lsn``). In async mode applied records may not be on disk yet, so the
snapshot is finished only once the log is durable up to the newest record any of its jobs reflects.
"""

from __future__ import annotations

import asyncio
import time

from spitfire.index.ids import IdGenerator

from . import records as rec
from .dedupe import RequestTokens
from .history import encode_history_chunk
from .state import Queue
from .stats import SnapshotStats


async def write_snapshot(
    q: Queue, ids: IdGenerator, chunk_jobs: int, stats: SnapshotStats, tokens: RequestTokens | None = None
) -> int:
    """Write a snapshot of ``q`` at its applied LSN; returns that LSN (the last one's when a snapshot
    is already being written). ``tokens``: the request-dedupe tokens, whose ``q``'s it keeps."""
    if q.snapshotting:
        return q.snapshot_lsn
    q.snapshotting = True
    started = time.perf_counter()
    writer = q.log.snapshot(q.applied_lsn)
    try:
        index = q.index
        meta = rec.QueueMeta(
            rec.SNAPSHOT_VERSION,
            q.paused,
            q.log.durability.value,
            [rec.IdempotencyEntry(*item) for item in index.keys.items()],
            ids.last,
            True,
            [rec.TokenRecord(t, e.name, list(e.job_ids), e.expires_at) for t, e in tokens.of_queue(q.name)]
            if tokens is not None
            else [],
        )
        jobs, count = index.jobs_view()
        writer.add(rec.encode(meta))
        # The counters as of the snapshot's LSN: encoded before the first yield, like the meta.
        writer.add(encode_history_chunk(q))
        live = index.live_jobs
        for start in range(0, count, chunk_jobs):
            await asyncio.sleep(0)
            writer.add(rec.encode(rec.JobChunk(live(jobs, start, min(count, start + chunk_jobs)))))
        await q.log.flush()  # async mode: what the jobs reflect may not be on disk yet
        await writer.finish()
    except BaseException:
        writer.abort()
        stats.failed += 1
        raise
    finally:
        q.snapshotting = False
    # Wall-clock time of completion for monitoring only: nothing in the engine reads it back.
    stats.finished(time.perf_counter() - started, time.time())
    q.snapshot_lsn = max(q.snapshot_lsn, writer.lsn)
    return writer.lsn
