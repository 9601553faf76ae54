"""The dashboard's listings and bulk actions with 1,000,000 jobs in memory (100,000 of them dead).

Run: .venv/bin/python tests/engine/bench_listing.py [JOBS]   (default 1,000,000; a tenth dead)

Prints, per listing, the time of its first page of 50 (median of 20 runs; the engine's `list_all`
and the same page rendered to JSON as GET /api/jobs answers it), then one bulk retry over every
dead job: its total time and the longest time the event loop went without a turn meanwhile. The
garbage collector is tuned as the server tunes it after recovery.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import msgspec
import uvloop

from spitfire.dashboard import model as mo
from spitfire.index.job import JobState
from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine, JobFilter
from spitfire.server.runtime import tune_garbage_collector
from spitfire.wal.api import Durability
from spitfire.wal.memory import MemoryState, MemoryStorage

T0 = 1_700_000_000.0
QUEUES = 10
BATCH = 10_000
S = JobState


async def build(total: int) -> Engine:
    engine = Engine(MemoryStorage(MemoryState()), EngineConfig(durability=Durability.GROUP, snapshot_every=0))
    await engine.open(T0)
    per_queue = total // QUEUES
    now = T0
    for q in range(QUEUES):
        for start in range(0, per_queue, BATCH):
            payloads = [msgspec.msgpack.encode({"n": start + i}) for i in range(BATCH)]
            name = f"handler_{(start // BATCH) % 5}"
            await engine.enqueue_batch(f"queue-{q}", name, payloads, now=now)
            now += 1.0
    # A tenth of every queue dead (the oldest: FIFO), and its newest job cancelled (a rare state).
    for q in range(QUEUES):
        queue = f"queue-{q}"
        for _ in range(per_queue // 10 // 1000):
            jobs = engine.reserve([queue], "w", now, limit=1000)
            for job in jobs:
                await engine.fail(job.id, "w", now, "boom", retryable=False)
        newest, _ = engine.list_all(JobFilter(queue=queue), None, 1)
        await engine.bulk("cancel", now, ids=[newest[0].id])
    return engine


def timed(fn: object, runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main(total: int) -> None:
    started = time.perf_counter()
    engine = await build(total)
    tune_garbage_collector()  # as the server does after recovery
    stats = engine.stats()
    counts = {s: sum(q.counts[s] for q in stats.queues.values()) for s in ("enqueued", "dead", "cancelled")}
    print(f"built {stats.total_jobs:,} jobs in {time.perf_counter() - started:.1f} s: {counts}")
    dead = frozenset({S.DEAD})
    cases = {
        "every job": JobFilter(),
        "state=dead": JobFilter(states=dead),
        "queue": JobFilter(queue="queue-3"),
        "queue + state=dead": JobFilter(queue="queue-3", states=dead),
        "queue + state=enqueued": JobFilter(queue="queue-3", states=frozenset({S.ENQUEUED})),
        "state=dead,retrying": JobFilter(states=frozenset({S.DEAD, S.RETRYING})),
        "state=cancelled (rare)": JobFilter(states=frozenset({S.CANCELLED})),
        "state=running (none)": JobFilter(states=frozenset({S.RUNNING})),
        "name": JobFilter(name="handler_2"),
        "q=name + state=dead": JobFilter(q="handler_0", states=dead),
        "queue + before (a time)": JobFilter(queue="queue-3", before=T0 + 50),
    }
    encode = msgspec.json.encode
    print(f"{'first page of 50':<28} {'engine ms':>10} {'+ JSON ms':>10} {'jobs':>6}")
    for label, f in cases.items():
        jobs, _ = engine.list_all(f, None, 50)
        engine_s = timed(lambda f=f: engine.list_all(f, None, 50))
        render_s = timed(
            lambda f=f: encode(mo.JobPage([mo.job_out(j) for j in engine.list_all(f, None, 50)[0]], None))
        )
        print(f"{label:<28} {engine_s * 1000:>10.2f} {render_s * 1000:>10.2f} {len(jobs):>6}")
    # One bulk retry over every dead job, and how long the loop went without a turn meanwhile.
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    started = time.perf_counter()
    result = await engine.bulk("retry", T0 + 10_000, filter=JobFilter(states=dead))
    took = time.perf_counter() - started
    stop = True
    await tick
    print(
        f"bulk retry of {result.done:,} dead jobs (matched {result.matched:,}): {took:.2f} s, "
        f"longest loop stall {max(gaps) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
