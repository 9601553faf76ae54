"""The peer workload contract and the drivers every adapter shares (pure Python, no peer imports).

An adapter is a module ``perf/peers/adapters/<name>_peer.py`` that exposes::

    PEER = PeerSpec(name="arq", backend="redis", workloads={"enqueue-single": fn, ...})

where each ``fn(service_url: str, cfg: dict) -> dict`` is synchronous (it runs its own event loop
when the peer is async, see `run_async`) and may raise `Skip("reason")`. Adapters import their peer
library at module level freely: they are only imported in the peers venv (``.venv/peers``), by
``python -m perf.peers.runner``. The service behind ``service_url`` belongs to the harness (started
for this comparison, on loopback): an adapter may flush it before a workload.

The workloads are Spitfire's (perf/net_workloads.py), with the same ~100-byte JSON payload:

``enqueue-single`` (cfg: jobs, inflight=64)
    ``jobs`` single-job enqueues with ``inflight`` outstanding, from one process, as the peer's
    client allows (asyncio tasks or threads; the adapter says which in ``notes``).
    Result keys: jobs, seconds, jobs_per_s, p50_ms, p99_ms.
``enqueue-threads`` (cfg: jobs, threads=8)
    ``jobs`` single-job enqueues from ``threads`` OS threads of one process, each thread making one
    blocking call at a time: how a Flask or Django app enqueues (against Spitfire's sync ``Client``
    shared by 8 threads). One client shared by the threads where the peer's docs say it is
    thread-safe, else one per thread; ``notes`` says which. A peer with only an asyncio client uses
    its sync API if it has one, else `Skip` with the reason. BullMQ: ``threads`` concurrent promise
    chains on one Queue (Node has no threads to block); Sidekiq: ``threads`` Ruby threads.
    Result keys: jobs, seconds, jobs_per_s, p50_ms, p99_ms (`enqueue_threads`).
``enqueue-one`` (cfg: jobs)
    ``jobs`` enqueues one call at a time from one thread (or one asyncio task, one promise chain):
    the latency bound, one round trip and one fsync per call. Result keys: as enqueue-single
    (`enqueue_one_by_one`, or `enqueue_concurrently` with one task).
``enqueue-batch`` (cfg: jobs, batch=100, inflight=4)
    The peer's bulk enqueue API (one call, one round trip, for ``batch`` jobs); `Skip` when the
    peer has none. Result keys: jobs, seconds, jobs_per_s.
``drain`` (cfg: jobs, processes=1, deadline=DEADLINE)
    Enqueue ``jobs`` no-op jobs first, then launch ``processes`` of the peer's real worker
    processes with its own CLI, each at the peer's best documented concurrency for no-op jobs
    (recorded in ``config``), and time from launch until the last job has run (the peer's own
    result/queue-length API); the workers are stopped by PID (`drain_with_workers`). Result keys:
    jobs, seconds, jobs_per_s, steady_jobs_per_s (and ``unfinished``, the jobs still waiting, when
    ``deadline`` seconds passed first). A peer whose workers cannot share a queue from several
    processes may `Skip` ``processes`` > 1 with the reason. (``workers``, the key's earlier name,
    is read as ``processes`` when ``processes`` is not given.)
``open-loop`` (cfg: rate, seconds, inflight=64 for threaded clients)
    ``rate`` enqueues/s on a fixed schedule; latency counts from each job's scheduled send time
    (HDR histogram). Result keys: offered_per_s, achieved_per_s, jobs, p50_ms, p90_ms, p99_ms,
    p999_ms, max_ms.

Every result also carries ``peer`` (PeerSpec.name), ``config`` (the cfg as run, with the defaults
filled in) and ``notes`` (how concurrency was achieved, worker command, what was not like Spitfire);
the runner adds ``adapter``, ``workload`` and ``backend``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from perf.open_loop import HIST_MAX_US, open_loop_result
from perf.open_loop import open_loop_async as open_loop_async  # re-exported for the adapters

#: The repository root (the runner's cwd; worker processes get it on PYTHONPATH).
ROOT = Path(__file__).resolve().parent.parent.parent
#: No workload runs longer than this (seconds), whatever its count (as perf/net_workloads.py).
DEADLINE = 300.0
#: Environment variable that tells a peer's task module (in its worker process) the service URL.
URL_ENV = "PERF_PEER_URL"
#: The queue every adapter uses where the peer lets one choose.
QUEUE = "bench"
#: The workload names, in report order.
WORKLOADS = ("enqueue-single", "enqueue-threads", "enqueue-one", "enqueue-batch", "drain", "open-loop")
#: Defaults filled into a workload's cfg when missing (the same as Spitfire's net cases).
DEFAULTS: dict[str, dict[str, Any]] = {
    "enqueue-single": {"jobs": 20_000, "inflight": 64},
    "enqueue-threads": {"jobs": 20_000, "threads": 8},
    "enqueue-one": {"jobs": 20_000},
    "enqueue-batch": {"jobs": 20_000, "batch": 100, "inflight": 4},
    "drain": {"jobs": 20_000, "processes": 1},
    "open-loop": {"rate": 1_000, "seconds": 5, "inflight": 64},
}

Backend = Literal["redis", "postgres", "sqlite"]
WorkloadFn = Callable[[str, dict[str, Any]], dict[str, Any]]
T = TypeVar("T")


class Skip(Exception):
    """Raised by a workload function that cannot run for this peer; ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class PeerSpec:
    """One peer: its display name, the service it needs and its workload functions by name."""

    name: str
    backend: Backend
    workloads: Mapping[str, WorkloadFn]
    #: Versions or setup worth printing beside every result (the runner adds the library version).
    notes: str = ""
    #: Distribution names whose installed versions the runner reports (e.g. ("arq", "redis")).
    packages: Sequence[str] = field(default_factory=tuple)
    #: Versions the runner cannot read from Python's package metadata (a Node or Ruby peer's
    #: library and runtime, a Debian package), reported beside ``packages``' versions.
    runtime_versions: Mapping[str, str] = field(default_factory=dict)


