"""HTTP enqueue benchmark: single jobs and the :batch route, from a load generator in its own process.

    .venv/bin/python -m perf.http_bench [--url http://127.0.0.1:7880] [--jobs 50000] [--rounds 3]
                                         [--connections 32] [--depth 4] [--batch-size 1000]

Without --url it starts its own spitfire-server (temporary data dir, group durability, stopped by
PID at the end). The client is raw asyncio (uvloop) HTTP/1.1 with keep-alive: ``--connections``
connections, each with ``--depth`` requests pipelined, so that the client costs a few microseconds
per request and the server is what is measured. Prints a table and writes perf/results/http-*.json.
Targets: single enqueue >= 5,000 jobs/s; the :batch route >= 50,000 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import uvloop

from perf.report import Figure, print_table, write_json
from perf.server_proc import ServerProcess, free_port

SINGLE_TARGET = 5_000
BATCH_TARGET = 50_000


def request_bytes(host: str, path: str, body: bytes) -> bytes:
    """One keep-alive POST with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection(asyncio.Protocol):
    """Sends requests ``depth`` at a time and counts the answers by status."""

    def __init__(self, request: bytes, count: int, depth: int, done: asyncio.Future[None]) -> None:
        self.request = request
        self.left_to_send = count
        self.left_to_read = count
        self.depth = depth
        self.done = done
        self.buffer = b""
        self.statuses: dict[int, int] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport
        self._send(min(self.depth, self.left_to_send))

    def _send(self, n: int) -> None:
        if n > 0 and self.transport is not None:
            self.left_to_send -= n
            self.transport.write(self.request * n)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answered = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = (
                int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
                if at >= 0
                else 0
            )
            if len(self.buffer) < end + 4 + length:
                break
            status = int(head[9:12])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.buffer = self.buffer[end + 4 + length :]
            answered += 1
        self.left_to_read -= answered
        self._send(min(answered, self.left_to_send))
        if self.left_to_read <= 0 and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))


async def blast(
    url: str, path: str, body: bytes, requests: int, connections: int, depth: int
) -> tuple[float, dict[int, int]]:
    """Send ``requests`` POSTs over ``connections`` keep-alive connections; returns (seconds, statuses)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_bytes(f"{host}:{port}", path, body)
    loop = asyncio.get_running_loop()
    per = [requests // connections + (1 if i < requests % connections else 0) for i in range(connections)]
    protocols: list[Connection] = []
    waits: list[asyncio.Future[None]] = []
    started = time.perf_counter()
    for count in per:
        if count == 0:
            continue
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            lambda c=count, d=done: Connection(request, c, depth, d), host, port
        )
        protocols.append(proto)
        waits.append(done)
    await asyncio.gather(*waits)
    elapsed = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for proto in protocols:
        for status, n in proto.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
        if proto.transport is not None:
            proto.transport.close()
    return elapsed, statuses


def measure(url: str, args: argparse.Namespace) -> list[Figure]:
    """The single and batch figures, each the median of ``args.rounds`` rounds."""
    single_body = json.dumps({"name": "noop", "payload": {"to": "user@example.com", "n": 1}}).encode()
    batch_body = json.dumps(
        {"name": "noop", "payloads": [{"to": "user@example.com", "n": i} for i in range(args.batch_size)]}
    ).encode()
    figures = []
    for name, path, body, per_request, requests, target in (
        ("HTTP single enqueue", "/api/queues/bench/jobs", single_body, 1, args.jobs, SINGLE_TARGET),
        (
            "HTTP :batch enqueue",
            "/api/queues/bench-batch/jobs:batch",
            batch_body,
            args.batch_size,
            max(1, args.jobs * 4 // args.batch_size),
            BATCH_TARGET,
        ),
    ):
        runs = []
        for _ in range(args.rounds):
            elapsed, statuses = uvloop.run(blast(url, path, body, requests, args.connections, args.depth))
            if set(statuses) != {201}:
                raise RuntimeError(f"{name}: unexpected answers {statuses}")
            runs.append(requests * per_request / elapsed)
        value = statistics.median(runs)
        figures.append(
            Figure(
                name,
                value,
                "jobs/s",
                f">= {target:,}",
                value >= target,
                runs,
                f"{requests} requests x {per_request} jobs, "
                f"{args.connections} connections, depth {args.depth}",
            )
        )
    return figures


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m perf.http_bench", description=__doc__.split("\n")[0])
    p.add_argument("--url", default=None, help="a running server's --http URL (default: start one)")
    p.add_argument("--jobs", type=int, default=50_000, help="single-enqueue requests per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--depth", type=int, default=4, help="requests pipelined per connection")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--durability", default="group", choices=["group", "sync", "async"])
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    config = {k: v for k, v in vars(args).items()}
    if args.url is not None:
        figures = measure(args.url, args)
    else:
        port = free_port()
        extra = ["--http", f"127.0.0.1:{port}", "--max-queue-jobs", "100000000", "--max-jobs", "100000000"]
        with ServerProcess(args.durability, quic=False, extra=extra):
            time.sleep(0.5)  # the HTTP listener starts right after the binary one
            figures = measure(f"http://127.0.0.1:{port}", args)
    print_table(figures)
    print(f"results: {write_json('http', config, figures)}")
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
