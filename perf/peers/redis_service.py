"""A throwaway redis-server on loopback for the peer comparison, started and stopped by PID.

``RedisServer()`` keeps Redis's defaults (no AOF, RDB snapshots: the non-durable comparison,
against Spitfire's ``async`` mode); ``RedisServer("always")`` runs ``--appendonly yes
--appendfsync always`` (every write fsynced before the reply: the durable comparison, against
Spitfire's ``group`` mode). Standard library only, so it runs in either venv.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from perf.server_proc import free_port, stop_process

#: Seconds redis-server gets to answer PING before we give up.
START_TIMEOUT = 20.0


class RedisUnavailable(RuntimeError):
    """redis-server is not installed (or would not start); the message is the reason to print."""


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server on a free 127.0.0.1 port with a temporary dir; a context manager.

    ``appendfsync="always"`` turns on the AOF with an fsync per write (``durable`` is True); any
    other value leaves Redis's defaults (appendonly no, RDB snapshots) unless ``appendonly=True``,
    which runs the AOF with that fsync policy. ``url`` is ``redis://127.0.0.1:PORT/0``. Exiting
    stops the process by PID (SIGTERM, wait, SIGKILL) and removes the dir. Raises
    `RedisUnavailable` when redis-server is missing or does not answer PING.
    """

    def __init__(
        self, appendfsync: str = "everysec", appendonly: bool | None = None, cpus: set[int] | None = None
    ) -> None:
        self.appendfsync = appendfsync
        self.appendonly = appendfsync == "always" if appendonly is None else appendonly
        #: CPUs redis-server may run on (None: the scheduler decides).
        self.cpus = cpus
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def durable(self) -> bool:
        """True when every acknowledged write was fsynced (appendonly with appendfsync always)."""
        return self.appendonly and self.appendfsync == "always"

    @property
    def config_name(self) -> str:
        """A label for reports: ``redis-defaults`` or ``redis-aof-<appendfsync>``."""
        return f"redis-aof-{self.appendfsync}" if self.appendonly else "redis-defaults"

    @property
    def url(self) -> str:
        """The client URL, ``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The redis-server command line (no config file: defaults plus these flags)."""
        binary = redis_server_binary()
        if binary is None:
            raise RedisUnavailable(
                "redis-server is not installed (apt-get install redis-server, or make perf-peers)"
            )
        assert self.dir is not None
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        if self.appendonly:
            cmd += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        return cmd

    def start(self) -> RedisServer:
        """Start redis-server and wait until it answers PING."""
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="spitfire-peer-redis-"))
        log = open(self.dir / "redis.log", "wb")  # noqa: SIM115 - closed with the process
        try:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        except BaseException:
            log.close()
            self.stop()
            raise
        log.close()
        if self.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, self.cpus)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, text = self.proc.returncode, self.log()
                self.stop()
                raise RedisUnavailable(f"redis-server exited ({code}): {text}")
            if _ping(self.port):
                return self
            time.sleep(0.05)
        text = self.log()
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer PING within {START_TIMEOUT} s: {text}")

    def log(self) -> str:
        """The tail of redis-server's output."""
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-2000:] if self.dir else ""
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop redis-server by PID (SIGTERM, wait, SIGKILL) and remove its dir."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """``python -m perf.peers.redis_service [everysec|always]``: start one, print its URL, and stop
    it (by PID) on Enter or Ctrl-C. For running an adapter by hand in another shell::

        .venv/peers/bin/python -m perf.peers.runner arq drain redis://127.0.0.1:PORT/0 '{"jobs": 2000}'
    """
    appendfsync = argv[0] if argv else "everysec"
    try:
        with RedisServer(appendfsync) as redis:
            pid = redis.proc.pid if redis.proc else None
            print(f"{redis.url}  ({redis.config_name}, pid {pid}); Enter or Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()
    except RedisUnavailable as exc:
        print(f"cannot start redis-server: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
