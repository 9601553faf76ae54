"""A raw protocol client for server tests: `ClientSession` over asyncio TCP, nothing hidden.

Answers are matched to requests by id; pushes (request id 0: DELIVER, CANCEL_JOBS, GOAWAY, and a
closing ERROR) go to a queue that tests await. `ServerProcess` runs a real spitfire-server on a
free loopback port with a temporary data dir and always stops it by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType
from spitfire.protocol.session import ClientSession, ProtocolViolation, Response
from spitfire.protocol.tcp import connect_tcp
from spitfire.protocol.transport import ByteStream

#: Seconds any single wait of a test may take before it fails (generous: the machine is shared).
TIMEOUT = 20.0
#: Longest a whole async test body may run.
TEST_TIMEOUT = 90.0

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a test's async body on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


class ServerError(Exception):
    """The server answered a request with ERROR."""

    def __init__(self, error: m.Error) -> None:
        self.code = error.code
        self.field = error.field
        self.retry_after = error.retry_after
        self.error = error
        super().__init__(f"{error.code}: {error.message} (field={error.field})")


class ProtoClient:
    """One connection. Use `connect`; then `call` for answered requests, `send` for CREDIT/START."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.stream: ByteStream | None = None
        self.pending: dict[int, asyncio.Future[Response]] = {}
        self.pushes: asyncio.Queue[Response] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.welcome: asyncio.Future[m.Welcome] = asyncio.get_running_loop().create_future()
        #: The QUIC connection object, when connected over QUIC (closed with the client).
        self.quic: Any = None

    @classmethod
    async def connect(
        cls,
        port: int,
        token: str | None = None,
        version: int = m.PROTOCOL_VERSION,
        host: str = "127.0.0.1",
        transport: str = "tcp",
    ) -> ProtoClient:
        """Connect and finish the handshake. :raises ProtocolViolation: refused (token, version)."""
        client = cls(ClientSession("protoclient/test", token, version=version))
        if transport == "quic":
            from spitfire.protocol.quic import connect_quic

            client.quic = await connect_quic(host, port, client, verify=False)
        else:
            await connect_tcp(host, port, client)
        await asyncio.wait_for(asyncio.shield(client.welcome), TIMEOUT)
        return client

    # -- StreamHandler ----------------------------------------------------------------------------------

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.session.receive_data(data)
        except ProtocolViolation as exc:
            if not self.welcome.done():
                self.welcome.set_exception(exc)
            return
        if self.session.welcome is not None and not self.welcome.done():
            self.welcome.set_result(self.session.welcome)
        for r in responses:
            fut = self.pending.pop(r.request_id, None) if r.request_id else None
            if fut is not None:
                if not fut.done():
                    fut.set_result(r)
            else:
                self.pushes.put_nowait(r)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError("closed during the handshake"))
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))
        self.pending.clear()

    # -- requests ---------------------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.stream is not None:
            self.stream.write(data)

    def start(self, message_type: int, message: msgspec.Struct) -> asyncio.Future[Response]:
        """Queue and send a request; returns the future of its answer (pipelining)."""
        request_id = self.session.request(message_type, message)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = fut
        self.flush()
        return fut

    async def call(self, message_type: int, message: msgspec.Struct) -> Any:
        """Send a request and return the answer's body. :raises ServerError: it was an ERROR."""
        response = await asyncio.wait_for(self.start(message_type, message), TIMEOUT)
        if response.type is MessageType.ERROR:
            raise ServerError(response.message)
        return response.message

    def send(self, message_type: int, message: msgspec.Struct) -> None:
        """Send a frame that takes no answer (CREDIT, START)."""
        self.session.request(message_type, message)
        self.flush()

    def write_raw(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(data)

    async def push(self, timeout: float = TIMEOUT) -> Response:
        """The next pushed frame."""
        return await asyncio.wait_for(self.pushes.get(), timeout)

    async def deliveries(self, count: int, timeout: float = TIMEOUT) -> list[m.Delivery]:
        """Collect pushed deliveries until ``count`` jobs arrived (other pushes are an error)."""
        jobs: list[m.Delivery] = []
        while len(jobs) < count:
            r = await self.push(timeout)
            assert r.type is MessageType.DELIVER, r
            jobs.extend(r.message.jobs)
        return jobs

    def close(self) -> None:
        if self.quic is not None:
            self.quic.close()
        elif self.stream is not None:
            self.stream.close()

    # -- shortcuts --------------------------------------------------------------------------------------

    async def enqueue(self, queue: str, name: str = "job", payload: bytes = b"\x80", **kw: Any) -> m.Enqueued:
        return await self.call(MessageType.ENQUEUE, m.Enqueue(queue, name, payload, **kw))  # type: ignore[no-any-return]

    async def get(self, job_id: str) -> m.JobInfo:
        return (await self.call(MessageType.GET, m.JobRef(job_id))).job  # type: ignore[no-any-return]

    async def subscribe(self, queues: list[str], credits: int, name: str = "test-worker") -> str:
        return (await self.call(MessageType.SUBSCRIBE, m.Subscribe(queues, credits, name))).worker_id  # type: ignore[no-any-return]

    async def ack(self, *job_ids: str, result: bytes | None = None) -> m.Done:
        items = [m.AckItem(j, result) for j in job_ids]
        return await self.call(MessageType.ACK, m.Ack(items))  # type: ignore[no-any-return]

    async def fail(self, job_id: str, error: str = "boom", **kw: Any) -> m.Done:
        return await self.call(MessageType.FAIL, m.Fail([m.FailItem(job_id, error, **kw)]))  # type: ignore[no-any-return]

    async def stats(self, queue: str | None = None) -> m.StatsInfo:
        return (await self.call(MessageType.STATS, m.QueueRef(queue))).stats  # type: ignore[no-any-return]


# -- a real server process ----------------------------------------------------------------------------------

SERVER = [sys.executable, "-m", "spitfire.server.cli"]
_TCP = re.compile(r"tcp://127\.0\.0\.1:(\d+)")
_HTTP = re.compile(r"http:\s+http://127\.0\.0\.1:(\d+)/")


class ServerProcess:
    """A spitfire-server on a free loopback port (it binds port 0 and prints the real one)."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        quic: bool = False,
        log_dir: Path | None = None,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        #: The program to run (a fault-injecting shim in fault tests); spitfire-server by default.
        self.command = command or SERVER
        self.env = env
        self.data_dir = data_dir
        self.args = list(args)
        self.quic = quic
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.banner = ""
        self.log_path = (log_dir or data_dir.parent) / f"{data_dir.name}-server.log"

    def start(self, port: int = 0) -> ServerProcess:
        cmd = [
            *self.command, "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{port}",
            "--http", "127.0.0.1:0", "--log-level", "info", *self.args,
        ]  # fmt: skip
        if not self.quic:
            cmd.append("--no-quic")
        with open(self.log_path, "a") as log:
            env = None if self.env is None else {**os.environ, **self.env}
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self.banner = self._read_banner()
        match = _TCP.search(self.banner)
        assert match, self.banner
        self.port = int(match.group(1))
        return self

    def _read_banner(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stop with" in line:
                return "".join(lines)
        self.kill()
        raise AssertionError(f"no banner; stdout={lines!r}\nlog:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the server's HTTP API (from its banner)."""
        match = _HTTP.search(self.banner)
        assert match, self.banner
        return f"http://127.0.0.1:{match.group(1)}"

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code (kills it if it does not exit in time)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (by pid) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def server_process(
    data_dir: Path,
    *args: str,
    quic: bool = False,
    log_dir: Path | None = None,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """A started server, killed on exit if it is still running."""
    server = ServerProcess(data_dir, *args, quic=quic, log_dir=log_dir, command=command, env=env)
    try:
        yield server.start()
    finally:
        server.kill()
