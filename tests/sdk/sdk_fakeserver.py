"""An in-memory fake server for unit tests: protocol.session.ServerSession behind a loopback socket.

It answers the client requests the SDK sends with canned answers; tests change its behaviour with
``hold`` (keep answers back, then release them in reverse order) and ``drop_on`` (close the
connection instead of answering a request type). Never a stand-in for the real server in e2e tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from spitfire.protocol.frames import DEFAULT_MAX_FRAME
from spitfire.protocol.messages import (
    Enqueued,
    EnqueuedMany,
    Error,
    ErrorCode,
    JobInfo,
    MessageType,
    Ok,
    Pong,
    QueueInfo,
    StatsInfo,
    StatsReply,
    Welcome,
)
from spitfire.protocol.messages import Job as JobReply
from spitfire.protocol.session import ProtocolViolation, Request, ServerSession
from spitfire.protocol.tcp import serve_tcp
from spitfire.protocol.transport import ByteStream


def job_info(job_id: str, payload: bytes = b"\xc0", state: str = "enqueued") -> JobInfo:
    return JobInfo(
        id=job_id, queue="q", name="n", payload=payload, state=state, priority=0, created_at=1.0,
        updated_at=1.0, run_at=None, attempts=0, max_attempts=3, backoff=None, timeout=60.0,
        idempotency_key=None, headers=None, errors=[], result=None, history=[], lease_until=None,
        worker=None,
    )  # fmt: skip


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        welcome = Welcome(1, "fake/0", DEFAULT_MAX_FRAME, server.max_payload, 5.0)
        self.session = ServerSession(welcome, token=server.token)
        self.stream: ByteStream | None = None
        #: Answers held back while the server's ``hold`` is set: (request, body, answer type).
        self.held: list[tuple[Request, msgspec.Struct, int]] = []

    def connection_made(self, stream: ByteStream) -> None:
        self.stream = stream
        self.server.connections.append(self)

    def data_received(self, data: bytes) -> None:
        self.server.reads += 1
        try:
            requests = self.session.receive_data(data)
        except ProtocolViolation:
            self.flush()
            assert self.stream is not None
            self.stream.close()
            return
        for request in requests:
            self.server.requests.append(request)
            if request.type in self.server.drop_on:
                self.server.drop_on.discard(request.type)
                assert self.stream is not None
                self.stream.close()
                return
            answer = self.server.answer(request)
            if answer is None:
                continue
            if self.server.hold:
                self.held.append((request, *answer))
            else:
                self.session.reply(request, answer[0], answer[1])
        self.flush()

    def release_held(self) -> None:
        """Answer every held request, newest first (answers in any order are legal)."""
        for request, body, mtype in reversed(self.held):
            self.session.reply(request, body, mtype)
        self.held.clear()
        self.flush()

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.stream is not None:
            self.stream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class FakeServer:
    """Answers PING, ENQUEUE (id = "job-" + payload hex), ENQUEUE_MANY, GET/CANCEL/RETRY/DELETE
    (NOT_FOUND for ids starting with "missing"), STATS, PAUSE and RESUME."""

    def __init__(self, token: str | None = None, max_payload: int = 1 << 20) -> None:
        self.token = token
        self.max_payload = max_payload
        self.connections: list[FakeConnection] = []
        self.requests: list[Request] = []
        self.reads = 0
        self.hold = False
        self.drop_on: set[MessageType] = set()
        #: Optional override: returns (body, message type) or None to use the default.
        self.custom: Callable[[Request], tuple[msgspec.Struct, int] | None] | None = None
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await serve_tcp("127.0.0.1", 0, lambda: FakeConnection(self))
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for c in self.connections:
            if c.stream is not None:
                c.stream.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def answer(self, request: Request) -> tuple[msgspec.Struct, int] | None:
        if self.custom is not None:
            custom = self.custom(request)
            if custom is not None:
                return custom
        return _default_answer(request)


def _default_answer(request: Request) -> tuple[Any, int] | None:
    t, m = request.type, request.message
    if t is MessageType.PING:
        return Pong(), MessageType.PONG
    if t is MessageType.ENQUEUE:
        return Enqueued("job-" + m.payload.hex(), True, "enqueued"), MessageType.ENQUEUED
    if t is MessageType.ENQUEUE_MANY:
        ids = ["job-" + p.hex() for p in m.payloads]
        return EnqueuedMany(ids, [True] * len(ids)), MessageType.ENQUEUED_MANY
    if t in (MessageType.GET, MessageType.CANCEL, MessageType.RETRY, MessageType.DELETE):
        if m.job_id.startswith("missing"):
            return Error(ErrorCode.NOT_FOUND.value, f"no job with id {m.job_id!r}"), MessageType.ERROR
        return JobReply(job_info(m.job_id)), MessageType.JOB
    if t is MessageType.STATS:
        counts = {"enqueued": 2, "scheduled": 0}
        q = QueueInfo(name="q", paused=False, durability="group", counts=counts, total=2)
        return StatsReply(StatsInfo(total_jobs=2, queues=[q])), MessageType.STATS_REPLY
    if t in (MessageType.PAUSE, MessageType.RESUME):
        return Ok(), MessageType.OK
    return None
