"""python -m perf ceiling: the server's own CPU ceiling, and this machine's physical limits.

    python -m perf ceiling [--seconds 3] [--repeat 3] [--producers 3] [--workers 2] [--quick]
                           [--no-profile] [--profile-seconds 6] [--no-pin] [--flamegraphs DIR]

What it measures, each window bounded by ``--seconds`` (and every count bounded too; ~70 s in
all with the defaults):

* **Spitfire at saturation.** A spitfire-server (group durability, no QUIC, snapshots off so that
  no snapshot lands in a window) pinned to half the CPUs (`split_cpus`), loaded by ``--producers``
  producer processes pinned to the other half: single-job enqueues (``--inflight`` each, pipelined
  on one connection), batch enqueues (``--batch`` jobs per request), and a drain (``--drain-jobs``
  enqueued first, untimed, then delivered and acked by ``--workers`` `spitfire worker` processes).
  The server's CPU time is read from ``/proc/<pid>/stat`` (utime + stime) before and after each
  window, and per thread from ``/proc/<pid>/task/*/stat`` (the loop thread is the main thread;
  the others are named from one ``py-spy dump``). Reported: server CPU microseconds per enqueued
  job and per delivered-and-acked job, per thread, the achieved rates, the server's CPU
  utilisation, and from its ``/metrics`` the records per flush round and the share of the window
  its flusher spent in fdatasync.
* **This machine's physical limits**, with the same pinning: (a) framed TCP round trips over
  loopback, a bare uvloop server answering 9-byte-header frames of the size of an ENQUEUE with a
  frame of the size of its ENQUEUED, from the same producer processes pipelining as the SDK does
  (requests written once per loop iteration); its CPU per round trip is the floor of any request
  served by a Python uvloop process. (b) A bare loop appending ~152-byte records into a
  preallocated mmap'd file (as the WAL's segments), fdatasyncing and "acking" (counting) them: one
  fdatasync per record and one per N records (group commit), the fsync-bound ceiling.
* **Ratios**: Spitfire's per-job CPU as a multiple of a bare round trip's; its single-enqueue
  rate, achieved and at one core's ceiling (1 / CPU per job), as a share of the fsync-bound rate
  at the group size it achieved. The producers rarely saturate the server on 2 cores (they need a
  core too), so the utilisation is reported and the ceiling is derived from the CPU per job.
* **Profiles** (unless ``--no-profile``): one more window (``--profile-seconds``) of each
  Spitfire workload with py-spy
  attached to the server (``--rate 200 --nonblocking``), written to
  ``flamegraphs/ceiling-<workload>-server.svg`` and the collapsed stacks beside it as ``.txt``; the
  top self-time frames and the self time by package go in the results (docs/scaling.md reads them).

Results: perf/results/ceiling-<timestamp>.json (or $SPITFIRE_PERF_RESULTS), the medians printed.
Also run as ``python -m perf.ceiling produce|echo-server ...`` for its own child processes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import mmap
import os
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from perf.net_workloads import payload, run_tuned
from perf.report import Figure, median, percentile, print_table, write_json
from perf.server_proc import ServerProcess, free_port, split_cpus, stop_process

ROOT = Path(__file__).resolve().parent.parent
FLAMEGRAPHS = ROOT / "flamegraphs"
#: Clock ticks per second of /proc/<pid>/stat's utime and stime.
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Upper bound of jobs any one producer enqueues in a window (the window's seconds bound it first).
MAX_JOBS = 10_000_000
#: Jobs all producers of one window may leave pending at most: under the server's default limit of
#: 1,000,000 pending jobs per queue, past which it answers BUSY (batches reach it in ~3 s).
MAX_PENDING = 900_000
#: Seconds a child process gets to say it is ready (interpreter start, imports, connect).
READY_TIMEOUT = 60.0
#: Seconds a drain may take at most, whatever its count.
DRAIN_DEADLINE = 120.0
#: How often the drain asks the server for its counts (each ask costs the server a little CPU).
DRAIN_POLL_S = 0.02
#: Bytes of one record of the bare fsync loop: about a WAL enqueue record of a ~100-byte payload.
RECORD_BYTES = 152
#: Size of the bare fsync loop's preallocated file; appends wrap around inside it.
FSYNC_FILE_BYTES = 16 * 2**20
#: The Spitfire workloads: name -> what one window of it does.
WORKLOADS = {
    "enqueue": "single-job enqueues, pipelined",
    "batch": "batch enqueues",
    "drain": "delivered and acked by worker processes",
}

Result = dict[str, Any]


# -- server CPU from /proc ---------------------------------------------------------------------------


def parse_stat(text: str) -> float:
    """utime + stime, in seconds, of one line of ``/proc/<pid>/stat`` (or of a task's).

    The command name (field 2) is in parentheses and may hold spaces, so fields count from its
    closing parenthesis: utime and stime are fields 14 and 15 of the line.
    """
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # the thread (or process) exited between listing and reading
        return None


@dataclass
class CpuSample:
    """A process's CPU time at one instant: in all (exited threads included) and per live thread."""

    wall: float
    total: float
    threads: dict[int, float] = field(default_factory=dict)


def sample_cpu(pid: int) -> CpuSample:
    """The CPU seconds process ``pid`` and each of its threads have used so far."""
    wall = time.perf_counter()
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        raise RuntimeError(f"process {pid} is gone: cannot read /proc/{pid}/stat")
    threads: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        task = _read(f"/proc/{pid}/task/{tid}/stat")
        if task is not None:
            threads[int(tid)] = parse_stat(task)
    return CpuSample(wall, parse_stat(text), threads)


def thread_names(pid: int) -> dict[int, str]:
    """Thread id -> name: Python thread names from ``py-spy dump`` (3.11 does not give them to the
    OS), other threads by their /proc comm; the main thread (the event loop's) is "loop"."""
    names: dict[int, str] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        comm = _read(f"/proc/{pid}/task/{tid}/comm")
        names[int(tid)] = (comm or "?").strip()
    try:
        out = subprocess.run(
            [py_spy(), "dump", "--nonblocking", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""  # no py-spy, or not permitted to attach: the comm names stay
    for tid, name in re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', out, flags=re.MULTILINE):
        names[int(tid)] = name
    names[pid] = "loop"
    return names


def cpu_window(before: CpuSample, after: CpuSample, names: dict[int, str]) -> Result:
    """CPU seconds between two samples: in all, per thread name (threads of one name summed), and
    the utilisation (CPU seconds per wall second: 1.0 is one core busy all the time)."""
    wall = after.wall - before.wall
    per_name: dict[str, float] = {}
    for tid, used in after.threads.items():
        name = names.get(tid, f"thread-{tid}")
        per_name[name] = per_name.get(name, 0.0) + used - before.threads.get(tid, 0.0)
    cpu = after.total - before.total
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "utilisation": cpu / wall if wall > 0 else 0.0,
        "threads_cpu_s": dict(sorted(per_name.items(), key=lambda kv: -kv[1])),
    }


def per_job(window: Result, jobs: int) -> Result:
    """The window's CPU as microseconds per job: in all and per thread name."""
    if jobs <= 0:
        return {"cpu_us_per_job": None, "threads_cpu_us_per_job": {}}
    return {
        "cpu_us_per_job": window["cpu_s"] * 1e6 / jobs,
        "threads_cpu_us_per_job": {k: v * 1e6 / jobs for k, v in window["threads_cpu_s"].items()},
    }


# -- the server's flush figures from /metrics -----------------------------------------------------------

#: The /metrics series read around each window: (result key, Prometheus sample name).
FLUSH_SERIES = (
    ("rounds", "spitfire_fsync_batch_records_count"),
    ("records", "spitfire_fsync_batch_records_sum"),
    ("fsync_s", "spitfire_fsync_seconds_sum"),
)


def scrape_flush(http_port: int) -> dict[str, float]:
    """The flusher's cumulative rounds, records and seconds in fdatasync (empty when unavailable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for key, series in FLUSH_SERIES:
        m = re.search(rf"^{series}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, flags=re.MULTILINE)
        if m:
            values[key] = float(m.group(1))
    return values


def flush_window(before: dict[str, float], after: dict[str, float], wall: float) -> Result:
    """Flush rounds in the window: how many, records per round, share of the wall time in fdatasync."""
    if not all(k in before and k in after for k, _ in FLUSH_SERIES):
        return {}
    rounds = after["rounds"] - before["rounds"]
    records = after["records"] - before["records"]
    fsync_s = after["fsync_s"] - before["fsync_s"]
    return {
        "flush_rounds": rounds,
        "flush_rounds_per_s": rounds / wall if wall > 0 else 0.0,
        "records_per_round": records / rounds if rounds else None,
        "fsync_busy": fsync_s / wall if wall > 0 else 0.0,
        "fsync_mean_ms": fsync_s * 1e3 / rounds if rounds else None,
    }


# -- child processes: producers (Spitfire or bare frames) and the bare echo server ----------------------


def request_sizes() -> tuple[int, int]:
    """Body bytes of a real ENQUEUE of the benchmark payload, and of its ENQUEUED answer."""
    from spitfire.protocol.messages import Enqueue, Enqueued

    body = msgspec.msgpack.encode(payload(12345678))
    request = msgspec.msgpack.encode(Enqueue(queue="bench", name="noop", payload=body))
    answer = msgspec.msgpack.encode(Enqueued(job_id="0" * 26, created=True, state="enqueued"))
    return len(request), len(answer)


_HEADER = struct.Struct(">IBI")


class _EchoClient(asyncio.Protocol):
    """A bare pipelining client: frames written once per loop iteration (as the SDK's connection
    does), answers matched to their futures by request id."""

    def __init__(self, loop: asyncio.AbstractEventLoop, body: bytes) -> None:
        self._loop = loop
        self._body = body
        self._transport: Any = None
        self._out: list[bytes] = []
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._buffer = b""
        self._next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # uvloop's transports are not asyncio.Transport instances
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self) -> asyncio.Future[None]:
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiting[self._next_id] = future
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(_HEADER.pack(len(self._body) + 5, 1, self._next_id) + self._body)
        return future

    def _flush(self) -> None:
        if self._transport is not None and self._out:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        pos, end = 0, len(buf)
        while end - pos >= _HEADER.size:
            length, _, request_id = _HEADER.unpack_from(buf, pos)
            if pos + 4 + length > end:
                break
            pos += 4 + length
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(None)
        self._buffer = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("echo server closed the connection"))


class _EchoServer(asyncio.Protocol):
    """The bare server: for each whole frame received, an answer of ``answer`` bytes with the same
    request id; the answers of one read leave in one write (as a Spitfire session batches them)."""

    def __init__(self, answer_body: bytes) -> None:
        self._answer_body = answer_body
        self._transport: Any = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        pos, end = 0, len(buf)
        out: list[bytes] = []
        body = self._answer_body
        while end - pos >= _HEADER.size:
            length, _, request_id = _HEADER.unpack_from(buf, pos)
            if pos + 4 + length > end:
                break
            pos += 4 + length
            out.append(_HEADER.pack(len(body) + 5, 2, request_id) + body)
        self._buffer = buf[pos:]
        if out:
            self._transport.write(b"".join(out))


async def echo_serve(port: int) -> None:
    """Serve `_EchoServer` on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    answer = b"\x00" * request_sizes()[1]
    server = await loop.create_server(lambda: _EchoServer(answer), "127.0.0.1", port, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


async def _wait_go() -> None:
    """Say "ready" on stdout, then wait for the parent's "go" line on stdin (its CPU sample is taken)."""
    print("ready", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit("the parent closed stdin before saying go")


async def produce(url: str, cfg: Result) -> Result:
    """One producer: connect, say ready, wait for go, then load the server for ``seconds``.

    ``mode`` is ``enqueue`` (single-job enqueues, ``inflight`` at once), ``batch`` (``batch`` jobs
    per request, ``inflight`` requests at once) or ``echo`` (bare frames to the echo server).
    """
    import spitfire
    from perf.workloads import enqueue_batches, enqueue_closed

    mode, seconds, inflight = str(cfg["mode"]), float(cfg["seconds"]), int(cfg["inflight"])
    jobs = int(cfg.get("jobs", MAX_JOBS))
    queue = str(cfg.get("queue", "bench"))
    if mode == "echo":
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        loop = asyncio.get_running_loop()
        body = b"\x00" * request_sizes()[0]
        _, proto = await loop.create_connection(lambda: _EchoClient(loop, body), host, int(port))
        await proto.request()
        await _wait_go()
        deadline = time.monotonic() + seconds
        done = 0

        async def one() -> None:
            nonlocal done
            while done < jobs and time.monotonic() < deadline:
                await proto.request()
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(inflight)))
        elapsed = time.perf_counter() - start
        return {"jobs": done, "requests": done, "seconds": elapsed, "jobs_per_s": done / elapsed}
    async with spitfire.AsyncClient(url) as client:
        await client.ping()
        await _wait_go()
        deadline = time.monotonic() + seconds
        if mode == "enqueue":
            result = await enqueue_closed(client, jobs, inflight, lambda i: (queue, payload(i), {}), deadline)
            result["requests"] = result["jobs"]
        elif mode == "batch":
            size = int(cfg["batch"])
            result = await enqueue_batches(client, queue, jobs, size, inflight, deadline)
            result["requests"] = result["jobs"] // size
        else:
            raise ValueError(f"unknown producer mode {mode!r}: enqueue, batch or echo")
    return result


def python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", "perf.ceiling", *args]


@contextmanager
def children(cmds: Sequence[list[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """Start processes (stdin and stdout piped, text), stop every one of them by PID on exit."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for cmd in cmds:
            procs.append(
                subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        yield procs
    finally:
        for proc in procs:
            _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, wait, SIGKILL what does not exit (`stop_process` for text-mode processes)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(procs: Sequence[subprocess.Popen[str]], timeout: float = READY_TIMEOUT) -> None:
    """Wait until every process printed its "ready" line (raises if one exits or stays silent)."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise RuntimeError(f"child process {proc.pid} did not get ready (exit code {proc.poll()})")


def say_go(procs: Sequence[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def collect(procs: Sequence[subprocess.Popen[str]], timeout: float) -> list[Result]:
    """Each process's result line (the last JSON line of its stdout)."""
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"producer process {proc.pid} failed with exit code {proc.returncode}")
        results.append(json.loads(next(ln for ln in reversed(out.splitlines()) if ln.startswith("{"))))
    return results


def load_window(pid: int, url: str, opts: Options, mode: str, http_port: int | None = None) -> Result:
    """``opts.producers`` producer processes load the process ``pid`` serves for ``opts.seconds``:
    its CPU window, the jobs / requests the producers got answered and, given the server's
    ``http_port``, its flush figures over the window."""
    queue = "bench"
    inflight = opts.batch_inflight if mode == "batch" else opts.inflight
    cfg = {"mode": mode, "seconds": opts.seconds, "inflight": inflight, "batch": opts.batch, "queue": queue,
           "jobs": MAX_JOBS if mode == "echo" else MAX_PENDING // opts.producers}  # fmt: skip
    cmds = [python_m("produce", url, json.dumps(cfg)) for _ in range(opts.producers)]
    with children(cmds) as procs:
        wait_ready(procs)
        flush_before = scrape_flush(http_port) if http_port else {}
        before = sample_cpu(pid)
        say_go(procs)
        results = collect(procs, timeout=opts.seconds + READY_TIMEOUT)
        after = sample_cpu(pid)
        flush_after = scrape_flush(http_port) if http_port else {}
    window = cpu_window(before, after, thread_names(pid))
    jobs = sum(int(r["jobs"]) for r in results)
    requests = sum(int(r["requests"]) for r in results)
    wall = window["wall_s"]
    p99 = [float(r["p99_ms"]) for r in results if "p99_ms" in r]
    return {
        **window,
        **per_job(window, jobs),
        "jobs": jobs,
        "requests": requests,
        "jobs_per_s": jobs / wall,
        "requests_per_s": requests / wall,
        "cpu_us_per_request": window["cpu_s"] * 1e6 / requests if requests else None,
        "p99_ms_worst_producer": max(p99) if p99 else None,
        **flush_window(flush_before, flush_after, wall),
    }


# -- Spitfire windows ------------------------------------------------------------------------------------


@dataclass
class Options:
    """One run's bounds (see `parse` for each flag)."""

    seconds: float = 3.0
    repeat: int = 3
    producers: int = 3
    inflight: int = 64
    batch: int = 100
    batch_inflight: int = 4
    drain_jobs: int = 100_000
    workers: int = 2
    concurrency: int = 256
    fsync_seconds: float = 1.0
    groups: tuple[int, ...] = (1, 8, 64, 512)
    profile: bool = True
    profile_seconds: float = 6.0
    pin: bool = True
    flamegraphs: Path = FLAMEGRAPHS


@contextmanager
def spitfire_server(cpus: set[int] | None) -> Iterator[tuple[ServerProcess, int]]:
    """A group-durability server without QUIC or snapshots (see the module docstring), and its HTTP
    port (for /metrics)."""
    http_port = free_port()
    extra = ["--http", f"127.0.0.1:{http_port}", "--snapshot-every", "0"]
    with ServerProcess("group", quic=False, extra=extra, cpus=cpus) as server:
        yield server, http_port


def spitfire_window(workload: str, opts: Options, cpus: set[int] | None, spy_name: str | None) -> Result:
    """One window of ``workload`` against a fresh server; py-spy records it when ``spy_name`` is
    given (flamegraphs/<spy_name>.svg and .txt), from the start of the load (after a drain's fill)."""
    spies: list[subprocess.Popen[bytes]] = []
    with spitfire_server(cpus) as (server, http_port):
        assert server.proc is not None
        pid, url = server.proc.pid, server.url("tcp")
        run_tuned(lambda: _touch_queue(url))  # its log and the flusher exist before the window

        def profile() -> None:
            if spy_name:
                spies.extend(attach_spies(pid, opts.flamegraphs, spy_name))

        try:
            if workload == "drain":
                return drain_window(pid, url, opts, http_port, profile)
            profile()
            return load_window(pid, url, opts, workload, http_port)
        finally:
            detach_spies(spies)


async def _touch_queue(url: str, queue: str = "bench") -> None:
    import spitfire

    async with spitfire.AsyncClient(url) as client:
        await client.enqueue(queue, "noop", payload(0))


def drain_window(pid: int, url: str, opts: Options, http_port: int, filled: Callable[[], None]) -> Result:
    """Fill the queue (batches, untimed), call ``filled``, then time ``opts.workers`` worker
    processes delivering and acking every job: the CPU window from their launch to the last ack,
    and the steady part of it from the first finished job."""
    import spitfire
    from perf.workloads import enqueue_batches, left_in, workers

    queue = "bench"

    async def run() -> Result:
        async with spitfire.AsyncClient(url) as client:
            deadline = time.monotonic() + DRAIN_DEADLINE
            await enqueue_batches(client, queue, opts.drain_jobs, 1000, 4, deadline)
            filled()
            waiting = await left_in(client, [queue])
            flush_before = scrape_flush(http_port)
            before = sample_cpu(pid)
            first: CpuSample | None = None
            first_left = left = waiting
            with workers(url, [queue], opts.workers, opts.concurrency) as procs:
                while left and time.monotonic() < deadline:
                    if any(p.poll() is not None for p in procs):
                        raise RuntimeError("a worker exited before the queue was drained")
                    await asyncio.sleep(DRAIN_POLL_S)
                    left = await left_in(client, [queue])
                    if first is None and left < waiting:
                        first, first_left = sample_cpu(pid), left
                after = sample_cpu(pid)
            flush_after = scrape_flush(http_port)
        names = thread_names(pid)
        window = cpu_window(before, after, names)
        jobs = waiting - left
        steady = cpu_window(first or before, after, names)
        steady_jobs = first_left - left
        return {
            **window,
            **per_job(window, jobs),
            "jobs": jobs,
            "left": left,
            "jobs_per_s": jobs / window["wall_s"],
            "steady_jobs_per_s": steady_jobs / steady["wall_s"] if steady["wall_s"] > 0 else 0.0,
            "steady_utilisation": steady["utilisation"],
            "steady_cpu_us_per_job": steady["cpu_s"] * 1e6 / steady_jobs if steady_jobs > 0 else None,
            **flush_window(flush_before, flush_after, window["wall_s"]),
        }

    result: Result = run_tuned(run)
    return result


# -- py-spy ------------------------------------------------------------------------------------------------


def py_spy() -> str:
    return str(Path(sys.executable).with_name("py-spy"))


def attach_spies(pid: int, directory: Path, name: str) -> list[subprocess.Popen[bytes]]:
    """Two py-spy recorders on ``pid`` (by PID, ``--rate 200 --nonblocking``): the flamegraph SVG
    and the raw collapsed stacks (py-spy writes one format per recording)."""
    directory.mkdir(parents=True, exist_ok=True)
    spies = []
    for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt")):
        cmd = [py_spy(), "record", "--rate", "200", "--nonblocking", "--format", fmt,
               "--pid", str(pid), "-o", str(directory / f"{name}{suffix}")]  # fmt: skip
        spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    # py-spy needs a moment to attach; it says nothing when it has, so give it a bounded moment.
    time.sleep(0.5)
    return spies


def detach_spies(spies: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGINT each recorder (it writes its file then) and wait for it, by PID."""
    for spy in spies:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            stop_process(spy)


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
#: The root frame of every thread py-spy samples except the main one (the event loop's).
THREAD_ROOT = "Thread._bootstrap "
#: Self time of this frame is the event loop's own C code (uvloop: epoll, socket reads and writes,
#: callbacks' dispatch): py-spy without --native charges it to the outermost Python frame of the loop.
LOOP_C_FRAME = "Runner.run (asyncio/runners.py)"
#: The package of frames of generated code (namedtuple and dataclass methods: ``<string>`` files).
GENERATED = "generated"


def _shares(counter: Counter[str], total: int, top: int | None = None) -> list[tuple[str, float]]:
    return [(k, n / total) for k, n in counter.most_common(top)]


def self_time(collapsed: str, top: int = 15) -> Result:
    """What py-spy's collapsed stacks (``frame;frame;... count`` lines) say about self time.

    ``top_self`` and ``packages_self`` cover every thread; ``loop_top_self`` and
    ``loop_packages_self`` only the event-loop (main) thread, whose CPU is most of the server's
    (`LOOP_C_FRAME` there is uvloop's C code). A package is the first component of a frame's file
    (server, protocol, wal, index, asyncio, ...; `GENERATED` for ``<string>`` code).
    ``loop_top_inclusive`` is the loop thread's time under each function (itself and its callees).
    Shares are of the samples counted; line numbers are merged per function. The flusher's
    blocking wait and fdatasync count as samples in the all-threads figures (py-spy --nonblocking
    does not always see them idle), not in the loop's. Stacks that --nonblocking caught truncated
    (no thread root) are counted as the loop's: every other thread's root is `THREAD_ROOT`.
    """
    frames: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    loop_frames: Counter[str] = Counter()
    loop_packages: Counter[str] = Counter()
    loop_inclusive: Counter[str] = Counter()
    total = loop_total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        names = [_frame_name(f) for f in stack.split(";")]
        frame = names[-1]
        file = frame[frame.rindex("(") + 1 : -1]
        package = (
            file.split("/", 1)[0] if "/" in file else GENERATED if file.startswith(("<", "__")) else file
        )
        frames[frame] += n
        packages[package] += n
        total += n
        if not stack.startswith(THREAD_ROOT):
            loop_frames[frame] += n
            loop_packages["uvloop (C)" if frame == LOOP_C_FRAME else package] += n
            loop_inclusive.update(dict.fromkeys(names, n))  # once per stack, however deep the recursion
            loop_total += n
    return {
        "samples": total,
        "top_self": _shares(frames, total, top) if total else [],
        "packages_self": dict(_shares(packages, total)) if total else {},
        "loop_samples": loop_total,
        "loop_top_self": _shares(loop_frames, loop_total, top) if loop_total else [],
        "loop_packages_self": dict(_shares(loop_packages, loop_total)) if loop_total else {},
        "loop_top_inclusive": _shares(loop_inclusive, loop_total, 3 * top) if loop_total else [],
    }


def _frame_name(frame: str) -> str:
    """``func (file:line)`` -> ``func (file)``."""
    m = _FRAME.match(frame)
    return f"{m.group('func')} ({m.group('file')})" if m else f"{frame} (?)"


# -- this machine's physical limits ----------------------------------------------------------------------


def echo_window(opts: Options, cpus: set[int] | None) -> Result:
    """The bare framed round trip: an echo server process (pinned like the Spitfire server) loaded
    by the same producer processes."""
    port = free_port()
    with children([python_m("echo-server", str(port))]) as (server,):
        if cpus:
            os.sched_setaffinity(server.pid, cpus)
        from perf.workloads import wait_port

        wait_port(port)
        return load_window(server.pid, f"tcp://127.0.0.1:{port}", opts, "echo")


def fsync_loop(directory: Path, group: int, seconds: float, max_records: int = 50_000_000) -> Result:
    """Append ``RECORD_BYTES`` records into a preallocated mmap'd file, fdatasync after every
    ``group`` of them and count them acked, for ``seconds``: records/s, fdatasyncs/s, the fdatasync
    latency and the CPU per record of this thread."""
    path = directory / f"fsync-{group}.log"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Preallocated as the WAL's segments are. Zero-filling it instead was measured slower on
        # this VM's ext4 with mmap'd writes (fdatasync p50 0.24 ms against 0.09-0.11 ms, 4,000
        # records, 2 runs; pwrite'd records 0.09 ms either way), so it is not the disk's best case.
        os.posix_fallocate(fd, 0, FSYNC_FILE_BYTES)
        os.fsync(fd)
        with mmap.mmap(fd, FSYNC_FILE_BYTES) as mm:
            record = bytes(range(256))[:RECORD_BYTES]
            last = FSYNC_FILE_BYTES - RECORD_BYTES  # the last offset a whole record fits at
            offset = records = acked = 0
            syncs: list[float] = []
            cpu0, start = time.thread_time(), time.perf_counter()
            end = start + seconds
            while records < max_records:
                for _ in range(group):
                    mm[offset : offset + RECORD_BYTES] = record
                    offset += RECORD_BYTES
                    if offset > last:
                        offset = 0
                records += group
                t0 = time.perf_counter()
                os.fdatasync(fd)
                t1 = time.perf_counter()
                syncs.append(t1 - t0)
                acked += group  # the "ack": the records are durable, their producers may be told
                if t1 >= end:
                    break
            elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    syncs.sort()
    return {
        "group": group,
        "records": acked,
        "seconds": elapsed,
        "records_per_s": acked / elapsed,
        "fdatasyncs_per_s": len(syncs) / elapsed,
        "fdatasync_p50_ms": percentile(syncs, 50) * 1e3,
        "fdatasync_p99_ms": percentile(syncs, 99) * 1e3,
        "cpu_us_per_record": cpu * 1e6 / acked,
        "utilisation": cpu / elapsed,
    }


def fsync_medians(runs: Sequence[Sequence[Result]]) -> list[Result]:
    """Per group size, the median of every figure over ``runs`` (each one `fsync_limits` call)."""
    out = []
    for same_group in zip(*runs, strict=True):
        merged: Result = {"group": same_group[0]["group"], "runs": len(same_group)}
        for key in same_group[0]:
            if key != "group":
                merged[key] = median([float(r[key]) for r in same_group])
        out.append(merged)
    return out


def fsync_limits(groups: Sequence[int], seconds: float, cpus: set[int] | None) -> list[Result]:
    """`fsync_loop` for each group size, on this process pinned to the server's CPUs, in a
    directory on the same file system as the servers' data directories."""
    previous = os.sched_getaffinity(0)
    directory = Path(tempfile.mkdtemp(prefix="spitfire-ceiling-fsync-"))
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        return [fsync_loop(directory, g, seconds) for g in groups]
    finally:
        os.sched_setaffinity(0, previous)
        directory.rmdir()


# -- the run ---------------------------------------------------------------------------------------------


def medians(results: Sequence[Result], key: str) -> tuple[float, list[float]] | None:
    runs = [float(r[key]) for r in results if r.get(key) is not None]
    return (median(runs), runs) if runs else None


def thread_medians(results: Sequence[Result]) -> dict[str, float]:
    """Median CPU us per job of each thread name seen in every run."""
    names = set.intersection(*(set(r["threads_cpu_us_per_job"]) for r in results)) if results else set()
    return {n: median([r["threads_cpu_us_per_job"][n] for r in results]) for n in names}


def figures_of(
    runs: dict[str, list[Result]], fsync: list[Result], profiles: dict[str, Result]
) -> list[Figure]:
    """The table: per workload its rate, CPU per job (in all, loop and flusher threads), utilisation
    and flush figures; the physical limits; and the ratios of the two."""
    figures: list[Figure] = []

    def add(name: str, results: Sequence[Result], key: str, unit: str, scale: float = 1.0) -> None:
        got = medians(results, key)
        if got is not None:
            figures.append(Figure(name, got[0] * scale, unit, runs=[v * scale for v in got[1]]))

    labels = {"enqueue": "single enqueue", "batch": "batch enqueue", "drain": "delivered and acked"}
    for workload, label in labels.items():
        results = runs.get(workload, [])
        if not results:
            continue
        add(f"{label}: jobs/s at saturation", results, "jobs_per_s", "jobs/s")
        add(f"{label}: server CPU per job", results, "cpu_us_per_job", "us")
        cpu = medians(results, "cpu_us_per_job")
        if cpu and cpu[0] > 0:
            figures.append(
                Figure(f"{label}: one server core's ceiling (1 / CPU per job)", 1e6 / cpu[0], "jobs/s")
            )
        for thread, value in sorted(thread_medians(results).items(), key=lambda kv: -kv[1])[:3]:
            if value > 0:
                figures.append(Figure(f"{label}: server CPU per job, {thread} thread", value, "us"))
        add(f"{label}: server CPU utilisation", results, "utilisation", "%", 100.0)
        if workload == "drain":
            add(f"{label}: jobs/s after the first ack", results, "steady_jobs_per_s", "jobs/s")
            add(
                f"{label}: server CPU utilisation after the first ack",
                results,
                "steady_utilisation",
                "%",
                100,
            )
            add(f"{label}: server CPU per job after the first ack", results, "steady_cpu_us_per_job", "us")
        add(f"{label}: records per flush round", results, "records_per_round", "records")
        add(f"{label}: flusher time in fdatasync", results, "fsync_busy", "%", 100.0)
    echo = runs.get("echo", [])
    add("bare framed round trip: requests/s", echo, "requests_per_s", "req/s")
    add("bare framed round trip: server CPU per request", echo, "cpu_us_per_request", "us")
    add("bare framed round trip: server CPU utilisation", echo, "utilisation", "%", 100.0)
    for r in fsync:
        g = r["group"]
        figures.append(Figure(f"bare fsync loop, {g}/fdatasync: records/s", r["records_per_s"], "records/s"))
        figures.append(Figure(f"bare fsync loop, {g}/fdatasync: fdatasync p99", r["fdatasync_p99_ms"], "ms"))
        figures.append(
            Figure(f"bare fsync loop, {g}/fdatasync: CPU per record", r["cpu_us_per_record"], "us")
        )
    figures.extend(ratios(runs, fsync))
    for workload, prof in profiles.items():
        for frame, share in prof.get("loop_top_self", [])[:3]:
            figures.append(Figure(f"profile {workload}, loop thread: self {frame}", share * 100, "%"))
    return figures


def ratios(runs: dict[str, list[Result]], fsync: list[Result]) -> list[Figure]:
    """Spitfire against the physical limits: its CPU per job as a multiple of a bare round trip's
    (and so its one-core ceiling as a share of a bare server's), and single enqueues/s (achieved, and
    its one-core ceiling) as a share of the fsync-bound records/s at the group size it achieved."""
    out: list[Figure] = []
    echo_cpu = medians(runs.get("echo", []), "cpu_us_per_request")
    labels = {"enqueue": "single enqueue", "batch": "batch enqueue", "drain": "delivered and acked"}
    for workload, label in labels.items():
        results = runs.get(workload, [])
        cpu = medians(results, "cpu_us_per_job")
        if cpu and echo_cpu and echo_cpu[0] > 0:
            out.append(Figure(f"{label}: server CPU per job / bare round trip", cpu[0] / echo_cpu[0], "x"))
        # One single enqueue is one WAL record; a batch is one record of many jobs and a delivered job
        # several records, so only here are jobs/s and the bare loop's records/s the same unit.
        if workload != "enqueue" or not cpu:
            continue
        rate = medians(results, "jobs_per_s")
        group = medians(results, "records_per_round")
        bound = fsync_bound(fsync, group[0]) if group else None
        if rate and bound:
            out.append(
                Figure(
                    f"{label}: jobs/s / fsync-bound records/s at its group size", 100 * rate[0] / bound, "%"
                )
            )
            out.append(
                Figure(
                    f"{label}: one core's ceiling / fsync-bound records/s", 100 * 1e6 / cpu[0] / bound, "%"
                )
            )
    return out


def fsync_bound(fsync: Sequence[Result], group: float) -> float | None:
    """Records/s of the bare fsync loop at group size ``group``: the measured size nearest below it
    (a lower bound: larger groups only go faster)."""
    below = [r for r in fsync if r["group"] <= max(1.0, group)]
    return max(below, key=lambda r: r["group"])["records_per_s"] if below else None


def run(opts: Options, argv: Sequence[str]) -> Path:
    """Every window (repeats interleaved, so drift hits all alike), the profiles, the limits; the table
    and the JSON file. Returns the JSON's path."""
    cpus = split_cpus() if opts.pin else None
    client_cpus, server_cpus = cpus or (None, None)
    previous = os.sched_getaffinity(0)
    runs: dict[str, list[Result]] = {w: [] for w in (*WORKLOADS, "echo")}
    profiles: dict[str, Result] = {}
    try:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)  # producers, workers and py-spy inherit it
        for i in range(opts.repeat):
            for workload in WORKLOADS:
                print(f"  ceiling {workload} run {i + 1}/{opts.repeat} ...", file=sys.stderr, flush=True)
                runs[workload].append(spitfire_window(workload, opts, server_cpus, None))
            print(f"  ceiling bare round trips run {i + 1}/{opts.repeat} ...", file=sys.stderr, flush=True)
            runs["echo"].append(echo_window(opts, server_cpus))
        # Longer windows (and drains) under py-spy: at 200 samples/s, 3 s leave the 1-2% frames noise.
        scale = opts.profile_seconds / opts.seconds
        jobs = min(MAX_PENDING, round(opts.drain_jobs * scale))
        profiling = dataclasses.replace(opts, seconds=opts.profile_seconds, drain_jobs=jobs)
        if opts.profile:
            for workload in WORKLOADS:
                name = f"ceiling-{workload}-server"
                print(f"  ceiling {workload} under py-spy ...", file=sys.stderr, flush=True)
                result = spitfire_window(workload, profiling, server_cpus, name)
                raw = opts.flamegraphs / f"{name}.txt"
                profiles[workload] = {
                    "flamegraph": f"{name}.svg",
                    "collapsed": raw.name,
                    "window": result,
                    **(self_time(raw.read_text()) if raw.exists() else {"samples": 0}),
                }
    finally:
        os.sched_setaffinity(0, previous)
    groups = list(opts.groups)
    achieved = medians(runs["enqueue"], "records_per_round")
    if achieved and int(achieved[0]) not in groups and achieved[0] >= 2:
        # The bare loop at the group size Spitfire reached (rounded down: `fsync_bound` takes the
        # measured size nearest below).
        groups.append(int(achieved[0]))
    fsync_runs = []
    for i in range(opts.repeat):  # the disk is shared too: medians of as many runs as the rest
        print(f"  ceiling bare fsync loop run {i + 1}/{opts.repeat} ...", file=sys.stderr, flush=True)
        fsync_runs.append(fsync_limits(sorted(groups), opts.fsync_seconds, server_cpus))
    fsync = fsync_medians(fsync_runs)
    figures = figures_of(runs, fsync, profiles)
    print_table(figures)
    config = {
        "command": shlex.join(["python", "-m", "perf", "ceiling", *argv]),
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "pinned": {"client": sorted(cpus[0]), "server": sorted(cpus[1])} if cpus else None,
        "durability": "group",
        "request_body_bytes": request_sizes()[0],
        "answer_body_bytes": request_sizes()[1],
        "record_bytes": RECORD_BYTES,
        "profile_command": "py-spy record --rate 200 --nonblocking --format flamegraph|raw --pid SERVER_PID",
        "raw": runs,
        "fsync": fsync,
        "fsync_raw": fsync_runs,
        "profiles": profiles,
    }
    path = write_json("ceiling", config, figures)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def parse(argv: Sequence[str]) -> Options:
    """The flags of ``python -m perf ceiling``; ``--quick`` shrinks every bound for a smoke run."""
    d = Options()
    p = argparse.ArgumentParser(prog="python -m perf ceiling", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seconds", type=float, help=f"length of each load window (default {d.seconds:g})")
    p.add_argument("--repeat", type=int, help=f"runs of each window; medians reported (default {d.repeat})")
    p.add_argument("--producers", type=int, default=d.producers, help="producer processes (default 3)")
    p.add_argument("--inflight", type=int, default=d.inflight, help="single enqueues per producer (64)")
    p.add_argument("--batch", type=int, default=d.batch, help="jobs per batch request (default 100)")
    p.add_argument("--batch-inflight", type=int, default=d.batch_inflight, help="batches per producer (4)")
    p.add_argument("--drain-jobs", type=int, help=f"jobs of each drain (default {d.drain_jobs:,})")
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes of the drain (2)")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="jobs per worker at once (256)")
    p.add_argument("--fsync-seconds", type=float, help="length of each bare fsync loop (default 1)")
    p.add_argument(
        "--groups", help="records per fdatasync of the bare fsync loops, comma-separated (default 1,8,64,512)"
    )
    p.add_argument("--quick", action="store_true", help="1 s windows, one run, small drains")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy windows")
    p.add_argument("--profile-seconds", type=float, help="length of each py-spy window (default 6)")
    p.add_argument("--no-pin", action="store_true", help="let the load share CPUs with the server")
    p.add_argument("--flamegraphs", type=Path, default=FLAMEGRAPHS, help="where the profiles go")
    a = p.parse_args(argv)
    quick = {"seconds": 1.0, "repeat": 1, "drain_jobs": 10_000, "fsync_seconds": 0.3, "profile_seconds": 1.0}
    pick: dict[str, Any] = {
        k: getattr(a, k) if getattr(a, k) is not None else (quick[k] if a.quick else getattr(d, k))
        for k in quick
    }
    groups = tuple(int(g) for g in a.groups.split(",")) if a.groups else d.groups
    if any(g < 1 for g in groups) or pick["repeat"] < 1 or a.producers < 1:
        p.error("--groups, --repeat and --producers must be 1 or more")
    return Options(
        seconds=float(pick["seconds"]),
        repeat=int(pick["repeat"]),
        producers=a.producers,
        inflight=a.inflight,
        batch=a.batch,
        batch_inflight=a.batch_inflight,
        drain_jobs=int(pick["drain_jobs"]),
        workers=a.workers,
        concurrency=a.concurrency,
        fsync_seconds=float(pick["fsync_seconds"]),
        groups=groups,
        profile=not a.no_profile,
        profile_seconds=float(pick["profile_seconds"]),
        pin=not a.no_pin,
        flamegraphs=a.flamegraphs,
    )


def main(argv: Sequence[str]) -> int:
    """``python -m perf ceiling [flags]``; also the child processes' entry points (see the docstring)."""
    if argv[:1] == ["produce"] and len(argv) == 3:
        print(json.dumps(run_tuned(lambda: produce(argv[1], json.loads(argv[2])))), flush=True)
        return 0
    if argv[:1] == ["echo-server"] and len(argv) == 2:
        run_tuned(lambda: echo_serve(int(argv[1])))
        return 0
    run(parse(argv), argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
