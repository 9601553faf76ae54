"""Microbenchmarks of the file engine (not collected by pytest). Run:

    .venv/bin/python tests/wal/bench_wal.py [DIR]

DIR (default: a temporary directory under /var/tmp) must be on the disk to measure (fsync is real).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from spitfire.wal import Durability, FileStorage, WalConfig

BODY = bytes(range(128))


async def hot_path(root: Path) -> None:
    storage = FileStorage(root / "hot", WalConfig())
    log, _ = storage.open_log("q", Durability.GROUP)
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        log.commit(log.append(1, BODY))
    took = time.perf_counter() - started
    print(f"append+commit call cost, 128 B, GROUP (one tick): {took / n * 1e9:.0f} ns/record")
    await log.flush()
    await storage.close()


async def group_throughput(root: Path, tasks: int = 256, seconds: float = 3.0) -> None:
    storage = FileStorage(root / "group", WalConfig())
    log, _ = storage.open_log("q", Durability.GROUP)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            future = log.commit(log.append(1, BODY))
            if future is not None:
                await future
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    took = time.perf_counter() - started
    assert storage._ctx is not None
    rounds = storage._ctx.flusher.rounds
    print(
        f"GROUP, {tasks} tasks awaiting commit: {done / took:,.0f} records/s "
        f"({rounds / took:,.0f} fsync rounds/s, {done / max(rounds, 1):.0f} records per fsync)"
    )
    await storage.close()


async def async_throughput(root: Path, n: int = 1_000_000) -> None:
    storage = FileStorage(root / "async", WalConfig())
    log, _ = storage.open_log("q", Durability.ASYNC)
    started = time.perf_counter()
    for i in range(n):
        log.append(1, BODY)
        if i % 1000 == 0:
            await asyncio.sleep(0)  # let timers run, as a real server would
    took = time.perf_counter() - started
    print(f"ASYNC append throughput, 128 B: {n / took:,.0f} records/s (across segment rolls)")
    await log.flush()
    await storage.close()


async def sync_latency(root: Path, n: int = 2000) -> None:
    storage = FileStorage(root / "sync", WalConfig())
    log, _ = storage.open_log("q", Durability.SYNC)
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        future = log.commit(log.append(1, BODY))
        assert future is not None
        await future
        latencies.append(time.perf_counter() - t0)
    took = time.perf_counter() - started
    latencies.sort()
    p50 = statistics.median(latencies) * 1e3
    p99 = latencies[int(n * 0.99)] * 1e3
    print(f"SYNC, one writer: {n / took:,.0f} ops/s, p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    await storage.close()


async def recovery_speed(root: Path, n: int = 1_000_000) -> None:
    storage = FileStorage(root / "recover", WalConfig())
    log, _ = storage.open_log("q", Durability.ASYNC)
    for i in range(n):
        log.append(1, BODY)
        if i % 10000 == 0:
            await asyncio.sleep(0)
    await storage.close()
    storage = FileStorage(root / "recover", WalConfig())
    started = time.perf_counter()
    log, recovery = storage.open_log("q", Durability.GROUP)
    count = sum(1 for _ in recovery.records)
    took = time.perf_counter() - started
    assert count == n
    print(
        f"recovery: {n:,} records of 128 B in {took:.2f} s = {n / took:,.0f} records/s (open_log + iterate)"
    )
    await storage.close()


async def dirty_logs(root: Path, logs: int = 100, threads: int = 8, rounds: int = 20) -> None:
    storage = FileStorage(root / f"dirty{threads}", WalConfig(segment_size=4 * 2**20, flush_threads=threads))
    opened = [storage.open_log(f"q{i}", Durability.GROUP)[0] for i in range(logs)]
    assert storage._ctx is not None
    flusher = storage._ctx.flusher
    times = []
    for _ in range(rounds):
        futures = [log.commit(log.append(1, BODY)) for log in opened]
        started = time.perf_counter()
        await asyncio.gather(*(f for f in futures if f is not None))
        times.append(time.perf_counter() - started)
        assert flusher.last_round_files == logs
    inner = flusher.last_round_seconds
    print(
        f"{logs} dirty logs, flush_threads={threads}: one round (fdatasync of {logs} files) "
        f"median {statistics.median(times) * 1e3:.2f} ms commit-to-ack, "
        f"last round in flusher {inner * 1e3:.2f} ms"
    )
    await storage.close()


async def main(root: Path) -> None:
    await hot_path(root)
    await group_throughput(root)
    await async_throughput(root)
    await sync_latency(root)
    await recovery_speed(root)
    await dirty_logs(root, threads=1)
    await dirty_logs(root, threads=8)


if __name__ == "__main__":
    given = len(sys.argv) > 1
    base = Path(sys.argv[1]) if given else Path(tempfile.mkdtemp(prefix="spitfire-bench-", dir="/var/tmp"))
    try:
        uvloop.run(main(base))
    finally:
        if not given:
            shutil.rmtree(base, ignore_errors=True)
