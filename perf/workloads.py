"""Spitfire's per-workload benchmarks: one function per workload, run against a server URL.

Each workload is ``async def fn(urls, cfg) -> dict`` where ``urls`` maps a transport (tcp, quic,
http) to the server's address and ``cfg`` holds its bounded configuration (a job count, a deadline
in seconds, a seed). It returns flat figures: ``jobs``, ``seconds``, ``jobs_per_s`` and, where
latency is measured, ``p50_ms`` .. ``max_ms`` read from an HDR histogram. Workers are real
``spitfire worker`` processes, started and stopped here by PID; producers of the fan-out workload
are ``python -m perf.workloads produce URL CONFIG`` processes.

The workload names and config keys shared with the peers (perf/peers) are ``enqueue-single``
{jobs, inflight}, ``enqueue-batch`` {jobs, batch}, ``drain`` {jobs, workers}, ``open-loop``
{rate, seconds}, ``enqueue-threads`` {jobs, threads} and ``enqueue-one`` {jobs}, plus the ways of
using Spitfire that only Spitfire runs (``enqueue-asyncio``, ``drain-sync``, ``drain-async``):
see `PEER_WORKLOADS`.

Every workload's client runs on uvloop unless its config says ``"loop": "asyncio"``; the sync
`spitfire.Client` of ``sync-threads`` and ``sync-one`` runs on its own private loop, as in any
application.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

import spitfire
from perf.net_workloads import LOOPS, drain_result, open_loop, payload, run_tuned, unfinished
from perf.open_loop import HIST_MAX_US
from perf.report import Figure, median, print_table, write_json
from perf.server_proc import ServerProcess, free_port, split_cpus, stop_process

ROOT = Path(__file__).resolve().parent.parent
#: Seconds any workload may run at most unless its config says ``deadline``.
DEFAULT_DEADLINE = 120.0
#: How often the drain loops ask the server for its counts.
POLL_S = 0.01
#: The job every workload enqueues (perf/noop_app.py runs it and does nothing).
JOB = "noop"

Urls = dict[str, str]
Result = dict[str, Any]
#: One job to enqueue: (queue, payload, enqueue options).
JobSpec = tuple[str, Any, dict[str, Any]]


# -- histograms ------------------------------------------------------------------------------------


def new_histogram() -> HdrHistogram:
    """1 us .. 60 s at 3 significant digits (as the open-loop workload of perf/net_workloads.py)."""
    return HdrHistogram(1, HIST_MAX_US, 3)


def record(hist: HdrHistogram, seconds: float) -> None:
    """Record one latency, clamped to the histogram's range."""
    hist.record_value(max(1, min(HIST_MAX_US, int(seconds * 1e6))))


def percentiles_ms(hist: HdrHistogram, prefix: str = "") -> Result:
    """p50, p90, p99, p999 and max of ``hist`` in milliseconds, keyed ``<prefix>p50_ms`` etc."""
    if hist.get_total_count() == 0:
        return {}
    out = {
        f"{prefix}p{name}_ms": hist.get_value_at_percentile(p) / 1e3
        for name, p in (("50", 50.0), ("90", 90.0), ("99", 99.0), ("999", 99.9))
    }
    out[f"{prefix}max_ms"] = hist.get_max_value() / 1e3
    return out


# -- building blocks --------------------------------------------------------------------------------


def deadline_of(cfg: dict[str, Any]) -> float:
    """The monotonic time by which the workload must stop."""
    return time.monotonic() + float(cfg.get("deadline", DEFAULT_DEADLINE))


def sized_payload(i: int, body_bytes: int) -> dict[str, Any]:
    """`payload` with a body of ``body_bytes`` characters (64 KiB payloads: 65,536)."""
    doc = payload(i)
    doc["body"] = "x" * body_bytes
    return doc


async def enqueue_closed(
    client: spitfire.AsyncClient,
    jobs: int,
    inflight: int,
    job: Callable[[int], JobSpec],
    deadline: float,
    ids: dict[int, str] | None = None,
) -> Result:
    """Enqueue jobs ``job(0) .. job(jobs - 1)`` one per request, ``inflight`` at once (closed loop).

    Latency is each request's round trip into an HDR histogram; ``jobs_per_s`` counts the jobs the
    server acknowledged over the whole loop. ``ids``, if given, gets each new job's id by index.
    """
    hist = new_histogram()
    counter = iter(range(jobs))
    done = 0

    async def producer() -> None:
        nonlocal done
        for i in counter:
            if time.monotonic() > deadline:
                return
            queue, body, options = job(i)
            t0 = time.perf_counter()
            job_id = await client.enqueue(queue, JOB, body, **options)
            record(hist, time.perf_counter() - t0)
            done += 1
            if ids is not None:
                ids[i] = job_id

    await client.ping()
    start = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(inflight)))
    elapsed = time.perf_counter() - start
    return {"jobs": done, "seconds": elapsed, "jobs_per_s": done / elapsed, **percentiles_ms(hist)}


