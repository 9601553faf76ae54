"""python -m perf sync-client: the blocking `spitfire.Client` as Flask/Django/Celery-style code uses it.

Modes, each against one real spitfire-server (``--durability group`` by default):

- ``sync-1``: one thread, one `Client.enqueue` at a time (bound by one fdatasync per call);
- ``sync-8`` (``sync-N`` for any N): one `Client` shared by N threads, each one call at a time;
- ``async-1`` / ``async-8``: `AsyncClient` with 1 or 8 enqueues in flight on a plain asyncio loop,
  the lower bound of what the sync client's thread bridge costs.

Each mode runs in its own client process (``python perf/sync_client.py client URL CONFIG``, which
imports only ``spitfire`` and the standard library), so ``--ab PYTHON`` can run every mode again
with another checkout's interpreter (e.g. ``../main/.venv/bin/python``), interleaved A, B, A, B...
on the same server: an A/B of two builds of the SDK. Figures: jobs/s over the run and p50/p99 of
each call's round trip; the median of ``--repeat`` runs is reported.

``--profile DIR`` records the client process (``py-spy --threads --idle``) and the server
(``py-spy --idle``) of every mode once, as DIR/sync-client-1thread.svg (sync-1),
sync-client-8threads.svg (sync-8) or sync-client-<mode>.svg, with the collapsed stacks in .txt
beside each, and the server's as sync-client-<...>-server.svg/.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import spitfire

#: Seconds one client process may run before it is killed.
CLIENT_TIMEOUT = 300.0
DEFAULT_MODES = ("sync-1", "async-1", "sync-8", "async-8")


def payload(i: int) -> dict[str, Any]:
    """The ~100-byte job of perf/net_workloads.py (copied: this file runs under other checkouts)."""
    return {"n": i, "to": f"user-{i:08d}@example.com", "subject": "Welcome aboard", "body": "x" * 24}


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50/p99/max of per-call round trips, in milliseconds."""
    if not latencies:
        return {}
    s = sorted(latencies)

    def at(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))] * 1e3

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": s[-1] * 1e3}


def cpu_since(start: os.times_result) -> tuple[float, float]:
    """(user + system, system) CPU seconds of this process since ``start``."""
    now = os.times()
    user, system = now.user - start.user, now.system - start.system
    return user + system, system


def figures(latencies: list[float], elapsed: float, cpu: tuple[float, float]) -> dict[str, Any]:
    """A run's figures; ``client_cpu_us_per_job`` is the client process's CPU (all its threads)
    per enqueue during the run (``client_sys_us_per_job`` its kernel part): what the SDK costs
    beside the round trip."""
    n = max(1, len(latencies))
    return {
        "jobs": len(latencies),
        "seconds": elapsed,
        "jobs_per_s": len(latencies) / elapsed,
        "client_cpu_us_per_job": cpu[0] / n * 1e6,
        "client_sys_us_per_job": cpu[1] / n * 1e6,
        **percentiles(latencies),
    }


# -- the client process -----------------------------------------------------------------------------


