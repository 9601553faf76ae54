"""Client-side workloads against a real spitfire-server in another process (the fixed network benchmarks).

Each workload takes the server's URL and a config dict and returns a dict of figures. Payloads are
~100-byte JSON documents (as the peers' benchmarks used), sent as msgpack maps by the SDK. Every
loop is bounded by a job count and a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import spitfire
from perf.open_loop import open_loop_async
from perf.report import percentile
from perf.server_proc import stop_process

T = TypeVar("T")

#: No workload runs longer than this (seconds), whatever its count.
DEADLINE = 300.0


def payload(i: int) -> dict[str, Any]:
    """A ~100-byte JSON document (as JSON; a little smaller as msgpack)."""
    return {"n": i, "to": f"user-{i:08d}@example.com", "subject": "Welcome aboard", "body": "x" * 24}


def payload_json_size() -> int:
    return len(json.dumps(payload(12345678)))


async def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` single-job enqueues from one AsyncClient with ``inflight`` outstanding."""
    jobs, inflight, queue = int(cfg["jobs"]), int(cfg["inflight"]), cfg.get("queue", "bench")
    latencies: list[float] = []
    async with spitfire.AsyncClient(url) as client:
        await client.enqueue(queue, "noop", payload(0))  # connect and create the queue
        counter = iter(range(1, jobs + 1))
        deadline = time.monotonic() + DEADLINE

        async def producer() -> None:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                await client.enqueue(queue, "noop", payload(i))
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(inflight)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "jobs": len(latencies),
        "seconds": elapsed,
        "jobs_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
    }


async def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` jobs enqueued ``batch`` per request with ``inflight`` requests outstanding."""
    jobs, batch, inflight = int(cfg["jobs"]), int(cfg["batch"]), int(cfg["inflight"])
    queue = cfg.get("queue", "bench")
    batches = [[payload(i) for i in range(s, min(jobs, s + batch))] for s in range(0, jobs, batch)]
    done = 0
    async with spitfire.AsyncClient(url) as client:
        await client.enqueue(queue, "noop", payload(0))
        it = iter(batches)
        deadline = time.monotonic() + DEADLINE

        async def producer() -> None:
            nonlocal done
            for part in it:
                if time.monotonic() > deadline:
                    return
                ids = await client.enqueue_many(queue, "noop", part)
                done += len(ids)

        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(inflight)))
        elapsed = time.perf_counter() - start
    return {"jobs": done, "seconds": elapsed, "jobs_per_s": done / elapsed}


#: States of a job that has not finished yet.
UNFINISHED = ("scheduled", "enqueued", "reserved", "running", "retrying")


async def unfinished(client: spitfire.AsyncClient, queue: str) -> int:
    """Jobs of ``queue`` not finished yet (succeeded jobs leave bounded history, so count these)."""
    stats = await client.stats(queue)
    q = stats.queues.get(queue)
    return sum(q.counts[s] for s in UNFINISHED) if q is not None else 0


def attach_py_spy(pid: int, svg: str) -> subprocess.Popen[bytes]:
    """Start py-spy recording process ``pid`` into ``svg`` (stop it with `detach_py_spy`)."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    cmd = [py_spy, "record", "--rate", "200", "--nonblocking", "--pid", str(pid), "-o", svg]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach
    return spy


def detach_py_spy(spy: subprocess.Popen[bytes]) -> None:
    """Stop a py-spy recording; it writes its SVG on SIGINT."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        stop_process(spy)


async def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs first, then time ONE `spitfire worker` process until the last ran.

    The clock starts when the worker process is launched (its start-up is included) and stops when
    the server reports every job succeeded; ``steady_jobs_per_s`` excludes the time to the first one.
    """
    jobs, queue = int(cfg["jobs"]), cfg.get("queue", "bench")
    await enqueue_batch(url, {"jobs": jobs, "batch": 1000, "inflight": 4, "queue": queue})
    env = dict(os.environ, SPITFIRE_URL=url)
    spitfire_cli = str(Path(sys.executable).with_name("spitfire"))
    cmd = [
        spitfire_cli, "worker", "perf.noop_app:app",
        "--queues", queue, "--concurrency", str(cfg.get("concurrency", 256)), "--url", url,
    ]  # fmt: skip
    async with spitfire.AsyncClient(url) as client:
        waiting = await unfinished(client, queue)
        start = time.perf_counter()
        worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        spy = attach_py_spy(worker.pid, cfg["profile"]) if cfg.get("profile") else None
        first: float | None = None
        left = waiting
        try:
            while left and time.perf_counter() - start < DEADLINE:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited early ({worker.returncode})")
                await asyncio.sleep(0.005)
                left = await unfinished(client, queue)
                if first is None and left < waiting:
                    first = time.perf_counter()
            end = time.perf_counter()
        finally:
            if spy is not None:
                detach_py_spy(spy)
            stop_process(worker)
    return drain_result(waiting - left, start, first, end)


def drain_result(ran: int, start: float, first: float | None, end: float) -> dict[str, Any]:
    """A drain's figures: ``ran`` jobs from the workers' launch (``start``) to ``end``; the steady
    rate counts from the first finished job (``first``)."""
    elapsed = end - start
    steady = end - first if first is not None else elapsed
    return {
        "jobs": ran,
        "seconds": elapsed,
        "jobs_per_s": ran / elapsed,
        "steady_jobs_per_s": ran / steady if steady > 0 else 0.0,
    }


async def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Offer ``rate`` enqueues/s for ``seconds`` on a fixed schedule; latency counts from each job's
    scheduled send time (no coordinated omission: a slow answer delays nobody's clock)."""
    rate, seconds, queue = float(cfg["rate"]), float(cfg["seconds"]), cfg.get("queue", "bench")
    async with spitfire.AsyncClient(url) as client:
        await client.enqueue(queue, "noop", payload(0))
        return await open_loop_async(lambda i: client.enqueue(queue, "noop", payload(i)), rate, seconds)


WORKLOADS = {
    "enqueue-single": enqueue_single,
    "enqueue-batch": enqueue_batch,
    "drain": drain,
    "open-loop": open_loop,
}


#: The load generator's collector settings (as the server's, see server/runtime.py): with CPython's
#: defaults its own full collections stalled its loop for 20-50 ms at 20,000 requests/s, and those
#: stalls were counted as the server's latency (A/B at 20k/s offered: p99 20-24 ms -> 6-7 ms).
CLIENT_GC_THRESHOLDS = (50_000, 20, 100)


#: The event loops a load generator can run on (`run_tuned`'s ``loop``).
LOOPS = ("uvloop", "asyncio")


def run_tuned(main: Callable[[], Coroutine[Any, Any, T]], loop: str = "uvloop") -> T:
    """Run ``main()`` on a fresh event loop, with the collector tuned as the server's is.

    ``loop`` is ``"uvloop"`` (the default: the project's own figures) or ``"asyncio"`` (the
    standard library's loop, what an application that does not install uvloop runs on).
    """
    if loop not in LOOPS:
        raise ValueError(f"unknown event loop {loop!r}: choose one of {', '.join(LOOPS)}")
    gc.collect()
    gc.freeze()
    previous = gc.get_threshold()
    gc.set_threshold(*CLIENT_GC_THRESHOLDS)
    try:
        if loop == "asyncio":
            return asyncio.run(main())
        import uvloop

        return uvloop.run(main())
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def run(workload: str, url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one workload on a fresh uvloop loop, with the collector tuned as the server's is."""
    return run_tuned(lambda: WORKLOADS[workload](url, cfg))
