"""python -m perf tracing: what OpenTelemetry costs a producer, a drain and the server (docs/tracing.md).

A producer process (`perf.tracing_app`, one enqueue request per job, 64 in flight) enqueues ``--jobs``
jobs, then one worker process (default concurrency) drains them: no-op ``async def`` jobs, or jobs
that wait ``--work-ms`` (``--sync``: plain ``def`` jobs in the worker's thread pool). Four ways,
alternately, ``--repeat`` rounds (medians):

- ``off``: no TracerProvider in the producer nor the worker (the jobs carry no trace context), a
  server without ``--otel``;
- ``sdk-no-export``: both make their spans and hand them to a BatchSpanProcessor whose exporter
  sends nothing (what the instrumentation costs, without the exporter's encoding and sending);
- ``sdk``: both with a TracerProvider, a BatchSpanProcessor and the OTLP/HTTP exporter, sending to a
  receiver on loopback; the same server as ``off``;
- ``sdk+server``: that, and a server with ``--otel`` exporting to the same receiver.

The sampler is the SDK's default (every span) unless ``--sampler-ratio R`` gives every process
``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` with that ratio: the producer's send spans decide,
the worker's and the server's spans follow their parent.

Figures: the producer's enqueue rate; the steady drain rate, from the first job acked to the last
(the worker's start-up left out); the server's CPU per job while it took the enqueues and while it
delivered them (utime + stime of its process); the slowdown ``1 - traced / off`` (target: under
15%). ``--ab PYTHON`` runs every case again with another checkout's interpreter (its ``spitfire``,
``spitfire-server``; e.g. ``../main/.venv/bin/python``), interleaved, to measure a change.
``--profile`` then runs one more ``off`` and ``sdk`` round with py-spy (``--threads --idle``) on
the worker and the producer: flamegraphs in perf/results/ and their heaviest frames printed.
``--micro`` measures single spans in-process instead (perf/tracing_spans.py). The receiver (a
thread of this process) decodes each export to count the spans that arrived. Writes
perf/results/tracing-<ts>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import spitfire
from perf.net_workloads import drain_result
from perf.report import RESULTS_DIR, Figure, median, print_table, write_json
from perf.server_proc import ServerProcess, stop_process
from perf.workloads import wait_drained

ROOT = Path(__file__).resolve().parent.parent
MODES = ("off", "sdk-no-export", "sdk", "sdk+server")
#: SPITFIRE_PERF_OTEL of the producer and the worker (perf.tracing_app) per mode.
OTEL_OF = {"off": "0", "sdk-no-export": "null", "sdk": "1", "sdk+server": "1"}
#: Seconds a producer or a drain may take.
DEADLINE = 300.0


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


class Server(ServerProcess):
    """A spitfire-server run by ``python`` (this checkout's, or the other one of ``--ab``)."""

    def __init__(self, python: str, extra: list[str]) -> None:
        super().__init__(quic=False, extra=extra)
        self.python = python

    def command(self) -> list[str]:
        return [self.python, *super().command()[1:]]

    def cpu(self) -> float:
        """CPU seconds the server process has used so far (all its threads)."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid``, in seconds (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Spy:
    """py-spy recording a process (``--threads --idle``) into an SVG, until `stop`."""

    def __init__(self, pid: int, svg: Path) -> None:
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        cmd = [py_spy, "record", "--threads", "--idle", "--nonblocking", "--rate", "250"]
        self.svg = svg
        self.proc = subprocess.Popen(
            [*cmd, "--pid", str(pid), "-o", str(svg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        """SIGINT: py-spy writes its SVG and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)


def heaviest(svg: Path, top: int = 14) -> dict[str, list[tuple[str, int, float]]]:
    """The frames of a py-spy flamegraph (``--threads``) that hold the most samples, per thread:
    thread -> [(frame, samples, % of the thread's samples)], inclusive, a function's lines summed.
    Threads whose samples are all in one frame (idle in a queue's get, say) are left out."""
    pattern = re.compile(
        r'<title>(.*?) \(([\d,]+) samples?, [\d.]+%\)</title><rect [^>]*fg:x="(\d+)" fg:w="(\d+)"'
    )
    threads: dict[int, tuple[str, int]] = {}  # start -> (thread, samples)
    frames: list[tuple[str, int, int]] = []
    for m in pattern.finditer(svg.read_text(errors="replace")):
        title, x, w = html.unescape(m.group(1)), int(m.group(3)), int(m.group(4))
        if title.startswith("thread ("):
            name = title.partition(": ")[2] or title
            if x not in threads or ": " in title:
                threads[x] = (name, w)
        elif title != "all":
            frames.append((re.sub(r":\d+\)$", ")", title), x, w))
    starts = sorted(threads)
    found: dict[str, Counter[str]] = {}
    for frame, x, w in frames:
        owner = max((s for s in starts if s <= x), default=None)
        if owner is not None:
            found.setdefault(threads[owner][0], Counter())[frame] += w
    report: dict[str, list[tuple[str, int, float]]] = {}
    for start in starts:
        name, total = threads[start]
        counts = found.get(name, Counter())
        if total and len(counts) > 8:
            report[name] = [(f, n, 100.0 * n / total) for f, n in counts.most_common(top)]
    return report


