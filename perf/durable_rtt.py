"""python -m perf durable-rtt: the fastest a durable answer can come back over loopback on this machine.

    python -m perf durable-rtt [--seconds 3] [--repeat 3] [--threads 1,8] [--no-pin]

The bound under the rows "sync `Client`, one call at a time" and "shared by 8 threads" of
`perf peers`: every one of those calls waits for its own request to be made durable and answered.
A bare server process answers fixed-size frames (an ENQUEUE's size, answered with an ENQUEUED's)
the way a single-threaded server with its fsync on the loop does (redis ``appendfsync always``):
one pass reads every request already arrived on every connection, appends a ~152-byte record per
request into an mmap'd, preallocated file (as Spitfire's log does), runs ONE fdatasync, then
writes the answers. No parsing, no index, no thread hand-off: what is left is the loopback round
trip, the wake-ups and the fdatasync. Clients are ``--threads`` threads of this process, each with
a blocking socket of its own, one request in flight each (as 8 Flask threads with a connection
each would be). Pinned like the other latency cases (`split_cpus`): clients on one half of the
CPUs, the server on the other.

Reported per thread count: calls/s, p50/p99 of one call, and answers per fdatasync. Results:
perf/results/durable-rtt-<timestamp>.json. Also run as ``python -m perf.durable_rtt serve PORT
REQUEST ANSWER DIR`` for its own server process.
"""

from __future__ import annotations

import argparse
import mmap
import os
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perf.report import Figure, median, percentile, print_table, write_json
from perf.server_proc import free_port, split_cpus

#: Bytes of one record: about a WAL enqueue record of the benchmark's ~100-byte payload.
RECORD_BYTES = 152
#: The record file: preallocated (``posix_fallocate``, as the WAL's segments); appends wrap around.
FILE_BYTES = 16 * 2**20
#: Calls one client thread makes at most in a window (the window's seconds bound it first).
MAX_CALLS = 2_000_000
#: Seconds the server process gets to say it is ready.
READY_TIMEOUT = 30.0

Result = dict[str, Any]


# -- the server process ---------------------------------------------------------------------------------


def serve(port: int, request: int, answer: int, directory: Path) -> None:
    """Serve until stdin closes: per pass, read all, append a record per whole request, one
    fdatasync, then answer each request. Prints ``ready`` once listening, and at the end one line:
    passes and answers (their ratio is the answers per fdatasync)."""
    path = directory / "durable-rtt.log"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.posix_fallocate(fd, 0, FILE_BYTES)
    os.fsync(fd)
    mm = mmap.mmap(fd, FILE_BYTES)
    record = bytes(range(256))[:RECORD_BYTES]
    reply = b"a" * answer
    listener = socket.create_server(("127.0.0.1", port))
    listener.setblocking(False)
    conns: dict[int, tuple[socket.socket, bytearray]] = {}
    poll = select.epoll()
    poll.register(listener.fileno(), select.EPOLLIN)
    poll.register(sys.stdin.fileno(), select.EPOLLIN)
    print("ready", flush=True)
    offset = passes = answers = 0
    last = FILE_BYTES - RECORD_BYTES
    try:
        while True:
            owed: list[tuple[socket.socket, int]] = []
            for fileno, _ in poll.poll():
                if fileno == listener.fileno():
                    sock, _addr = listener.accept()
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.setblocking(False)
                    conns[sock.fileno()] = (sock, bytearray())
                    poll.register(sock.fileno(), select.EPOLLIN)
                    continue
                if fileno == sys.stdin.fileno():
                    return
                sock, buf = conns[fileno]
                data = sock.recv(65536)
                if not data:
                    poll.unregister(fileno)
                    del conns[fileno]
                    sock.close()
                    continue
                buf += data
                whole = len(buf) // request
                if whole:
                    del buf[: whole * request]
                    for _ in range(whole):
                        mm[offset : offset + RECORD_BYTES] = record
                        offset = 0 if offset + RECORD_BYTES > last else offset + RECORD_BYTES
                    owed.append((sock, whole))
            if owed:
                os.fdatasync(fd)
                passes += 1
                for sock, n in owed:
                    sock.sendall(reply * n)
                    answers += n
    finally:
        print(f"{passes} {answers}", flush=True)
        mm.close()
        os.close(fd)
        path.unlink(missing_ok=True)


# -- the clients ------------------------------------------------------------------------------------------


