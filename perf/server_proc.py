"""Start and stop a real spitfire-server (and spitfire workers) for benchmarks, by PID.

Every process started here is stopped here: `ServerProcess` is a context manager that sends SIGTERM,
waits, and SIGKILLs what does not exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

#: Seconds a server gets to print its banner before the benchmark gives up.
START_TIMEOUT = 60.0
#: Seconds a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 30.0


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(client CPUs, server CPUs): the machine's CPUs split in two halves, or None on one CPU.

    Latency cases pin the load generator and the server apart, as they would be on two machines:
    sharing cores, each process's scheduling delays were counted as the other's latency (at 20,000/s
    offered on 2 cores, 15-second runs: p99 13.0 / 10.8 ms unpinned vs 5.1 / 7.1 ms pinned).
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def free_port() -> int:
    """A port free on loopback for both TCP and UDP (QUIC uses the same number)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port for TCP and UDP")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, wait, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class ServerProcess:
    """A spitfire-server on a free loopback port with a temporary data dir."""

    def __init__(
        self,
        durability: str = "group",
        quic: bool = True,
        extra: list[str] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.port = free_port()
        #: The HTTP API's port (``--http``).
        self.http_port = free_port()
        #: CPUs the server process (and so its threads) may run on; None leaves it to the scheduler.
        self.cpus = cpus
        self.data_dir = Path(tempfile.mkdtemp(prefix="spitfire-bench-"))
        self.durability = durability
        self.quic = quic
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, transport: str = "tcp") -> str:
        return f"{transport}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "spitfire.server.cli",
            "--data-dir", str(self.data_dir),
            "--durability", self.durability,
            "--listen", f"127.0.0.1:{self.port}",
            "--http", f"127.0.0.1:{self.http_port}",
            "--log-level", "warning",
        ]  # fmt: skip
        if not self.quic:
            cmd.append("--no-quic")
        return cmd + self.extra

    def start(self, prefix: list[str] | None = None) -> ServerProcess:
        """Start (optionally under ``prefix``, e.g. py-spy) and wait until it accepts connections."""
        with open(self.log_path, "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [*(prefix or []), *self.command()], stdout=log, stderr=subprocess.STDOUT
            )
        if self.cpus:
            os.sched_setaffinity(self.proc.pid, self.cpus)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"spitfire-server exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"spitfire-server did not listen within {START_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def restart(self) -> float:
        """Stop the server (SIGTERM) and start it again on the same data directory; returns the
        seconds from the new process's start until it accepted a connection (recovery included)."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        started = time.perf_counter()
        self.start()
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