def env_of(
    mode: str, endpoint: str, url: str, sampler_ratio: float | None, switch: float | None = None
) -> dict[str, str]:
    env = dict(os.environ, SPITFIRE_URL=url, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint)
    if switch is not None and mode.endswith("+switch"):
        env["SPITFIRE_PERF_SWITCH_INTERVAL"] = str(switch)
        mode = mode.removesuffix("+switch")
    env["SPITFIRE_PERF_OTEL"] = OTEL_OF[mode]
    if sampler_ratio is not None:
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = str(sampler_ratio)
    return env


def produce(
    python: str,
    url: str,
    queue: str,
    name: str,
    jobs: int,
    work_ms: float,
    env: dict[str, str],
    spy: Path | None,
) -> float:
    """Run the producer process; its enqueue rate (jobs/s)."""
    cmd = [python, "-m", "perf.tracing_app", url, queue, name, str(jobs), str(work_ms)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    recording = Spy(proc.pid, spy) if spy is not None else None
    try:
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        if recording is not None:
            recording.stop()
        stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"the producer exited with {proc.returncode}")
    return float(json.loads(out.decode().strip().splitlines()[-1])["jobs_per_s"])


async def drain(python: str, url: str, queue: str, jobs: int, env: dict[str, str], spy: Path | None) -> float:
    """Start the worker on the filled ``queue`` and time it until the queue is empty: the steady rate."""
    cli = str(Path(python).with_name("spitfire"))
    cmd = [cli, "worker", "perf.tracing_app:app", "--queues", queue, "--url", url, "--log-level", "warning"]
    async with spitfire.AsyncClient(url) as client:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        recording = Spy(proc.pid, spy) if spy is not None else None
        try:
            end, first, left = await wait_drained(client, [queue], [proc], time.monotonic() + DEADLINE)
        finally:
            if recording is not None:
                recording.stop()
            stop_process(proc)
    if left:
        raise RuntimeError(f"{left} jobs of {queue} were not drained in time")
    return float(drain_result(jobs, start, first, end)["steady_jobs_per_s"])