def calls(port: int, threads: int, seconds: float, request: int, answer: int) -> Result:
    """``threads`` blocking clients, one call in flight each, for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    frame = b"r" * request

    def client(mine: list[float]) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            clock = time.perf_counter
            barrier.wait()
            end = clock() + seconds
            for _ in range(MAX_CALLS):
                t0 = clock()
                sock.sendall(frame)
                got = 0
                while got < answer:
                    chunk = sock.recv(answer - got)
                    if not chunk:
                        raise ConnectionError("the bare server closed the connection")
                    got += len(chunk)
                t1 = clock()
                mine.append(t1 - t0)
                if t1 >= end:
                    return

    pool = [threading.Thread(target=client, args=(lat,), daemon=True) for lat in latencies]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join(seconds + 30)
    elapsed = time.perf_counter() - start
    every = sorted(x for lat in latencies for x in lat)
    return {
        "threads": threads,
        "calls": len(every),
        "seconds": elapsed,
        "calls_per_s": len(every) / elapsed,
        "p50_ms": percentile(every, 50) * 1e3,
        "p99_ms": percentile(every, 99) * 1e3,
    }


Cpus = tuple[set[int], set[int]] | None


def window(threads: int, seconds: float, sizes: tuple[int, int], cpus: Cpus) -> Result:
    """One window: a fresh bare server process, ``threads`` clients; adds answers per fdatasync."""
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="spitfire-durable-rtt-"))
    cmd = [sys.executable, "-m", "perf.durable_rtt", "serve", str(port), *map(str, sizes), str(directory)]
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    previous = os.sched_getaffinity(0)
    try:
        assert server.stdout is not None and server.stdin is not None
        if cpus:
            os.sched_setaffinity(server.pid, cpus[1])
            os.sched_setaffinity(0, cpus[0])
        ready, _, _ = select.select([server.stdout], [], [], READY_TIMEOUT)
        if not ready or server.stdout.readline().strip() != "ready":
            raise RuntimeError("the bare durable server did not start")
        result = calls(port, threads, seconds, *sizes)
        server.stdin.close()
        passes, answers = (int(x) for x in server.stdout.readline().split())
        server.wait(10)
    finally:
        os.sched_setaffinity(0, previous)
        if server.poll() is None:
            server.kill()
            server.wait()
        for pipe in (server.stdin, server.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()
    return {**result, "answers_per_fdatasync": answers / max(1, passes)}


def measure(thread_counts: Sequence[int], seconds: float, repeat: int, pin: bool) -> dict[int, list[Result]]:
    """Every thread count ``repeat`` times, interleaved."""
    from perf.ceiling import request_sizes

    sizes = request_sizes()
    cpus = split_cpus() if pin else None
    runs: dict[int, list[Result]] = {n: [] for n in thread_counts}
    for i in range(repeat):
        for n in thread_counts:
            print(f"  durable round trip, {n} thread(s), run {i + 1}/{repeat}", file=sys.stderr, flush=True)
            runs[n].append(window(n, seconds, sizes, cpus))
    return runs


def figures_of(runs: dict[int, list[Result]]) -> list[Figure]:
    """Per thread count: calls/s, p50, p99, answers per fdatasync (medians, every run's beside)."""
    out: list[Figure] = []
    for n, results in runs.items():
        label = f"bare durable round trip, {n} thread{'s' if n > 1 else ''}"
        for key, unit, name in (
            ("calls_per_s", "calls/s", "calls/s"),
            ("p50_ms", "ms", "p50"),
            ("p99_ms", "ms", "p99"),
            ("answers_per_fdatasync", "answers", "answers per fdatasync"),
        ):
            values = [float(r[key]) for r in results]
            out.append(Figure(f"{label}: {name}", median(values), unit, runs=values))
    return out


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "serve":
        port, request, answer, directory = argv[1:5]
        serve(int(port), int(request), int(answer), Path(directory))
        return 0
    p = argparse.ArgumentParser(prog="python -m perf durable-rtt", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="length of one window")
    p.add_argument("--repeat", type=int, default=3, help="windows per thread count; medians reported")
    p.add_argument("--threads", default="1,8", help="client thread counts, comma-separated")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="clients share CPUs with the server")
    opts = p.parse_args(argv)
    counts = [int(x) for x in opts.threads.split(",")]
    runs = measure(counts, opts.seconds, opts.repeat, opts.pin)
    figures = figures_of(runs)
    print_table(figures)
    config = {
        "command": shlex.join(["python", "-m", "perf", "durable-rtt", *argv]),
        **vars(opts),
        "record_bytes": RECORD_BYTES,
        "raw": {str(n): r for n, r in runs.items()},
    }
    path = write_json("durable-rtt", config, figures)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
