"""The engine's drain with and without the per-handler timings (/metrics' spitfire_job_*_seconds).

Run: .venv/bin/python tests/engine/bench_drain_timings.py [JOBS] [ROUNDS]   (default 200,000 and 3)

Each round enqueues JOBS jobs of 4 handlers (batches of 1,000) into an in-memory engine and drains
them as a worker does: reserve 100, START each, ack them in one `ack_many`. The drain alternates
timings on (the server's default) and off (``engine.state.timings = None``) every 1,000 jobs, and
adds up the CPU time of each (process time: other processes on a shared machine count less), so
that the load, which drifts over seconds, hits both alike. Prints jobs/s of each and the
difference per job, per round and over all rounds.
"""

from __future__ import annotations

import sys
import time

import uvloop

from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.server.stats import JobTimings
from spitfire.wal.api import Durability
from spitfire.wal.memory import MemoryState, MemoryStorage

T0 = 1_700_000_000.0
HANDLERS = ("resize", "send_email", "report", "cleanup")
BATCH = 1000
TAKE = 100
#: Jobs drained in one mode before switching to the other.
STRETCH = 1000


async def drain(jobs: int) -> dict[bool, tuple[int, float]]:
    """Per mode (timings on or off): (jobs drained, seconds spent)."""
    engine = Engine(MemoryStorage(MemoryState()), EngineConfig(durability=Durability.GROUP, snapshot_every=0))
    await engine.open(T0)
    timings = JobTimings()
    now = T0
    for start in range(0, jobs, BATCH):
        await engine.enqueue_batch("q", HANDLERS[(start // BATCH) % 4], [b"\x80"] * BATCH, now=now)
    spent = {True: [0, 0.0], False: [0, 0.0]}
    done = 0
    while done < jobs:
        on = (done // STRETCH) % 2 == 0
        engine.state.timings = timings if on else None
        began = time.process_time()
        for _ in range(STRETCH // TAKE):
            now += 0.001
            got = engine.reserve(["q"], "w", now, limit=TAKE)
            for job in got:
                engine.start(job.id, "w", now)
            await engine.ack_many([job.id for job in got], "w", now + 0.0005)
            done += len(got)
            spent[on][0] += len(got)
        spent[on][1] += time.process_time() - began
    await engine.close()
    return {mode: (int(n), float(s)) for mode, (n, s) in spent.items()}


def report(label: str, spent: dict[bool, tuple[int, float]]) -> None:
    (n_on, s_on), (n_off, s_off) = spent[True], spent[False]
    on, off = n_on / s_on, n_off / s_off
    extra = (s_on / n_on - s_off / n_off) * 1e6
    print(f"{label}: on {on:,.0f} jobs/s, off {off:,.0f} jobs/s, on/off {on / off:.3f}, +{extra:.2f} us/job")


async def main(jobs: int, rounds: int) -> None:
    total = {True: (0, 0.0), False: (0, 0.0)}
    for i in range(rounds):
        spent = await drain(jobs)
        report(f"round {i + 1}", spent)
        total = {m: (total[m][0] + spent[m][0], total[m][1] + spent[m][1]) for m in total}
    report("all rounds", total)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    uvloop.run(main(count, int(sys.argv[2]) if len(sys.argv) > 2 else 3))