def run_sync(url: str, queue: str, jobs: int, threads: int) -> dict[str, Any]:
    """``jobs`` enqueues from ``threads`` threads sharing one Client, each one call at a time."""
    per_thread = [jobs // threads + (1 if t < jobs % threads else 0) for t in range(threads)]
    lat: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    with spitfire.Client(url) as client:
        client.enqueue(queue, "noop", payload(-1))  # connect and create the queue

        def produce(t: int) -> None:
            mine, enqueue, clock = lat[t], client.enqueue, time.perf_counter
            base = t * (jobs // threads + 1)
            barrier.wait()
            for i in range(per_thread[t]):
                t0 = clock()
                enqueue(queue, "noop", payload(base + i))
                mine.append(clock() - t0)

        ts = [threading.Thread(target=produce, args=(t,), daemon=True) for t in range(threads)]
        for th in ts:
            th.start()
        barrier.wait()
        start, cpu0 = time.perf_counter(), os.times()
        for th in ts:
            th.join()
        elapsed, cpu = time.perf_counter() - start, cpu_since(cpu0)
    return figures([x for part in lat for x in part], elapsed, cpu)


async def run_async(url: str, queue: str, jobs: int, inflight: int) -> dict[str, Any]:
    """``jobs`` enqueues from one AsyncClient with ``inflight`` at once."""
    lat: list[float] = []
    counter = iter(range(jobs))
    async with spitfire.AsyncClient(url) as client:
        await client.enqueue(queue, "noop", payload(-1))

        async def produce() -> None:
            clock = time.perf_counter
            for i in counter:
                t0 = clock()
                await client.enqueue(queue, "noop", payload(i))
                lat.append(clock() - t0)

        start, cpu0 = time.perf_counter(), os.times()
        await asyncio.gather(*(produce() for _ in range(inflight)))
        elapsed, cpu = time.perf_counter() - start, cpu_since(cpu0)
    return figures(lat, elapsed, cpu)


def client_main(url: str, config: str) -> int:
    cfg = json.loads(config)
    kind, n = cfg["mode"].split("-")
    queue = f"syncbench-{uuid.uuid4().hex[:8]}"
    if kind == "sync":
        result = run_sync(url, queue, int(cfg["jobs"]), int(n))
    else:
        result = asyncio.run(run_async(url, queue, int(cfg["jobs"]), int(n)))
    result["switch_interval_s"] = sys.getswitchinterval()
    print(json.dumps(result), flush=True)
    return 0


# -- the driver -------------------------------------------------------------------------------------


def client_command(python: str, url: str, cfg: dict[str, Any]) -> list[str]:
    return [python, str(Path(__file__).resolve()), "client", url, json.dumps(cfg)]


def run_client(cmd: list[str], cpus: set[int] | None) -> dict[str, Any]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    try:
        out, err = proc.communicate(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"client {cmd} took over {CLIENT_TIMEOUT} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"client failed ({proc.returncode}):\n{err[-3000:]}")
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    return result


def profile(server: Any, python: str, mode: str, jobs: int, out_dir: Path) -> None:
    """One run of ``mode`` with py-spy on the client (threads, idle) and on the server."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / {"sync-1": "sync-client-1thread", "sync-8": "sync-client-8threads"}.get(
        mode, f"sync-client-{mode}"
    )
    spy = [py_spy, "record", "--rate", "500", "--idle", "--nonblocking"]
    cfg = {"mode": mode, "jobs": jobs}
    for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt")):
        server_spy = subprocess.Popen(
            [*spy, "--format", fmt, "-o", f"{stem}-server{suffix}", "--pid", str(server.proc.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)  # py-spy attaches
            out = ["--format", fmt, "-o", f"{stem}{suffix}"]
            cmd = [*spy, "--threads", *out, "--", *client_command(python, server.url(), cfg)]
            result = run_client(cmd, None)
        finally:
            server_spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            try:
                server_spy.wait(30)
            except subprocess.TimeoutExpired:
                server_spy.kill()
                server_spy.wait()
        rate = result["jobs_per_s"]
        print(f"  profiled {mode} ({fmt}): {rate:,.0f} jobs/s -> {stem}{suffix}", file=sys.stderr)


def driver_main(argv: list[str]) -> int:
    from perf.report import Figure, median, print_table, write_json
    from perf.server_proc import ServerProcess, split_cpus

    p = argparse.ArgumentParser(prog="python -m perf sync-client", description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="*", default=list(DEFAULT_MODES), help="sync-N and async-N modes")
    p.add_argument("--jobs", type=int, default=10_000, help="enqueues per run")
    p.add_argument("--repeat", type=int, default=3, help="runs per mode (and per build); medians reported")
    p.add_argument("--durability", default="group", choices=("group", "sync", "async"))
    p.add_argument("--pin", action="store_true", help="pin the client and the server to separate CPUs")
    p.add_argument("--ab", metavar="PYTHON", help="also run every mode with this interpreter, interleaved")
    p.add_argument("--profile", metavar="DIR", type=Path, help="record py-spy flamegraphs into DIR instead")
    args = p.parse_args(argv)
    split = split_cpus() if args.pin else None
    client_cpus, server_cpus = split if split else (None, None)
    builds = {"A": sys.executable, **({"B": args.ab} if args.ab else {})}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {b: {m: [] for m in args.modes} for b in builds}
    with ServerProcess(args.durability, quic=False, cpus=server_cpus) as server:
        if args.profile:
            for mode in args.modes:
                profile(server, sys.executable, mode, args.jobs, args.profile)
            return 0
        for i in range(args.repeat):
            for mode in args.modes:
                for build, python in builds.items():
                    cfg = {"mode": mode, "jobs": args.jobs}
                    r = run_client(client_command(python, server.url(), cfg), client_cpus)
                    raw[build][mode].append(r)
                    print(
                        f"  run {i + 1}/{args.repeat} {mode:8} {build}: {r['jobs_per_s']:9,.0f} jobs/s "
                        f"p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} ms, "
                        f"client CPU {r['client_cpu_us_per_job']:.0f} us/job "
                        f"(sys {r['client_sys_us_per_job']:.0f})",
                        file=sys.stderr,
                        flush=True,
                    )
    figures: list[Figure] = []
    for mode in args.modes:
        for build in builds:
            runs = raw[build][mode]
            tag = f"{mode} [{build}]" if args.ab else mode
            for key, label, unit in (
                ("jobs_per_s", "", "jobs/s"),
                ("p50_ms", " p50", "ms"),
                ("p99_ms", " p99", "ms"),
                ("client_cpu_us_per_job", " client CPU/job", "us"),
            ):
                values = [float(r[key]) for r in runs]
                figures.append(Figure(f"{tag}{label}", median(values), unit, runs=values))
    print_table(figures)
    config = {**vars(args), "profile": None, "builds": builds, "raw": raw, "pinned": bool(split)}
    path = write_json("sync-client", config, figures)
    print(f"\nwrote {path}")
    return 0


def main(argv: list[str]) -> int:
    """``python -m perf sync-client [...]`` (the driver), or ``client URL CONFIG`` (one run)."""
    if argv[:1] == ["client"]:
        return client_main(argv[1], argv[2])
    return driver_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