def with_defaults(workload: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with the workload's `DEFAULTS` filled in (cfg wins); a drain's ``workers`` (the
    earlier name of its process count) becomes ``processes`` when that is not given."""
    given = dict(cfg)
    if workload == "drain" and "workers" in given:
        given.setdefault("processes", given.pop("workers"))
    return {**DEFAULTS.get(workload, {}), **given}


def payload(i: int) -> dict[str, Any]:
    """A ~100-byte JSON document, the same shape as perf.net_workloads.payload (not imported from
    there: the peers venv has no spitfire)."""
    return {"n": i, "to": f"user-{i:08d}@example.com", "subject": "Welcome aboard", "body": "x" * 24}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of already sorted values, nearest-rank (as perf.report's)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def throughput(jobs: int, seconds: float, latencies: list[float] | None = None) -> dict[str, Any]:
    """The enqueue result dict: jobs, seconds, jobs_per_s (and p50_ms/p99_ms when latencies given)."""
    out: dict[str, Any] = {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds if seconds else 0.0}
    if latencies is not None:
        latencies.sort()
        out["p50_ms"] = percentile(latencies, 50) * 1e3
        out["p99_ms"] = percentile(latencies, 99) * 1e3
    return out


# --- asyncio peers -------------------------------------------------------------------------------


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh loop: uvloop when installed (Spitfire's load generator uses it too)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def enqueue_concurrently(
    send: Callable[[int], Awaitable[Any]], jobs: int, inflight: int
) -> dict[str, Any]:
    """``jobs`` calls ``await send(i)`` (i = 1..jobs) from ``inflight`` asyncio tasks; the result
    of the enqueue-single workload."""
    latencies: list[float] = []
    counter = iter(range(1, jobs + 1))
    deadline = time.monotonic() + DEADLINE

    async def producer() -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(inflight)))
    return throughput(len(latencies), time.perf_counter() - start, latencies)


async def enqueue_batches_concurrently(
    send_batch: Callable[[list[dict[str, Any]]], Awaitable[Any]], jobs: int, batch: int, inflight: int
) -> dict[str, Any]:
    """Payloads 0..jobs-1 in lists of ``batch``, ``await send_batch(part)`` from ``inflight``
    tasks; the result of the enqueue-batch workload."""
    batches = [[payload(i) for i in range(s, min(jobs, s + batch))] for s in range(0, jobs, batch)]
    it = iter(batches)
    done = 0

    async def producer() -> None:
        nonlocal done
        for part in it:
            await send_batch(part)
            done += len(part)

    start = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(inflight)))
    return throughput(done, time.perf_counter() - start)


# --- synchronous peers (threads) -----------------------------------------------------------------


def enqueue_threads(send: Callable[[int], Any], jobs: int, threads: int) -> dict[str, Any]:
    """``jobs`` calls ``send(i)`` (i = 1..jobs) from ``threads`` threads of this process sharing
    ``send`` (its client must be thread-safe); the result of the enqueue-single and enqueue-threads
    workloads."""
    return enqueue_threads_each([send] * threads, jobs)


def enqueue_threads_each(senders: Sequence[Callable[[int], Any]], jobs: int) -> dict[str, Any]:
    """``jobs`` calls ``send(i)`` (i = 1..jobs) from one thread per element of ``senders``, each
    thread calling its own (for a client that is not thread-safe: one client per thread), one
    call at a time; latency per call. The first error a thread meets is re-raised here."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(1, jobs + 1))
    deadline = time.monotonic() + DEADLINE
    errors: list[BaseException] = []

    def producer(send: Callable[[int], Any]) -> None:
        mine: list[float] = []
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                send(i)
                mine.append(time.perf_counter() - t0)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=producer, args=(send,), daemon=True) for send in senders]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return throughput(len(latencies), elapsed, latencies)