async def enqueue_batches(
    client: spitfire.AsyncClient,
    queue: str,
    jobs: int,
    batch: int,
    inflight: int,
    deadline: float,
    name: str = JOB,
) -> Result:
    """Enqueue ``jobs`` jobs ``batch`` per request, ``inflight`` requests at once; latency per request."""
    hist = new_histogram()
    parts = iter(range(0, jobs, batch))
    done = 0

    async def producer() -> None:
        nonlocal done
        for s in parts:
            if time.monotonic() > deadline:
                return
            bodies = [payload(i) for i in range(s, min(jobs, s + batch))]
            t0 = time.perf_counter()
            ids = await client.enqueue_many(queue, name, bodies)
            record(hist, time.perf_counter() - t0)
            done += len(ids)

    await client.ping()
    start = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(inflight)))
    elapsed = time.perf_counter() - start
    return {"jobs": done, "seconds": elapsed, "jobs_per_s": done / elapsed, **percentiles_ms(hist)}


#: A drain's ``concurrency`` that passes no ``--concurrency``: the worker's own default, as users run it.
DEFAULT_CONCURRENCY = "default"


def concurrency_of(cfg: dict[str, Any], default: int = 256) -> int | str:
    """A workload's worker concurrency: an int, or `DEFAULT_CONCURRENCY` (the worker's default)."""
    value = cfg.get("concurrency", default)
    return DEFAULT_CONCURRENCY if value == DEFAULT_CONCURRENCY else int(value)


def concurrency_arg(text: str) -> int | str:
    """``--concurrency``'s type: a positive int, or ``default`` for the worker's own default."""
    if text == DEFAULT_CONCURRENCY:
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--concurrency takes a number or 'default', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--concurrency must be at least 1 (or 'default')")
    return value


def worker_command(
    url: str, queues: Sequence[str], concurrency: int | str, prefetch: int | None = None
) -> list[str]:
    """The `spitfire worker perf.noop_app:app` command line; no ``--concurrency`` for
    `DEFAULT_CONCURRENCY`, no ``--prefetch`` for None (the worker's own defaults)."""
    cli = str(Path(sys.executable).with_name("spitfire"))
    cmd = [cli, "worker", "perf.noop_app:app", "--queues", ",".join(queues), "--url", url]
    if concurrency != DEFAULT_CONCURRENCY:
        cmd += ["--concurrency", str(concurrency)]
    if prefetch is not None:
        cmd += ["--prefetch", str(prefetch)]
    return [*cmd, "--log-level", "warning"]