class Bench:
    """The servers, the receiver and the figures of one run."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.builds = {"A": sys.executable, **({"B": a.ab} if a.ab else {})}
        self.receiver = Receiver()
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = self.receiver.endpoint  # the --otel servers'
        if a.sampler_ratio is not None:
            os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            os.environ["OTEL_TRACES_SAMPLER_ARG"] = str(a.sampler_ratio)
        self.servers: dict[tuple[str, bool], Server] = {}
        self.results: dict[str, dict[str, list[float]]] = {}
        kind = ("sync " if a.sync else "") + (f"{a.work_ms:g} ms jobs" if a.work_ms else "no-op jobs")
        self.what = kind + (f", sampler ratio {a.sampler_ratio:g}" if a.sampler_ratio is not None else "")
        self.name = ("work" if a.work_ms else "noop") + ("_sync" if a.sync else "")

    def server(self, build: str, otel: bool) -> Server:
        key = (build, otel)
        if key not in self.servers:
            self.servers[key] = Server(self.builds[build], ["--otel"] if otel else [])
            self.servers[key].start()
        return self.servers[key]

    def case(self, build: str, mode: str, tag: str, profile: bool = False) -> None:
        """One fill and drain, its figures added under ``build``/``mode``."""
        a, python = self.a, self.builds[build]
        server = self.server(build, mode == "sdk+server")
        url = server.url()
        queue = f"trace-{build}-{mode.replace('+', '-')}-{tag}"
        env = env_of(mode, self.receiver.endpoint, url, a.sampler_ratio, a.switch_interval)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        spies = [RESULTS_DIR / f"tracing-{who}-{mode}-{stamp}.svg" for who in ("producer", "worker")]
        if profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        spans, cpu0 = self.receiver.spans, server.cpu()
        produced = produce(
            python, url, queue, self.name, a.jobs, a.work_ms, env, spies[0] if profile else None
        )
        cpu1 = server.cpu()
        rate = asyncio.run(drain(python, url, queue, a.jobs, env, spies[1] if profile else None))
        cpu2 = server.cpu()
        if profile:
            for svg in spies:
                print(f"\n{svg.relative_to(ROOT)}: heaviest frames (inclusive)", file=sys.stderr)
                for thread, rows in heaviest(svg).items():
                    print(f"  thread {thread}", file=sys.stderr)
                    for frame, n, pct in rows:
                        print(f"    {pct:5.1f}% {n:6d}  {frame}", file=sys.stderr)
            return
        got = self.results.setdefault(f"{mode} [{build}]" if a.ab else mode, {})
        for key, value in (
            ("drain", rate),
            ("produce", produced),
            ("server_us_enqueue", 1e6 * (cpu1 - cpu0) / a.jobs),
            ("server_us_drain", 1e6 * (cpu2 - cpu1) / a.jobs),
            ("spans", float(self.receiver.spans - spans)),
        ):
            got.setdefault(key, []).append(value)
        print(f"  {tag} {mode} [{build}]: produce {produced:,.0f}/s, drain {rate:,.0f}/s", file=sys.stderr)

    def stop(self) -> None:
        for server in self.servers.values():
            if server.proc is not None:
                stop_process(server.proc)
        self.receiver.stop()

    def figures(self) -> list[Figure]:
        figures: list[Figure] = []
        for label, got in self.results.items():
            for key, unit in (("produce", "jobs/s"), ("drain", "jobs/s")):
                figures.append(
                    Figure(f"{key}, {self.what}, {label}", median(got[key]), unit, "", None, got[key])
                )
            for key in ("server_us_enqueue", "server_us_drain"):
                what = key.rpartition("_")[2]
                figures.append(
                    Figure(f"server CPU per job, {what}, {label}", median(got[key]), "us", "", None, got[key])
                )
        for label, got in self.results.items():
            mode, _, build = label.partition(" ")
            off = self.results.get(f"off {build}".strip())
            if mode == "off" or off is None:
                continue
            for key in ("produce", "drain"):
                drop = 100.0 * (1.0 - median(got[key]) / median(off[key]))
                figures.append(Figure(f"slowdown, {key}, {label} vs off", drop, "%", "< 15", drop < 15.0))
        return figures


def run(a: argparse.Namespace) -> int:
    bench = Bench(a)
    cases = [(build, mode) for mode in a.modes for build in bench.builds]
    try:
        for r in range(a.repeat):
            # Each round in another order, so that drift on the loaded machine spreads evenly.
            shift = r % len(cases)
            for build, mode in cases[shift:] + cases[:shift]:
                bench.case(build, mode, str(r))
        if a.profile:
            for mode in ("off", "sdk"):
                bench.case("A", mode, "profile", profile=True)
    finally:
        bench.stop()
    if not bench.results:
        return 0  # --repeat 0 --profile: the flamegraphs only
    figures = bench.figures()
    print_table(figures)
    config = {
        "jobs": a.jobs, "repeat": a.repeat, "work_ms": a.work_ms, "sync": a.sync, "modes": list(a.modes),
        "sampler_ratio": a.sampler_ratio, "ab": a.ab, "results": bench.results,
    }  # fmt: skip
    path = write_json("tracing", config, figures)
    print(f"\nwrote {path}")
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m perf tracing", description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the modes")
    p.add_argument("--work-ms", type=float, default=0.0, help="each job waits this long (default: no-op)")
    p.add_argument("--sync", action="store_true", help="plain def jobs, in the worker's thread pool")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="the ways to run")
    p.add_argument("--sampler-ratio", type=float, help="parentbased_traceidratio with this ratio everywhere")
    p.add_argument(
        "--switch-interval",
        type=float,
        metavar="S",
        help="also run sdk with sys.setswitchinterval(S) in the producer and the worker (mode sdk+switch)",
    )
    p.add_argument("--ab", metavar="PYTHON", help="also run every case with this interpreter, interleaved")
    p.add_argument("--profile", action="store_true", help="then py-spy the producer and worker, off and sdk")
    p.add_argument("--micro", action="store_true", help="single spans in-process (perf/tracing_spans.py)")
    p.add_argument("--baseline", metavar="REV", default="integ", help="--micro: the code to compare with")
    a = p.parse_args(argv)
    if a.switch_interval is not None:
        a.modes = [*a.modes, "sdk+switch"]
    if a.micro:
        from perf import tracing_spans

        return tracing_spans.run(a.baseline, a.repeat)
    if a.sampler_ratio is not None and not 0.0 <= a.sampler_ratio <= 1.0:
        p.error("--sampler-ratio must be between 0 and 1")
    return run(a)