def enqueue_one_by_one(send: Callable[[int], Any], jobs: int) -> dict[str, Any]:
    """``jobs`` calls ``send(i)`` (i = 1..jobs) in this thread, one at a time (bounded by
    `DEADLINE`); the result of the enqueue-one workload."""
    latencies: list[float] = []
    deadline = time.monotonic() + DEADLINE
    start = time.perf_counter()
    for i in range(1, jobs + 1):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        send(i)
        latencies.append(time.perf_counter() - t0)
    return throughput(len(latencies), time.perf_counter() - start, latencies)


def enqueue_batches_threads(
    send_batch: Callable[[list[dict[str, Any]]], Any], jobs: int, batch: int, threads: int
) -> dict[str, Any]:
    """Payloads 0..jobs-1 in lists of ``batch``, ``send_batch(part)`` from ``threads`` threads;
    the result of the enqueue-batch workload."""
    batches = [[payload(i) for i in range(s, min(jobs, s + batch))] for s in range(0, jobs, batch)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for fut in [pool.submit(send_batch, part) for part in batches]:
            fut.result(timeout=DEADLINE)
    return throughput(sum(len(b) for b in batches), time.perf_counter() - start)


def open_loop_threads(
    send: Callable[[int], Any], rate: float, seconds: float, threads: int
) -> dict[str, Any]:
    """Offer ``rate`` calls of ``send(i)`` per second for ``seconds``, handed on a fixed schedule
    to a pool of ``threads`` threads; latency counts from each call's scheduled time, so time spent
    waiting for a free thread is counted too (no coordinated omission)."""
    from hdrh.histogram import HdrHistogram

    total = int(rate * seconds)
    hist = HdrHistogram(1, HIST_MAX_US, 3)
    lock = threading.Lock()

    def one(i: int, scheduled: float) -> None:
        send(i)
        value = max(1, int((time.perf_counter() - scheduled) * 1e6))
        with lock:
            hist.record_value(value)

    futures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # precise to tens of microseconds (see perf/open_loop.py)
            futures.append(pool.submit(one, i, scheduled))
        for fut in futures:
            fut.result(timeout=DEADLINE)
        elapsed = time.perf_counter() - start
    return open_loop_result(hist, rate, elapsed)


# --- worker processes ----------------------------------------------------------------------------


#: What a threaded producer binds to: (``send(i)`` that enqueues job i, producer threads, what
#: those threads share, for the result's notes).
Producer = tuple[Callable[[int], Any], int, str]


def threaded_producers(bind: Callable[[str, dict[str, Any]], Producer]) -> dict[str, WorkloadFn]:
    """The enqueue-single, enqueue-threads, enqueue-one and open-loop workloads of a peer whose
    enqueue is a blocking, thread-safe call: ``bind(service_url, cfg)`` sets the peer up (clearing
    its service) and says how to send, with cfg's ``inflight`` as the threads wanted (enqueue-threads
    passes its ``threads``, enqueue-one 1); one warm-up job is sent before the clock starts."""

    def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
        send, threads, shared = bind(url, cfg)
        send(0)
        result = enqueue_threads(send, int(cfg["jobs"]), threads)
        return result | {
            "config": {"threads": threads},
            "notes": f"{threads} threads in one process {shared}",
        }

    def enqueue_threads_(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
        send, threads, shared = bind(url, {**cfg, "inflight": int(cfg["threads"])})
        send(0)
        result = enqueue_threads(send, int(cfg["jobs"]), threads)
        return result | {
            "config": {"threads": threads},
            "notes": f"{threads} OS threads, one blocking call at a time each, {shared}",
        }

    def enqueue_one(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
        send, _, shared = bind(url, {**cfg, "inflight": 1})
        send(0)
        result = enqueue_one_by_one(send, int(cfg["jobs"]))
        return result | {
            "config": {"threads": 1},
            "notes": f"one thread, one blocking call at a time ({shared})",
        }

    def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
        send, threads, shared = bind(url, cfg)
        send(0)
        result = open_loop_threads(send, float(cfg["rate"]), float(cfg["seconds"]), threads)
        notes = f"a scheduler thread hands each job to a pool of {threads} threads {shared}"
        return result | {"config": {"threads": threads}, "notes": notes}

    return {
        "enqueue-single": enqueue_single,
        "enqueue-threads": enqueue_threads_,
        "enqueue-one": enqueue_one,
        "open-loop": open_loop,
    }


def venv_bin(name: str) -> str:
    """The path of console script ``name`` in the running venv's bin/ (e.g. ``rq``, ``celery``)."""
    return str(Path(sys.executable).with_name(name))


def worker_env(service_url: str) -> dict[str, str]:
    """The environment for a peer's worker process: the repo on PYTHONPATH (task modules live in
    perf/peers/adapters/) and the service URL in `URL_ENV`."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, **{URL_ENV: service_url})


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM the worker by PID, wait, then SIGKILL its process group (it was started in its own
    session, so children such as prefork pool processes go too); returns the exit code."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):  # pool children left behind
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def drain_processes(cfg: Mapping[str, Any]) -> int:
    """The drain's ``processes`` (worker processes to launch); ValueError when not a positive int."""
    n = int(cfg.get("processes", 1))
    if n < 1:
        raise ValueError(f"drain processes must be at least 1, got {n}")
    return n


def drain_with_worker(
    cmd: list[str],
    service_url: str,
    remaining: Callable[[], int],
    waiting: int,
    poll: float = 0.005,
    deadline: float = DEADLINE,
) -> dict[str, Any]:
    """`drain_with_workers` with one worker command."""
    return drain_with_workers([cmd], service_url, remaining, waiting, poll, deadline)


def drain_with_workers(
    cmds: Sequence[list[str]],
    service_url: str,
    remaining: Callable[[], int],
    waiting: int,
    poll: float = 0.005,
    deadline: float = DEADLINE,
) -> dict[str, Any]:
    """Launch every command of ``cmds`` (the peer's worker processes, each in its own session,
    cwd = repo root, `worker_env`) and time from launch until ``remaining()`` — jobs not run yet,
    by the peer's own API — reaches 0; then stop each by PID (`stop_worker`).

    ``waiting`` is the number of jobs enqueued before launch. The result is the drain workload's:
    jobs, seconds, jobs_per_s, steady_jobs_per_s (excluding the time to the first job run).
    Stops after ``deadline`` seconds with the jobs still waiting in ``unfinished`` (the rate is
    over those that ran). Raises RuntimeError (with the workers' output tail) when a worker exits
    with a non-zero code, or every worker has exited, before the queue drains (a worker that
    exits 0 alone is a burst-mode worker that found the queue empty while the others finish).
    """
    procs: list[subprocess.Popen[bytes]] = []
    env = worker_env(service_url)
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        try:
            for cmd in cmds:
                procs.append(
                    subprocess.Popen(
                        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
            first: float | None = None
            left = waiting
            while left and time.perf_counter() - start < deadline:
                time.sleep(poll)
                left = remaining()
                if first is None and left < waiting:
                    first = time.perf_counter()
                codes = [p.poll() for p in procs]
                if left and (any(c for c in codes) or all(c is not None for c in codes)):
                    left = remaining()
                    if left:
                        raise RuntimeError(f"worker(s) exited ({codes}) with {left} jobs left")
            end = time.perf_counter()
        except RuntimeError as exc:
            for p in procs:
                stop_worker(p)
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}; worker command {list(cmds[0])}; their output:\n{tail}") from None
        finally:
            for p in procs:
                stop_worker(p)
    ran = waiting - left
    elapsed = end - start
    steady = end - first if first is not None else elapsed
    result = {
        "jobs": ran,
        "seconds": elapsed,
        "jobs_per_s": ran / elapsed,
        "steady_jobs_per_s": ran / steady if steady > 0 else 0.0,
    }
    if left:  # the deadline: report the rate over what ran, and say so
        result["unfinished"] = left
    return result