@contextmanager
def workers(
    url: str, queues: Sequence[str], count: int, concurrency: int | str, prefetch: int | None = None
) -> Iterator[list[Any]]:
    """``count`` `spitfire worker perf.noop_app:app` processes on ``queues``; stopped by PID on exit.

    ``concurrency`` is passed as ``--concurrency``, except `DEFAULT_CONCURRENCY`: then the worker
    runs at its own default; ``prefetch`` is passed as ``--prefetch`` unless None.
    """
    cmd = worker_command(url, queues, concurrency, prefetch)
    env = dict(os.environ, SPITFIRE_URL=url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            stop_process(proc)


async def left_in(client: spitfire.AsyncClient, queues: Sequence[str]) -> int:
    """Jobs of ``queues`` not finished yet."""
    if len(queues) == 1:
        return await unfinished(client, queues[0])
    stats = await client.stats()
    total = 0
    for name in queues:
        q = stats.queues.get(name)
        if q is not None:
            total += sum(q.counts[s] for s in ("scheduled", "enqueued", "reserved", "running", "retrying"))
    return total


async def wait_drained(
    client: spitfire.AsyncClient, queues: Sequence[str], procs: Sequence[Any], deadline: float
) -> tuple[float, float | None, int]:
    """Poll until ``queues`` hold no unfinished job: (end time, time the first job finished, left)."""
    waiting = await left_in(client, queues)
    first: float | None = None
    left = waiting
    while left and time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a worker exited early ({dead[0].returncode})")
        await asyncio.sleep(POLL_S)
        left = await left_in(client, queues)
        if first is None and left < waiting:
            first = time.perf_counter()
    return time.perf_counter(), first, left


async def drain_queues(
    client: spitfire.AsyncClient, url: str, queues: Sequence[str], cfg: dict[str, Any]
) -> Result:
    """Start ``workers`` worker processes on ``queues`` (already filled) and time them until empty.

    The clock starts when the workers are launched (their start-up is included);
    ``steady_jobs_per_s`` counts from the first finished job.
    """
    deadline = deadline_of(cfg)
    waiting = await left_in(client, queues)
    start = time.perf_counter()
    prefetch = None if cfg.get("prefetch") is None else int(cfg["prefetch"])
    with workers(url, queues, int(cfg.get("workers", 1)), concurrency_of(cfg), prefetch) as procs:
        end, first, left = await wait_drained(client, queues, procs, deadline)
    return drain_result(waiting - left, start, first, end)


def prefixed(prefix: str, result: Result) -> Result:
    """``result`` with every key prefixed (``enqueue_jobs_per_s``, ``drain_jobs_per_s`` ...)."""
    return {f"{prefix}{k}": v for k, v in result.items()}


def queue_name(cfg: dict[str, Any], default: str) -> str:
    return str(cfg.get("queue", default))


# -- the workloads ----------------------------------------------------------------------------------


async def single(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Single-job enqueues over tcp or quic, ``inflight`` outstanding (closed loop)."""
    transport = cfg.get("transport", "tcp")
    if transport == "http":
        return await single_http(urls, cfg)
    queue = queue_name(cfg, "bench")
    # ``coalesce`` False: one request per call (the A/B of perf/coalesce_ab.py).
    async with spitfire.AsyncClient(urls[transport], coalesce=bool(cfg.get("coalesce", True))) as client:
        return await enqueue_closed(
            client, int(cfg["jobs"]), int(cfg.get("inflight", 64)),
            lambda i: (queue, payload(i), {}), deadline_of(cfg),
        )  # fmt: skip


async def single_http(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Single-job enqueues over HTTP: ``connections`` keep-alive connections, ``depth`` pipelined each
    (perf/http_bench.py's client; it counts answers, not per-request latency)."""
    from perf.http_bench import blast

    queue = queue_name(cfg, "bench")
    body = json.dumps({"name": JOB, "payload": payload(1)}).encode()
    jobs, connections, depth = int(cfg["jobs"]), int(cfg.get("connections", 16)), int(cfg.get("depth", 4))
    elapsed, statuses = await asyncio.wait_for(
        blast(urls["http"], f"/api/queues/{queue}/jobs", body, jobs, connections, depth),
        timeout=float(cfg.get("deadline", DEFAULT_DEADLINE)),
    )
    if set(statuses) != {201}:
        raise RuntimeError(f"HTTP single enqueue: unexpected answers {statuses}")
    return {"jobs": jobs, "seconds": elapsed, "jobs_per_s": jobs / elapsed}


async def batch(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Jobs enqueued ``batch`` per request, ``inflight`` requests outstanding."""
    async with spitfire.AsyncClient(urls[cfg.get("transport", "tcp")]) as client:
        return await enqueue_batches(
            client, queue_name(cfg, "bench"), int(cfg["jobs"]), int(cfg.get("batch", 100)),
            int(cfg.get("inflight", 4)), deadline_of(cfg),
        )  # fmt: skip


async def drain(urls: Urls, cfg: dict[str, Any]) -> Result:
    """End to end: enqueue ``jobs`` first (batches, not timed), then time ``workers`` worker processes
    delivering and acking them all."""
    url = urls[cfg.get("transport", "tcp")]
    # perf/noop_app.py: `noop` (async def) on "bench", `noop_sync` (def, on the worker's threads) on
    # "bench-sync".
    sync = cfg.get("handler", "async") == "sync"
    queue = queue_name(cfg, "bench-sync" if sync else "bench")
    name = "noop_sync" if sync else JOB
    async with spitfire.AsyncClient(url) as client:
        await enqueue_batches(client, queue, int(cfg["jobs"]), 1000, 4, deadline_of(cfg), name)
        result = await drain_queues(client, url, [queue], cfg)
    return {**result, "handler": "sync" if sync else "async", "concurrency": concurrency_of(cfg)}


def enqueue_sync_threads(url: str, queue: str, jobs: int, threads: int, deadline: float) -> Result:
    """``jobs`` single enqueues through ONE `spitfire.Client` shared by ``threads`` threads, each
    making one blocking call at a time (a Flask or Django app's threads); latency per call."""
    lock = threading.Lock()
    counter = iter(range(jobs))
    hists = [new_histogram() for _ in range(threads)]
    errors: list[BaseException] = []

    def producer(client: spitfire.Client, hist: HdrHistogram) -> None:
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                client.enqueue(queue, JOB, payload(i))
                record(hist, time.perf_counter() - t0)
        except BaseException as exc:  # re-raised in the caller's thread, after the others stop
            errors.append(exc)

    with spitfire.Client(url) as client:
        client.ping()  # connect before the clock starts
        pool = [threading.Thread(target=producer, args=(client, h), daemon=True) for h in hists]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:  # each stops at the deadline, within one call (bounded by the client's timeout)
            t.join()
        elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    hist = new_histogram()
    for h in hists:
        hist.add(h)
    done = hist.get_total_count()
    return {"jobs": done, "seconds": elapsed, "jobs_per_s": done / elapsed, **percentiles_ms(hist)}


async def sync_threads(urls: Urls, cfg: dict[str, Any]) -> Result:
    """The sync `spitfire.Client` shared by ``threads`` (8) threads, one call at a time each."""
    url, threads = urls[cfg.get("transport", "tcp")], int(cfg.get("threads", 8))
    result = await asyncio.to_thread(
        enqueue_sync_threads, url, queue_name(cfg, "bench"), int(cfg["jobs"]), threads, deadline_of(cfg)
    )
    return {**result, "threads": threads}


async def sync_one(urls: Urls, cfg: dict[str, Any]) -> Result:
    """The sync `spitfire.Client` from one thread, one call at a time: each call waits for its own
    acknowledgement (one fdatasync per call under ``--durability group``)."""
    return await sync_threads(urls, {**cfg, "threads": 1})


async def open_loop_tcp(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Open loop: ``rate`` enqueues/s for ``seconds``, latency from each scheduled send time."""
    return await open_loop(urls[cfg.get("transport", "tcp")], cfg)


async def fill_then_drain(
    urls: Urls, cfg: dict[str, Any], queues: Sequence[str], job: Callable[[int], JobSpec]
) -> Result:
    """Enqueue with ``job`` (timed, ``enqueue_*`` figures), then drain ``queues`` (``drain_*``)."""
    url = urls[cfg.get("transport", "tcp")]
    async with spitfire.AsyncClient(url) as client:
        enq = await enqueue_closed(
            client, int(cfg["jobs"]), int(cfg.get("inflight", 64)), job, deadline_of(cfg)
        )
        dr = await drain_queues(client, url, queues, cfg)
    return {**prefixed("enqueue_", enq), **prefixed("drain_", dr), "jobs": enq["jobs"]}


async def priorities(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Single enqueues with priorities 0..10 drawn from the seed, then a drain by priority."""
    queue = queue_name(cfg, "bench-prio")
    rng = random.Random(int(cfg.get("seed", 1)))
    prio = [rng.randint(0, 10) for _ in range(int(cfg["jobs"]))]
    return await fill_then_drain(urls, cfg, [queue], lambda i: (queue, payload(i), {"priority": prio[i]}))


async def large_payload(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Single enqueues of ``payload_bytes`` (64 KiB) payloads, then a drain."""
    queue = queue_name(cfg, "bench-large")
    size = int(cfg.get("payload_bytes", 65_536))
    body = sized_payload(0, size)
    result = await fill_then_drain(urls, cfg, [queue], lambda i: (queue, body, {}))
    result["enqueue_mib_per_s"] = result["enqueue_jobs_per_s"] * size / 2**20
    return result


async def many_queues(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Single enqueues spread over ``queues`` (100) queues in a seeded order, then workers drain
    all of them at once."""
    prefix = queue_name(cfg, "bench-q")
    names = [f"{prefix}{k:03d}" for k in range(int(cfg.get("queues", 100)))]
    rng = random.Random(int(cfg.get("seed", 1)))
    order = [rng.randrange(len(names)) for _ in range(int(cfg["jobs"]))]
    return await fill_then_drain(urls, cfg, names, lambda i: (names[order[i]], payload(i), {}))


async def delayed(urls: Urls, cfg: dict[str, Any]) -> Result:
    """Jobs delayed by 0..``spread`` seconds (seeded) while workers run: the enqueue figures, and
    how late a sample of them started (``late_*``: reserved time minus due time)."""
    url = urls[cfg.get("transport", "tcp")]
    queue = queue_name(cfg, "bench-delayed")
    jobs, spread = int(cfg["jobs"]), float(cfg.get("spread", 2.0))
    rng = random.Random(int(cfg.get("seed", 1)))
    delays = [rng.uniform(0.0, spread) for _ in range(jobs)]
    ids: dict[int, str] = {}
    async with spitfire.AsyncClient(url) as client:
        with workers(url, [queue], int(cfg.get("workers", 1)), concurrency_of(cfg)) as procs:
            deadline = deadline_of(cfg)
            start = time.perf_counter()
            enq = await enqueue_closed(
                client, jobs, int(cfg.get("inflight", 64)),
                lambda i: (queue, payload(i), {"delay": delays[i]}), deadline, ids,
            )  # fmt: skip
            end, _, left = await wait_drained(client, [queue], procs, deadline)
        sample = rng.sample(sorted(ids), min(len(ids), int(cfg.get("sample", 1000))))
        late = await lateness(client, {ids[i]: delays[i] for i in sample})
    return {**prefixed("enqueue_", enq), "jobs": enq["jobs"], "left": left, "seconds": end - start, **late}


async def lateness(client: spitfire.AsyncClient, delays: dict[str, float]) -> Result:
    """How late the jobs of ``delays`` (id -> delay asked for) started, over those the server still
    remembers (succeeded jobs leave a bounded history): ``late_*`` is the time each was first
    reserved minus when it was due (its scheduled time plus its delay), ``promote_*`` the same for
    the time it became enqueued (the scheduler's share)."""
    from spitfire.errors import NotFound

    started, promoted = new_histogram(), new_histogram()
    for job_id, delay in delays.items():
        try:
            job = await client.get(job_id)
        except NotFound:
            continue
        at = {t.state: t.at for t in reversed(job.history)}  # the first time of each state
        if "scheduled" not in at:
            continue
        due = at["scheduled"] + delay
        if "enqueued" in at:
            record(promoted, max(0.0, at["enqueued"] - due))
        first = min((at[s] for s in ("reserved", "running") if s in at), default=None)
        if first is not None:
            record(started, max(0.0, first - due))
    return {
        "late_sampled": started.get_total_count(),
        **percentiles_ms(started, "late_"),
        **percentiles_ms(promoted, "promote_"),
    }


async def fanout(urls: Urls, cfg: dict[str, Any]) -> Result:
    """``producers`` producer processes and ``workers`` worker processes at once on one queue.

    Producers connect, then all start at the same wall-clock instant; ``enqueue_jobs_per_s`` is the
    jobs they enqueued over the slowest producer's time, ``jobs_per_s`` the jobs run end to end
    (enqueued, delivered, acked) from that instant until the queue is empty.
    """
    url = urls[cfg.get("transport", "tcp")]
    queue = queue_name(cfg, "bench-fanout")
    jobs, producers = int(cfg["jobs"]), int(cfg.get("producers", 8))
    start_at = time.time() + float(cfg.get("warmup", 3.0))
    per = [jobs // producers + (1 if k < jobs % producers else 0) for k in range(producers)]
    deadline = deadline_of(cfg)
    async with spitfire.AsyncClient(url) as client:
        with workers(url, [queue], int(cfg.get("workers", 4)), concurrency_of(cfg, 64)) as wprocs:
            base = {"inflight": int(cfg.get("inflight", 16)), "queue": queue, "start_at": start_at,
                    "deadline": cfg.get("deadline", DEFAULT_DEADLINE)}  # fmt: skip
            procs = [produce_process(url, {**base, "jobs": n}) for n in per]
            outs = await asyncio.gather(*(asyncio.to_thread(p.communicate) for p in procs))
            await asyncio.sleep(max(0.0, start_at - time.time()))
            _, _, left = await wait_drained(client, [queue], wprocs, deadline)
            end_wall = time.time()
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
    enqueued = sum(int(r["jobs"]) for r in results)
    enqueue_s = max(float(r["seconds"]) for r in results)
    elapsed = end_wall - start_at
    return {
        "jobs": enqueued - left,
        "seconds": elapsed,
        "jobs_per_s": (enqueued - left) / elapsed,
        "enqueue_jobs": enqueued,
        "enqueue_seconds": enqueue_s,
        "enqueue_jobs_per_s": enqueued / enqueue_s,
        "enqueue_p99_ms_worst": max(float(r.get("p99_ms", 0.0)) for r in results),
        "left": left,
    }


def produce_process(url: str, cfg: dict[str, Any]) -> subprocess.Popen[bytes]:
    """One `python -m perf.workloads produce` process (see `produce`)."""
    cmd = [sys.executable, "-m", "perf.workloads", "produce", url, json.dumps(cfg)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)


async def produce(url: str, cfg: dict[str, Any]) -> Result:
    """A fan-out producer: connect, wait for ``start_at`` (epoch seconds), enqueue ``jobs``."""
    queue = queue_name(cfg, "bench-fanout")
    async with spitfire.AsyncClient(url) as client:
        await client.ping()
        await asyncio.sleep(max(0.0, float(cfg.get("start_at", 0.0)) - time.time()))
        return await enqueue_closed(
            client, int(cfg["jobs"]), int(cfg.get("inflight", 16)),
            lambda i: (queue, payload(i), {}), deadline_of(cfg),
        )  # fmt: skip


Workload = Callable[[Urls, dict[str, Any]], Coroutine[Any, Any, Result]]

#: Every workload by subcommand name.
WORKLOADS: dict[str, Workload] = {
    "single": single,
    "sync-threads": sync_threads,
    "sync-one": sync_one,
    "batch": batch,
    "drain": drain,
    "open-loop": open_loop_tcp,
    "priorities": priorities,
    "delayed": delayed,
    "large-payload": large_payload,
    "many-queues": many_queues,
    "fanout": fanout,
}

#: The peers' workload names (perf/peers) and the Spitfire workload that runs each with the same keys;
#: then the ways of using Spitfire that ``python -m perf peers`` measures beside them (perf/compare.py
#: gives each its config: ``loop``, ``handler``, ``concurrency``).
PEER_WORKLOADS = {
    "enqueue-single": "single",
    "enqueue-batch": "batch",
    "drain": "drain",
    "open-loop": "open-loop",
    "enqueue-threads": "sync-threads",
    "enqueue-one": "sync-one",
    "enqueue-asyncio": "single",
    "drain-sync": "drain",
    "drain-async": "drain",
}


# -- running a workload against its own server ------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A subcommand: its config defaults, what ``--quick`` shrinks, the figures it reports."""

    name: str
    help: str
    defaults: dict[str, Any]
    quick: dict[str, Any]
    #: (label, result key, unit); keys a run did not report are left out of the table.
    figures: tuple[tuple[str, str, str], ...]
    #: Transports it can run over.
    transports: tuple[str, ...] = ("tcp", "quic")
    #: A latency workload: the client and the server are pinned to separate CPUs.
    latency: bool = False
    #: Config keys without a default that still get their flag (``--connections`` of HTTP).
    flags: tuple[str, ...] = ()


def _latency(prefix: str = "", what: str = "enqueue") -> tuple[tuple[str, str, str], ...]:
    return tuple((f"{what} {p}", f"{prefix}{p}_ms", "ms") for p in ("p50", "p90", "p99", "p999", "max"))


_DRAIN = (
    ("drain, end to end", "drain_jobs_per_s", "jobs/s"),
    ("drain after the first job", "drain_steady_jobs_per_s", "jobs/s"),
)
_ENQ = (("enqueue", "enqueue_jobs_per_s", "jobs/s"), *_latency("enqueue_"))
_WORKERS = {"workers": 1, "concurrency": 256}

SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec(
            "single",
            "single-job enqueue (tcp, quic or http), closed loop",
            {"jobs": 20_000, "inflight": 64},
            {"jobs": 5_000},
            (("enqueue", "jobs_per_s", "jobs/s"), *_latency()),
            ("tcp", "quic", "http"),
            flags=("connections", "depth"),
        ),
        Spec(
            "sync-threads",
            "single-job enqueue from the sync Client shared by --threads threads, one call at a time each",
            {"jobs": 20_000, "threads": 8},
            {"jobs": 5_000},
            (("enqueue", "jobs_per_s", "jobs/s"), *_latency()),
        ),
        Spec(
            "sync-one",
            "single-job enqueue from the sync Client in one thread, one call at a time",
            {"jobs": 5_000},
            {"jobs": 1_000},
            (("enqueue", "jobs_per_s", "jobs/s"), *_latency()),
        ),
        Spec(
            "batch",
            "batch enqueue, 100 jobs per request",
            {"jobs": 100_000, "batch": 100, "inflight": 4},
            {"jobs": 20_000},
            (("enqueue", "jobs_per_s", "jobs/s"), *_latency(what="request")),
        ),
        Spec(
            "drain",
            "end-to-end drain (enqueue, deliver, ack) by worker processes",
            {"jobs": 20_000, **_WORKERS, "handler": "async"},
            {"jobs": 5_000},
            (
                ("drain, end to end", "jobs_per_s", "jobs/s"),
                ("drain after the first job", "steady_jobs_per_s", "jobs/s"),
            ),
            flags=("prefetch",),
        ),
        Spec(
            "open-loop",
            "open-loop enqueue latency at --rate (no coordinated omission)",
            {"rate": 5_000, "seconds": 10},
            {"seconds": 3},
            (("achieved", "achieved_per_s", "jobs/s"), *_latency()),
            latency=True,
        ),
        Spec(
            "priorities",
            "single enqueues with mixed priorities 0..10, then a drain",
            {"jobs": 20_000, "inflight": 64, **_WORKERS},
            {"jobs": 5_000},
            (*_ENQ, *_DRAIN),
        ),
        Spec(
            "delayed",
            "jobs delayed 0..spread s while workers run; how late they start",
            {"jobs": 10_000, "inflight": 64, "spread": 2.0, "sample": 1000, **_WORKERS},
            {"jobs": 3_000},
            (*_ENQ, *_latency("late_", "start lateness"), ("promoted late p99", "promote_p99_ms", "ms")),
        ),
        Spec(
            "large-payload",
            "64 KiB payloads: single enqueues, then a drain",
            {"jobs": 5_000, "inflight": 16, "payload_bytes": 65_536, **_WORKERS},
            {"jobs": 1_000},
            (*_ENQ, ("enqueue", "enqueue_mib_per_s", "MiB/s"), *_DRAIN),
        ),
        Spec(
            "many-queues",
            "single enqueues over 100 queues, then workers drain all of them",
            {"jobs": 20_000, "queues": 100, "inflight": 64, **_WORKERS},
            {"jobs": 5_000},
            (*_ENQ, *_DRAIN),
        ),
        Spec(
            "fanout",
            "many producer and worker processes at once on one queue",
            {"jobs": 40_000, "producers": 8, "workers": 4, "inflight": 16, "concurrency": 64},
            {"jobs": 10_000, "producers": 4, "workers": 2},
            (
                ("end to end", "jobs_per_s", "jobs/s"),
                ("enqueue, all producers", "enqueue_jobs_per_s", "jobs/s"),
                ("enqueue p99, worst producer", "enqueue_p99_ms_worst", "ms"),
            ),
        ),
    )
}

#: Config keys with their own flag (flag, config key, type, help).
OPTIONS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("--inflight", "inflight", int, "requests outstanding per client"),
    ("--batch", "batch", int, "jobs per batch request"),
    ("--workers", "workers", int, "worker processes"),
    ("--concurrency", "concurrency", concurrency_arg, "jobs each worker runs at once, or 'default'"),
    ("--handler", "handler", str, "drain: the no-op job as an async def (async) or a plain def (sync)"),
    ("--prefetch", "prefetch", int, "drain: the workers' --prefetch (default: the worker's own)"),
    ("--rate", "rate", float, "offered enqueues per second"),
    ("--producers", "producers", int, "producer processes"),
    ("--threads", "threads", int, "threads sharing the sync Client"),
    ("--queues", "queues", int, "queues to spread the jobs over"),
    ("--spread", "spread", float, "delays are drawn from 0..SPREAD seconds"),
    ("--payload-bytes", "payload_bytes", int, "payload body size"),
    ("--connections", "connections", int, "HTTP keep-alive connections"),
    ("--depth", "depth", int, "HTTP requests pipelined per connection"),
)


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts TCP connections."""
    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def run_once(
    name: str, cfg: dict[str, Any], durability: str = "group", url: str | None = None, pin: bool = True
) -> Result:
    """Run workload ``name`` once: against ``url``, or against a server of its own (``durability``,
    temp data dir, stopped by PID), the client pinned apart from the server for latency workloads."""
    spec, fn = SPECS[name], WORKLOADS[name]
    loop = str(cfg.get("loop", "uvloop"))
    if url is not None:
        transport = url.split("://", 1)[0]
        result = run_tuned(lambda: fn({transport: url}, {**cfg, "transport": transport}), loop)
        result["pinned"], result["loop"] = None, loop
        return result
    transport = str(cfg.get("transport", "tcp"))
    cpus = split_cpus() if pin and spec.latency else None
    client_cpus, server_cpus = cpus or (None, None)
    http_port = free_port()
    previous = os.sched_getaffinity(0)
    extra = ["--http", f"127.0.0.1:{http_port}"]
    with ServerProcess(durability, quic=transport == "quic", extra=extra, cpus=server_cpus) as server:
        if transport == "http":
            wait_port(http_port)
        urls = {"tcp": server.url("tcp"), "quic": server.url("quic"), "http": f"http://127.0.0.1:{http_port}"}
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        try:
            result = run_tuned(lambda: fn(urls, cfg), loop)
        finally:
            os.sched_setaffinity(0, previous)
    result["pinned"] = {"client": sorted(cpus[0]), "server": sorted(cpus[1])} if cpus else None
    result["loop"] = loop
    return result


def figures_of(spec: Spec, cfg: dict[str, Any], results: Sequence[Result]) -> list[Figure]:
    """The spec's figures, each the median over ``results`` (one per repeat)."""
    title = f"{spec.name} {cfg.get('transport', 'tcp')}"
    figures = []
    for label, key, unit in spec.figures:
        runs = [float(r[key]) for r in results if r.get(key) is not None]
        if runs:
            figures.append(Figure(f"{title}: {label}", median(runs), unit, runs=runs))
    return figures


def add_subcommands(sub: Any) -> None:
    """One subparser per workload on ``sub`` (argparse's subparsers action)."""
    for spec in SPECS.values():
        p = sub.add_parser(spec.name, help=spec.help, description=spec.help)
        add_arguments(p, spec)


def add_arguments(p: argparse.ArgumentParser, spec: Spec) -> None:
    """The flags every workload takes, plus those of its own config keys."""
    p.add_argument("--jobs", type=int, help=f"jobs to enqueue (default {spec.defaults.get('jobs', '-')})")
    p.add_argument(
        "--seconds", type=float,
        help="open-loop: how long to offer load; others: the time bound (default 120)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    p.add_argument(
        "--url", help="target a running server (tcp://, quic:// or http://) instead of starting one"
    )
    p.add_argument("--durability", default="group", choices=["group", "sync", "async"], help="of our server")
    p.add_argument("--repeat", type=int, default=1, help="runs; the table shows medians")
    p.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    p.add_argument("--transport", default="tcp", choices=spec.transports)
    p.add_argument("--no-pin", action="store_true", help="let the client share CPUs with the server")
    p.add_argument(
        "--loop", default="uvloop", choices=LOOPS,
        help="the load generator's event loop (default uvloop; the sync Client runs its own)",
    )  # fmt: skip
    for flag, key, kind, text in OPTIONS:
        if key in spec.defaults:
            p.add_argument(flag, dest=key, type=kind, help=f"{text} (default {spec.defaults[key]})")
        elif key in spec.flags:
            p.add_argument(flag, dest=key, type=kind, help=text)


def config_of(spec: Spec, args: argparse.Namespace) -> dict[str, Any]:
    """The workload's config from its defaults, ``--quick`` and the flags given."""
    cfg: dict[str, Any] = {**spec.defaults, **(spec.quick if args.quick else {})}
    for _, key, _, _ in OPTIONS:
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    if args.jobs is not None:
        cfg["jobs"] = args.jobs
    if args.seconds is not None:
        cfg["seconds" if spec.latency else "deadline"] = args.seconds
    cfg["seed"] = args.seed
    cfg["loop"] = args.loop
    cfg["transport"] = args.url.split("://", 1)[0] if args.url else args.transport
    return cfg


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """``python -m perf NAME [flags]``: run, print the table, write perf/results/NAME-<transport>-*.json."""
    spec = SPECS[name]
    parser = argparse.ArgumentParser(prog=f"python -m perf {name}", description=spec.help)
    add_arguments(parser, spec)
    args = parser.parse_args(argv)
    cfg = config_of(spec, args)
    if cfg["transport"] not in spec.transports:
        parser.error(f"{name} runs over {', '.join(spec.transports)}, not {cfg['transport']}")
    results = []
    for i in range(args.repeat):
        print(f"  {name} {cfg['transport']} run {i + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        results.append(run_once(name, cfg, args.durability, args.url, pin=not args.no_pin))
    figures = figures_of(spec, cfg, results)
    print_table(figures)
    config = {
        "workload": name,
        "durability": None if args.url else args.durability,
        "url": args.url,
        "repeat": args.repeat,
        "quick": args.quick,
        **cfg,
        "raw": results,
    }
    path = write_json(f"{name}-{cfg['transport']}", config, figures)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


def main(argv: Sequence[str]) -> int:
    """``python -m perf.workloads produce URL JSON``: one fan-out producer; prints its result line."""
    if len(argv) != 3 or argv[0] != "produce":
        print("usage: python -m perf.workloads produce URL JSON_CONFIG", file=sys.stderr)
        return 2
    url, cfg = argv[1], json.loads(argv[2])
    print(json.dumps(run_tuned(lambda: produce(url, cfg))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
