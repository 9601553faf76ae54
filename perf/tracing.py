"""python -m perf tracing: what OpenTelemetry costs a drain (docs/tracing.md).

One worker process (`perf.tracing_app`, no-op async jobs, or jobs that wait ``--work-ms``; default
concurrency) drains ``--jobs`` jobs that carry a ``traceparent`` header, in four ways, alternately,
``--repeat`` rounds (medians):

- ``off``: no TracerProvider in the worker, a server without ``--otel``;
- ``sdk-no-export``: the worker's spans made, handed to a BatchSpanProcessor whose exporter sends
  nothing (what the instrumentation costs, without the exporter's encoding and sending);
- ``sdk``: the worker with a TracerProvider, a BatchSpanProcessor and the OTLP/HTTP exporter
  (every span sampled), sending to a receiver on loopback; the same server as ``off``;
- ``sdk+server``: that worker, and a server with ``--otel`` exporting to the same receiver.

The receiver (a thread of this process) decodes each export to count the spans that arrived. The
figure is the steady drain rate, from the first job acked to the last (the worker's start-up left
out); the slowdown is ``1 - traced / off`` (target: under 15%). Writes perf/results/tracing-<ts>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import spitfire
from perf.net_workloads import drain_result, payload
from perf.report import Figure, median, print_table, write_json
from perf.server_proc import ServerProcess, stop_process
from perf.workloads import wait_drained

ROOT = Path(__file__).resolve().parent.parent
MODES = ("off", "sdk-no-export", "sdk", "sdk+server")
#: SPITFIRE_PERF_OTEL of the worker (perf.tracing_app) per mode.
WORKER_OTEL = {"off": "0", "sdk-no-export": "null", "sdk": "1", "sdk+server": "1"}
#: A fixed creation context: every job is a child of one producer span, as after a traced enqueue.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BATCH = 1000


class Receiver:
    """An OTLP/HTTP endpoint that answers 200 and counts the spans it was sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                receiver.spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def fill(url: str, queue: str, jobs: int, work_ms: float) -> None:
    name = "work" if work_ms else "noop"
    async with spitfire.AsyncClient(url, tracing=False) as client:
        for start in range(0, jobs, BATCH):
            bodies = [payload(i) for i in range(start, min(jobs, start + BATCH))]
            if work_ms:
                bodies = [{**b, "ms": work_ms} for b in bodies]
            await client.enqueue_many(queue, name, bodies, headers={"traceparent": TRACEPARENT})


async def drain(url: str, queue: str, jobs: int, mode: str, endpoint: str) -> dict[str, Any]:
    """Start the worker on the filled ``queue`` and time it until the queue is empty."""
    cli = str(Path(sys.executable).with_name("spitfire"))
    cmd = [cli, "worker", "perf.tracing_app:app", "--queues", queue, "--url", url, "--log-level", "warning"]
    env = dict(os.environ, SPITFIRE_URL=url, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint)
    env["SPITFIRE_PERF_OTEL"] = WORKER_OTEL[mode]
    async with spitfire.AsyncClient(url) as client:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        try:
            end, first, left = await wait_drained(client, [queue], [proc], time.monotonic() + 300)
        finally:
            stop_process(proc)
    if left:
        raise RuntimeError(f"{left} jobs of {queue} were not drained in time")
    return drain_result(jobs, start, first, end)


def run(jobs: int, repeat: int, work_ms: float) -> int:
    receiver = Receiver()
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver.endpoint  # the --otel server's
    plain = ServerProcess(quic=False).start()
    traced = ServerProcess(quic=False, extra=["--otel"]).start()
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    spans: dict[str, list[int]] = {m: [] for m in MODES}
    try:
        for r in range(repeat):
            # Each round in another order, so that drift on the loaded machine spreads evenly.
            order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
            for mode in order:
                server = traced if mode == "sdk+server" else plain
                queue = f"trace-{mode.replace('+', '-')}-{r}"
                asyncio.run(fill(server.url(), queue, jobs, work_ms))
                before = receiver.spans
                result = asyncio.run(drain(server.url(), queue, jobs, mode, receiver.endpoint))
                rate = float(result["steady_jobs_per_s"])
                rates[mode].append(rate)
                spans[mode].append(receiver.spans - before)
                print(f"  round {r + 1} {mode}: {rate:,.0f} jobs/s", file=sys.stderr, flush=True)
    finally:
        for server in (plain, traced):
            if server.proc is not None:
                stop_process(server.proc)
        receiver.stop()
    off = median(rates["off"])
    what = f"{work_ms:g} ms jobs" if work_ms else "no-op jobs"
    figures = [
        Figure(f"drain, {what}, tracing {m}", median(rates[m]), "jobs/s", "", None, rates[m]) for m in MODES
    ]
    for m in MODES[1:]:
        drop = 100.0 * (1.0 - median(rates[m]) / off)
        figures.append(Figure(f"slowdown, {m} vs off", drop, "%", "< 15", drop < 15.0))
    print_table(figures)
    config = {"jobs": jobs, "repeat": repeat, "work_ms": work_ms, "spans_received": spans, "rates": rates}
    path = write_json("tracing", config, figures)
    print(f"\nwrote {path}")
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m perf tracing", description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the three modes")
    p.add_argument("--work-ms", type=float, default=0.0, help="each job waits this long (default: no-op)")
    a = p.parse_args(argv)
    return run(a.jobs, a.repeat, a.work_ms)
