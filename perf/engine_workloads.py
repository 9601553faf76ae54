"""In-process workloads of the storage engine (issue: foundation and storage engine).

Each workload runs in a fresh process (`python -m perf.engine_workloads NAME JSON_CONFIG`) so that
RSS and the event loop start clean, and prints one JSON object with its figures on stdout.
Every load loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from perf.report import percentile
from perf.stall import StallProbe
from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.wal import Durability, FileStorage, WalConfig

QUEUE = "bench"
#: No load loop may run longer than this, whatever the job count asks for.
MAX_SECONDS = 120.0


def payload_of(size: int) -> bytes:
    """A msgpack-ish opaque payload of ``size`` bytes."""
    return b"\x81\xa4data\xda" + (size - 8).to_bytes(2, "big") + b"x" * (size - 8)


async def open_engine(data_dir: Path, mode: Durability, segment_mb: int = 64) -> Engine:
    storage = FileStorage(data_dir, WalConfig(segment_size=segment_mb * 2**20))
    engine = Engine(storage, EngineConfig(durability=mode))
    await engine.open(now=time.time())
    return engine


async def closed_loop(cfg: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """N enqueues from C concurrent producer tasks, each awaiting its commit."""
    mode = Durability(cfg["mode"])
    jobs, concurrency = int(cfg["jobs"]), int(cfg["concurrency"])
    payload = payload_of(int(cfg.get("payload", 128)))
    engine = await open_engine(data_dir, mode)
    latencies: list[float] = []
    deadline = time.perf_counter() + MAX_SECONDS
    per_task = jobs // concurrency

    async def producer() -> None:
        for _ in range(per_task):
            t0 = time.perf_counter()
            await engine.enqueue(QUEUE, "noop", payload, now=time.time())
            latencies.append(time.perf_counter() - t0)
            if t0 > deadline:
                return

    gc.collect()
    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await engine.close()
    latencies.sort()
    return {
        "jobs": len(latencies),
        "seconds": elapsed,
        "jobs_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "p999_ms": percentile(latencies, 99.9) * 1e3,
    }


async def open_loop(cfg: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """Enqueues offered at a fixed rate; latency counted from each one's scheduled send time."""
    mode = Durability(cfg["mode"])
    rate, seconds = float(cfg["rate"]), min(float(cfg["seconds"]), MAX_SECONDS)
    payload = payload_of(int(cfg.get("payload", 128)))
    engine = await open_engine(data_dir, mode)
    latencies: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    async def send(scheduled: float) -> None:
        await engine.enqueue(QUEUE, "noop", payload, now=time.time())
        latencies.append(time.perf_counter() - scheduled)

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    sent = 0
    with StallProbe() as probe:
        while sent < total:
            now = time.perf_counter()
            due = min(total, int((now - start) * rate) + 1) if now >= start else 0
            while sent < due:
                task = asyncio.create_task(send(start + sent / rate))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(0.0005)
        await asyncio.gather(*pending)
    await engine.close()
    latencies.sort()
    return {
        "offered_per_s": rate,
        "jobs": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p90_ms": percentile(latencies, 90) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "p999_ms": percentile(latencies, 99.9) * 1e3,
        "max_ms": latencies[-1] * 1e3 if latencies else 0.0,
        "max_loop_stall_ms": probe.max_gap * 1e3,
    }


async def fill(engine: Engine, jobs: int, payload: bytes, batch: int = 1000) -> None:
    """Enqueue ``jobs`` jobs in batches (fast setup for recovery, memory and snapshot workloads)."""
    items = [payload] * batch
    for start in range(0, jobs, batch):
        n = min(batch, jobs - start)
        await engine.enqueue_batch(QUEUE, "noop", items[:n], now=time.time())


def rss_anon_bytes() -> int:
    """Anonymous resident memory of this process (excludes the mmap'd log's file pages)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


async def memory(cfg: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """RSS per pending job beyond its payload, at ``jobs`` pending jobs."""
    jobs, size = int(cfg["jobs"]), int(cfg.get("payload", 128))
    engine = await open_engine(data_dir, Durability.ASYNC)
    gc.collect()
    before = rss_anon_bytes()
    await fill(engine, jobs, payload_of(size))
    gc.collect()
    after = rss_anon_bytes()
    pending = engine.stats().total_jobs
    await engine.close()
    # Each job owns a bytes object for its payload: its contents are the payload, its header is ours.
    per_job = (after - before) / pending - size
    return {
        "jobs": pending,
        "rss_delta_mb": (after - before) / 2**20,
        "bytes_per_job_beyond_payload": per_job,
    }


async def snapshot_stall(cfg: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The loop's longest stall while a snapshot of ``jobs`` jobs is written."""
    jobs = int(cfg["jobs"])
    engine = await open_engine(data_dir, Durability.ASYNC)
    await fill(engine, jobs, payload_of(int(cfg.get("payload", 128))))
    gc.collect()
    started = time.perf_counter()
    with StallProbe() as probe:
        await engine.snapshot(QUEUE)
    elapsed = time.perf_counter() - started
    await engine.close()
    return {"jobs": jobs, "snapshot_s": elapsed, "max_loop_stall_ms": probe.max_gap * 1e3}


async def recovery(cfg: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """Time to reopen ``jobs`` jobs (snapshot plus a tail of ``tail`` enqueue records)."""
    jobs, tail = int(cfg["jobs"]), int(cfg.get("tail", 0))
    payload = payload_of(int(cfg.get("payload", 128)))
    engine = await open_engine(data_dir, Durability.ASYNC)
    await fill(engine, jobs - tail, payload)
    if cfg.get("snapshot", True):
        await engine.snapshot(QUEUE)
    for _ in range(tail):
        await engine.enqueue(QUEUE, "noop", payload, now=time.time())
    await engine.close()
    gc.collect()
    started = time.perf_counter()
    engine = await open_engine(data_dir, Durability.ASYNC)
    elapsed = time.perf_counter() - started
    recovered = engine.stats().total_jobs
    await engine.close()
    return {
        "jobs": recovered,
        "tail_records": tail,
        "recovery_s": elapsed,
        "records_per_s": (tail / elapsed) if not cfg.get("snapshot", True) else None,
    }


WORKLOADS: dict[str, Callable[[dict[str, Any], Path], Awaitable[dict[str, Any]]]] = {
    "closed-loop": closed_loop,
    "open-loop": open_loop,
    "memory": memory,
    "snapshot-stall": snapshot_stall,
    "recovery": recovery,
}


def main() -> None:
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    base = Path(cfg.get("dir") or tempfile.mkdtemp(prefix="spitfire-perf-"))
    data_dir = base / "data"
    try:
        result = uvloop.run(WORKLOADS[name](cfg, data_dir))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result["pid"] = os.getpid()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
