"""A live spitfire-server for the HTTP tests: free loopback ports, a temporary data directory, killed
by PID when the test module ends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SERVER = [sys.executable, "-m", "spitfire.server.cli"]
_HTTP = re.compile(r"http:\s+http://127\.0\.0\.1:(\d+)/")
_TCP = re.compile(r"tcp://127\.0\.0\.1:(\d+)")
_COMPAT = re.compile(r"compat http:\s+(http://127\.0\.0\.1:\d+)")


class HttpServer:
    """One spitfire-server process and an HTTP client bound to its --http address."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.tcp_port = 0
        #: The --compat-http listener's URL ("" when the server has none).
        self.compat_url = ""
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.client: httpx.Client | None = None

    def start(self) -> HttpServer:
        cmd = [
            *SERVER, "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
            "--no-quic", *self.args,
        ]  # fmt: skip
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        banner = self._banner()
        http, tcp = _HTTP.search(banner), _TCP.search(banner)
        assert http and tcp, banner
        self.url = f"http://127.0.0.1:{http.group(1)}"
        self.tcp_port = int(tcp.group(1))
        compat = _COMPAT.search(banner)
        self.compat_url = compat.group(1) if compat else ""
        self.client = httpx.Client(base_url=self.url, timeout=30)
        return self

    def _banner(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            lines.append(line)
            if line.startswith("  stop with"):
                return "".join(lines)
        raise RuntimeError("no banner within 60 s")

    @property
    def http(self) -> httpx.Client:
        assert self.client is not None
        return self.client

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; returns the exit code."""
        if self.client is not None:
            self.client.close()
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is not None:
                return proc.returncode
            os.kill(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                return proc.wait(15)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


@contextmanager
def http_server(data_dir: Path, *args: str) -> Iterator[HttpServer]:
    """A started server, stopped (by PID) on exit."""
    server = HttpServer(data_dir, *args)
    try:
        yield server.start()
    finally:
        server.stop()


def enqueue(client: httpx.Client, queue: str, name: str = "job", **fields: object) -> dict[str, object]:
    """Enqueue one job and return it (asserting 201)."""
    r = client.post(f"/api/queues/{queue}/jobs", json={"name": name, **fields})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body
