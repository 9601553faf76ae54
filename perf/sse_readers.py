"""python -m perf sse-readers: does an open dashboard slow enqueue?

``--readers`` (10) Server-Sent-Events readers of ``/api/events?jobs=batched`` (what the dashboard
opens; ``--mode each`` reads an ``event: job`` per change instead) in a separate process stand in for
ten open dashboards. Enqueue throughput (one AsyncClient, 64 in flight, ``--jobs`` per round) is measured
with and without them on one server, alternately for ``--repeat`` rounds (medians); the readers
process is started before and stopped after each "with" round, and every reader must have received
events (else the run fails). Target: under 5% slower. Writes perf/results/sse-readers-<ts>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

from perf.delayed_scale import enqueue_rate
from perf.report import Figure, median, print_table, write_json
from perf.server_proc import ServerProcess, stop_process

#: The readers process: N streams of /api/events; counts events per stream, prints them on SIGTERM.
READERS = r"""
import asyncio, signal, sys, httpx
url, n = sys.argv[1], int(sys.argv[2])
counts = [0] * n
async def read(i, client):
    async with client.stream("GET", url) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                counts[i] += 1
async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with httpx.AsyncClient(timeout=None) as client:
        tasks = [asyncio.create_task(read(i, client)) for i in range(n)]
        print("ready", flush=True)
        await stop.wait()
        for t in tasks:
            t.cancel()
    print(" ".join(map(str, counts)), flush=True)
asyncio.run(main())
"""


def start_readers(url: str, n: int, mode: str = "batched") -> subprocess.Popen[str]:
    """``n`` readers of ``url``'s /api/events with ``?jobs=mode``, in a process of their own."""
    events = f"{url}/api/events?jobs={mode}"
    proc = subprocess.Popen(
        [sys.executable, "-c", READERS, events, str(n)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        stop_process(proc)
        raise RuntimeError("the SSE readers process did not start")
    time.sleep(0.5)  # let the streams connect before the round starts
    return proc


def stop_readers(proc: subprocess.Popen[str]) -> list[int]:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return [int(x) for x in out.split()]


def run(readers: int, jobs: int, repeat: int, mode: str = "batched") -> int:
    without: list[float] = []
    with_: list[float] = []
    received: list[list[int]] = []
    with ServerProcess(quic=False) as server:
        http = f"http://127.0.0.1:{server.http_port}"
        asyncio.run(enqueue_rate(server.url(), jobs // 10))  # warm-up: the queue exists
        for i in range(repeat):
            print(f"  round {i + 1}/{repeat} ...", file=sys.stderr, flush=True)
            without.append(asyncio.run(enqueue_rate(server.url(), jobs)))
            proc = start_readers(http, readers, mode)
            try:
                with_.append(asyncio.run(enqueue_rate(server.url(), jobs)))
            finally:
                received.append(stop_readers(proc))
    a, b = median(without), median(with_)
    slower = 100.0 * (1.0 - b / a)
    every_reader_read = all(n > 0 for counts in received for n in counts)
    figures = [
        Figure("enqueue jobs/s, no SSE reader", a, "jobs/s", "", None, without),
        Figure(f"enqueue jobs/s, {readers} SSE readers (jobs={mode})", b, "jobs/s", "", None, with_),
        Figure(f"enqueue slowdown with {readers} SSE readers", slower, "%", "< 5", slower < 5.0),
        Figure("events per reader per round (min)", float(min(min(c) for c in received)), "events", "> 0",
               every_reader_read),
    ]  # fmt: skip
    print_table(figures)
    config = {"readers": readers, "jobs": jobs, "repeat": repeat, "mode": mode, "received": received}
    path = write_json("sse-readers", config, figures)
    print(f"\nwrote {Path(path)}")
    return 0 if all(f.ok is not False for f in figures) else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m perf sse-readers", description=__doc__.split("\n")[0])
    p.add_argument("--readers", type=int, default=10)
    p.add_argument(
        "--jobs", type=int, default=100_000, help="enqueues per round (~2 s; shorter rounds are noise)"
    )
    p.add_argument("--repeat", type=int, default=4, help="rounds (9 x --jobs must stay under the queue cap)")
    p.add_argument("--mode", choices=("batched", "each"), default="batched",
                   help="the readers' ?jobs= (batched: what the dashboard opens)")  # fmt: skip
    a = p.parse_args(argv)
    return run(a.readers, a.jobs, a.repeat, a.mode)
