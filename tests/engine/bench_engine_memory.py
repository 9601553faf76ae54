"""Engine figures on MemoryStorage: enqueue cost, memory per pending job, snapshot stall, recovery.

Run: .venv/bin/python tests/engine/bench_engine_memory.py [JOBS]   (default 1,000,000)
Each figure is measured in a fresh process so RSS and the heap start clean.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time

import uvloop

from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.wal.api import Durability
from spitfire.wal.memory import MemoryState, MemoryStorage

PAYLOAD = b"\x81\xa4data\xda\x00\x78" + b"x" * 120  # 128 bytes
T0 = 1_700_000_000.0


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon")


async def new_engine(state: MemoryState) -> Engine:
    engine = Engine(MemoryStorage(state), EngineConfig(durability=Durability.GROUP, snapshot_every=0))
    await engine.open(T0)
    return engine


async def enqueue_cost(jobs: int) -> dict[str, float]:
    engine = await new_engine(MemoryState())
    gc.collect()
    started = time.perf_counter()
    for i in range(jobs):
        await engine.enqueue("bench", "noop", PAYLOAD, now=T0 + i * 1e-6)
    single = (time.perf_counter() - started) / jobs
    engine2 = await new_engine(MemoryState())
    items = [PAYLOAD] * 1000
    started = time.perf_counter()
    for i in range(jobs // 1000):
        await engine2.enqueue_batch("bench", "noop", items, now=T0 + i * 1e-3)
    batch = (time.perf_counter() - started) / (jobs // 1000 * 1000)
    return {"jobs": jobs, "enqueue_us_per_job": single * 1e6, "enqueue_many_us_per_job": batch * 1e6}


async def memory(jobs: int) -> dict[str, float]:
    engine = await new_engine(MemoryState(keep_records=False))
    payloads = [bytes(PAYLOAD) for _ in range(jobs)]  # each job owns its payload object
    gc.collect()
    before = rss_anon()
    for i in range(jobs):
        await engine.enqueue("bench", "noop", payloads[i], now=T0 + i * 1e-6)
    del payloads
    gc.collect()
    after = rss_anon()
    n = engine.stats().total_jobs
    # The payload objects existed before; what the engine added per job is the delta.
    return {
        "jobs": n,
        "rss_delta_mb": (after - before) / 2**20,
        "bytes_per_pending_job": (after - before) / n,
    }


async def snapshot_stall(jobs: int) -> dict[str, float]:
    state = MemoryState()
    engine = await new_engine(state)
    items = [PAYLOAD] * 1000
    for i in range(jobs // 1000):
        await engine.enqueue_batch("bench", "noop", items, now=T0 + i * 1e-3)
    gc.collect()
    max_gap = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal max_gap
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            max_gap = max(max_gap, now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await engine.snapshot("bench")
    elapsed = time.perf_counter() - started
    stop = True
    await task
    return {"jobs": jobs, "snapshot_s": elapsed, "max_loop_stall_ms": max_gap * 1e3}


async def recovery(jobs: int) -> dict[str, float]:
    out: dict[str, float] = {"jobs": jobs}
    for mode in ("records", "snapshot"):
        state = MemoryState()
        engine = await new_engine(state)
        items = [PAYLOAD] * 1000
        for i in range(jobs // 1000):
            await engine.enqueue_batch("bench", "noop", items, now=T0 + i * 1e-3)
        if mode == "snapshot":
            await engine.snapshot("bench")
        await engine.close()
        del engine
        gc.collect()
        started = time.perf_counter()
        engine = await new_engine(state)
        out[f"recovery_from_{mode}_s"] = time.perf_counter() - started
        assert engine.stats().total_jobs == jobs // 1000 * 1000
        await engine.close()
        del engine, state
        gc.collect()
    # Single-job records (one JOB_ENQUEUED record each), no snapshot.
    state = MemoryState()
    engine = await new_engine(state)
    for i in range(jobs):
        await engine.enqueue("bench", "noop", PAYLOAD, now=T0 + i * 1e-6)
    await engine.close()
    gc.collect()
    started = time.perf_counter()
    engine = await new_engine(state)
    out["recovery_from_single_records_s"] = time.perf_counter() - started
    return out


WORKLOADS = {"enqueue": enqueue_cost, "memory": memory, "snapshot": snapshot_stall, "recovery": recovery}


def main() -> None:
    if len(sys.argv) > 2:
        name, jobs = sys.argv[1], int(sys.argv[2])
        print(json.dumps(uvloop.run(WORKLOADS[name](jobs))), flush=True)
        return
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    for name in WORKLOADS:
        n = 200_000 if name == "enqueue" else jobs
        result = subprocess.run([sys.executable, __file__, name, str(n)], capture_output=True, text=True)
        print(name, result.stdout.strip() or result.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
