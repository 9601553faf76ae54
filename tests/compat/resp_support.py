"""Helpers of the RESP tests: a real spitfire-server with ``--redis`` on free loopback ports, and a raw
RESP client for what well-behaved clients never send."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from protoclient import ServerProcess

_REDIS = re.compile(r"redis://127\.0\.0\.1:(\d+)")
#: Generous: two cores are shared with other test runs.
WAIT = 30.0


def redis_port(server: ServerProcess) -> int:
    """The RESP port a server printed in its banner."""
    match = _REDIS.search(server.banner)
    assert match, server.banner
    return int(match.group(1))


@contextlib.contextmanager
def resp_server(data_dir: Path, *args: str) -> Iterator[ServerProcess]:
    """A started server with ``--redis 127.0.0.1:0`` (and ``args``), killed on exit."""
    server = ServerProcess(data_dir, "--redis", "127.0.0.1:0", *args)
    try:
        yield server.start()
    finally:
        server.kill()


def command(*args: bytes | str) -> bytes:
    """One request as clients send it."""
    return bytes(hiredis.pack_command(tuple(args)))


class RawClient:
    """A blocking RESP connection that sends any bytes and reads replies with hiredis."""

    def __init__(self, port: int, timeout: float = WAIT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = hiredis.Reader()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> object:
        """The next reply; raises EOFError when the server closed the connection first."""
        while True:
            value = self.reader.gets()
            if value is not False:
                return value
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.reader.feed(data)

    def call(self, *args: bytes | str) -> object:
        self.send(command(*args))
        return self.reply()

    def closed_by_server(self) -> bool:
        """True once the server has closed the connection (reads what is left; bounded by the timeout)."""
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redis_cli(port: int, *args: str, token: str | None = None) -> str:
    """``redis-cli`` (Debian's redis-tools) with ``args``, in its human format; its stdout."""
    binary = shutil.which("redis-cli")
    if binary is None:
        pytest.skip("redis-cli is not installed (Debian package redis-tools; .ci/run installs it)")
    cmd = [binary, "-h", "127.0.0.1", "-p", str(port), "--no-raw"]
    if token is not None:
        cmd += ["-a", token, "--no-auth-warning"]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_for(predicate: object, what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate()`` (every 20 ms, bounded by ``timeout``) until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
