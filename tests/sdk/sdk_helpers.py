"""Helpers of the SDK tests: real spitfire-server processes on free loopback ports, workers run
in a thread or as `spitfire worker` processes, and polling helpers (no fixed sleeps)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import spitfire

SERVER = [sys.executable, "-m", "spitfire.server.cli"]
CLI = [sys.executable, "-m", "spitfire.cli"]
#: Generous: two cores are shared with other test runs.
WAIT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A spitfire-server child process on a free loopback port and its own data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, *args: str, quic: bool = False) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.args = args if quic else ("--no-quic", *args)
        self.proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"
        #: The --http port (fresh at each start).
        self.http_port = 0

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def quic_url(self) -> str:
        return f"quic://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.http_port = free_port()
        cmd = [*SERVER, "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}",
               "--http", f"127.0.0.1:{self.http_port}", *self.args]  # fmt: skip
        with self.log.open("a") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + WAIT
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stop with" in line:
                # Keep draining stdout so the server never blocks on a full pipe.
                self._drain = threading.Thread(target=self.proc.stdout.read, daemon=True)
                self._drain.start()
                return self
        self.kill()
        pytest.fail(f"spitfire-server did not start: {''.join(lines)}\n{self.log.read_text()}")

    def terminate(self, timeout: float = WAIT) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close_pipe()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(WAIT)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._drain is not None:
            self._drain.join(5)  # EOF once the process is gone
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_state(client: spitfire.Client, job_id: str, *states: str, timeout: float = WAIT) -> spitfire.Job:
    def check() -> spitfire.Job | None:
        job = client.get(job_id)
        return job if job.state in states else None

    return wait_until(check, timeout, f"job {job_id} to be {'/'.join(states)}")  # type: ignore[no-any-return]


@contextlib.contextmanager
def worker_thread(app: spitfire.App, **kwargs: Any) -> Iterator[spitfire.Worker]:
    """A Worker running in a thread (no signal handlers); stopped gracefully on exit."""
    worker = spitfire.Worker(app, handle_signals=False, **kwargs)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    wait_until(lambda: worker.worker_id is not None, what="the worker to subscribe")
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(WAIT + worker.grace)
        assert not thread.is_alive(), "the worker did not stop"
    assert result == [0]


def run_burst(app: spitfire.App, timeout: float = 60.0, **kwargs: Any) -> spitfire.Worker:
    """Run a burst Worker in a thread until it exits on its own (fails after ``timeout``)."""
    worker = spitfire.Worker(app, burst=True, handle_signals=False, **kwargs)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        worker.stop()
        thread.join(WAIT)
        pytest.fail(f"the burst worker did not finish within {timeout} s")
    assert result == [0]
    return worker


class WorkerProcess:
    """``spitfire worker MODULE:app`` as a child process, with the module written to ``directory``."""

    def __init__(self, directory: Path, source: str, *args: str, env: dict[str, str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "jobs_module.py").write_text(textwrap.dedent(source))
        self.log = directory / "worker.log"
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [*CLI, "worker", "jobs_module:app", *args],
                cwd=directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def wait(self, timeout: float = WAIT) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(WAIT)
