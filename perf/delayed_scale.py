"""python -m perf delayed-scale: delayed jobs at scale.

With ``--backlog`` (1,000,000) jobs delayed to random times within the next hour held by a server:

- enqueue throughput with and without them: two servers side by side, one holding the backlog,
  measured alternately (``--repeat`` rounds, medians), each round ``--jobs`` single enqueues from one
  AsyncClient with 64 in flight; the drop is ``1 - with / without`` (target: under 10%);
- lateness under no load: ``--late-jobs`` jobs delayed 1..``--spread`` s while one worker process
  runs: p50/p99 of (first reserved - due) and of (promoted to enqueued - due) (target: within 50 ms);
- recovery: the backlog server restarted (SIGTERM, start again): seconds until it accepts connections.

The backlog is loaded in batches of 100 (`enqueue_many`), each batch at its own random delay (10,000
distinct due times for 1,000,000 jobs). Writes perf/results/delayed-scale-<ts>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

import spitfire
from perf.net_workloads import payload
from perf.report import Figure, median, print_table, write_json
from perf.server_proc import ServerProcess
from perf.workloads import deadline_of, enqueue_closed, lateness, wait_drained, workers

HOUR = 3600.0
BATCH = 100


async def load_backlog(url: str, jobs: int, seed: int) -> float:
    """Enqueue ``jobs`` jobs into queue "backlog", delayed 0..1 h; returns the seconds it took."""
    rng = random.Random(seed)
    started = time.perf_counter()
    async with spitfire.AsyncClient(url) as client:
        starts = iter(range(0, jobs, BATCH))

        async def producer() -> None:
            for s in starts:
                bodies = [payload(i) for i in range(s, min(jobs, s + BATCH))]
                await client.enqueue_many("backlog", "noop", bodies, delay=rng.uniform(60.0, HOUR))

        await asyncio.gather(*(producer() for _ in range(4)))
    return time.perf_counter() - started


async def enqueue_rate(url: str, jobs: int) -> float:
    async with spitfire.AsyncClient(url) as client:
        result = await enqueue_closed(
            client, jobs, 64, lambda i: ("bench", payload(i), {}), deadline_of({"deadline": 120})
        )
    return float(result["jobs_per_s"])


async def late(url: str, jobs: int, spread: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    delays = [rng.uniform(1.0, spread) for _ in range(jobs)]
    ids: dict[int, str] = {}
    async with spitfire.AsyncClient(url) as client:
        with workers(url, ["late"], 1, 64) as procs:
            await enqueue_closed(
                client, jobs, 8, lambda i: ("late", payload(i), {"delay": delays[i]}),
                deadline_of({"deadline": 60}), ids,
            )  # fmt: skip
            _, _, left = await wait_drained(client, ["late"], procs, time.monotonic() + spread + 60)
        return {"left": left, **await lateness(client, {ids[i]: delays[i] for i in ids})}


def run(backlog: int, jobs: int, repeat: int, late_jobs: int, spread: float) -> int:
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    with ServerProcess(quic=False) as empty, ServerProcess(quic=False) as full:
        print(f"  loading {backlog:,} delayed jobs ...", file=sys.stderr, flush=True)
        raw["backlog_load_s"] = asyncio.run(load_backlog(full.url(), backlog, 1))
        without, with_ = [], []
        for i in range(repeat):
            print(f"  enqueue round {i + 1}/{repeat} ...", file=sys.stderr, flush=True)
            without.append(asyncio.run(enqueue_rate(empty.url(), jobs)))
            with_.append(asyncio.run(enqueue_rate(full.url(), jobs)))
        a, b = median(without), median(with_)
        drop = 100.0 * (1.0 - b / a)
        figures += [
            Figure("enqueue jobs/s, no delayed jobs held", a, "jobs/s", "", None, without),
            Figure(f"enqueue jobs/s, {backlog:,} delayed jobs held", b, "jobs/s", "", None, with_),
            Figure("enqueue slowdown with the backlog", drop, "%", "< 10", drop < 10.0),
        ]
        print("  lateness ...", file=sys.stderr, flush=True)
        lat = raw["lateness"] = asyncio.run(late(full.url(), late_jobs, spread, 2))
        for key, label in (("late_", "first reserved"), ("promote_", "promoted")):
            for p in ("p50", "p99"):
                value = float(lat.get(f"{key}{p}_ms", 0.0))
                check = value <= 50.0 if p == "p99" and key == "late_" else None
                figures.append(
                    Figure(
                        f"lateness {label} - due, {p}",
                        value,
                        "ms",
                        "<= 50" if check is not None else "",
                        check,
                    )
                )
        print("  restart ...", file=sys.stderr, flush=True)
        recovery = full.restart()
        figures.append(
            Figure(f"restart with {backlog:,} delayed jobs until serving", recovery, "s", "", None)
        )
    print_table(figures)
    config = {
        "backlog": backlog,
        "jobs": jobs,
        "repeat": repeat,
        "late_jobs": late_jobs,
        "spread": spread,
        "raw": raw,
    }
    path = write_json("delayed-scale", config, figures)
    print(f"\nwrote {path}")
    return 0 if all(f.ok is not False for f in figures) else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m perf delayed-scale", description=__doc__.split("\n")[0])
    p.add_argument("--backlog", type=int, default=1_000_000)
    p.add_argument("--jobs", type=int, default=50_000, help="enqueues per measurement")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--late-jobs", type=int, default=500)
    p.add_argument("--spread", type=float, default=10.0, help="lateness jobs are delayed 1..spread s")
    a = p.parse_args(argv)
    return run(a.backlog, a.jobs, a.repeat, a.late_jobs, a.spread)
