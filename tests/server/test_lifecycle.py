"""Backpressure, graceful shutdown and QUIC against real server processes."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run, server_process

from spitfire.protocol import messages as m
from spitfire.protocol.frames import encode_frame
from spitfire.protocol.messages import MessageType


def test_busy_past_the_limits_while_acks_keep_working(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        p = await ProtoClient.connect(port)
        for _ in range(4):
            await p.enqueue("bp", payload=b"\x80")
        with pytest.raises(ServerError) as info:
            await p.enqueue("bp")
        assert info.value.code == "BUSY" and info.value.retry_after and info.value.retry_after > 0
        with pytest.raises(ServerError) as info:  # a batch is refused as a whole
            await p.call(MessageType.ENQUEUE_MANY, m.EnqueueMany("bp", "j", [b"\x01", b"\x02"]))
        assert info.value.code == "BUSY"
        # Workers keep working while producers are refused, and finishing jobs makes room.
        w = await ProtoClient.connect(port)
        await w.subscribe(["bp"], 2)
        jobs = await w.deliveries(2)
        assert (await w.ack(*[j.job_id for j in jobs])).errors == []
        assert (await p.enqueue("bp")).created
        # The server-wide limit (6 jobs) counts every queue: 3 pending in bp, 3 more fit elsewhere.
        for _ in range(3):
            await p.enqueue("other")
        with pytest.raises(ServerError) as info:
            await p.enqueue("other")
        assert info.value.code == "BUSY" and "server" in str(info.value)
        # Payload bytes: 100 bytes per queue at most.
        with pytest.raises(ServerError) as info:
            await p.call(MessageType.ENQUEUE_MANY, m.EnqueueMany("bytes", "j", [b"x" * 60, b"y" * 60]))
        assert info.value.code == "BUSY"
        p.close()
        w.close()

    args = ("--max-queue-jobs", "4", "--max-jobs", "6", "--max-queue-bytes", "100")
    with server_process(tmp_path / "data", *args) as srv:
        run(body(srv.port))


def test_sigterm_sends_goaway_finishes_in_flight_requests_and_exits_0(tmp_path: Path) -> None:
    acknowledged: list[str] = []

    async def produce(port: int, srv_terminate: asyncio.Future[None]) -> None:
        p = await ProtoClient.connect(port)
        w = await ProtoClient.connect(port)
        await w.subscribe(["drain"], 1)
        held = (await p.enqueue("drain", "held")).job_id
        await w.deliveries(1)
        futures = [
            p.start(MessageType.ENQUEUE, m.Enqueue("drain", "x", bytes([i % 256]))) for i in range(300)
        ]
        srv_terminate.set_result(None)
        push = await p.push()
        assert push.type is MessageType.GOAWAY
        for f in futures:
            try:
                r = await f
            except ConnectionError:
                continue
            if r.type is MessageType.ENQUEUED:
                acknowledged.append(r.message.job_id)
        await p.closed.wait()
        await w.closed.wait()
        acknowledged.append(held)

    async def check(port: int) -> None:
        c = await ProtoClient.connect(port)
        for job_id in acknowledged:
            assert (await c.get(job_id)).state in ("enqueued", "reserved")
        c.close()

    data = tmp_path / "data"
    with server_process(data) as srv:

        async def body() -> None:
            loop = asyncio.get_running_loop()
            go: asyncio.Future[None] = loop.create_future()
            task = loop.create_task(produce(srv.port, go))
            await go
            await loop.run_in_executor(None, srv.terminate)
            await task

        run(body())
        assert srv.proc is not None and srv.proc.returncode == 0
        assert "stopped cleanly" in srv.log()
    assert len(acknowledged) > 1
    with server_process(data) as srv:
        run(check(srv.port))


@pytest.mark.skipif(importlib.util.find_spec("spitfire.protocol.quic") is None, reason="no QUIC transport")
def test_the_same_protocol_over_quic(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        p = await ProtoClient.connect(port, transport="quic")
        e = await p.enqueue("quic", "hello", b"\x01")
        w = await ProtoClient.connect(port, transport="quic")
        await w.subscribe(["quic"], 1)
        (job,) = await w.deliveries(1)
        assert job.job_id == e.job_id
        assert (await w.ack(job.job_id)).errors == []
        assert (await p.get(e.job_id)).state == "succeeded"
        p.close()
        w.close()

    with server_process(tmp_path / "data", quic=True) as srv:
        assert f"quic://127.0.0.1:{srv.port}" in srv.banner
        run(body(srv.port))
        assert srv.terminate() == 0


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_a_client_that_never_reads_does_not_grow_the_server(tmp_path: Path) -> None:
    """The server stops reading from a client whose answers pile up (each GET answer: 512 KiB)."""
    hello = encode_frame(MessageType.HELLO, 1, msgspec.msgpack.encode(m.Hello(m.PROTOCOL_VERSION, "flood")))

    async def body(srv: ServerProcess) -> None:
        c = await ProtoClient.connect(srv.port)
        job_id = (await c.enqueue("flood", payload=b"x" * 2**19)).job_id
        get = encode_frame(MessageType.GET, 9, msgspec.msgpack.encode(m.JobRef(job_id)))
        before = _rss(srv.pid)
        with socket.create_connection(("127.0.0.1", srv.port)) as flood:
            flood.sendall(hello + get * 120)  # 60 MiB of answers if the server read it all
            for _ in range(20):  # the answers of the first GETs fill the socket buffers quickly
                await c.call(MessageType.PING, m.Ping())
                await asyncio.sleep(0.05)
            grown = _rss(srv.pid) - before
            assert grown < 30 * 2**20, f"the server buffered {grown} bytes for a client that does not read"
            assert (await c.get(job_id)).state == "enqueued"  # everyone else is still served
        c.close()

    with server_process(tmp_path / "data") as srv:
        run(body(srv))
        assert srv.terminate() == 0


@pytest.fixture
def small_fs(mount_tmpfs: Callable[[str], Path]) -> Path:
    """A real 160 MiB tmpfs (two 64 MiB segments fit), unmounted afterwards."""
    return mount_tmpfs("160m")


def test_a_full_disk_refuses_enqueues_with_no_space_while_acks_commit(
    small_fs: Path, fill_disk: Callable[..., None]
) -> None:
    async def body(port: int) -> None:
        p = await ProtoClient.connect(port)
        first = (await p.enqueue("disk", payload=b"\x01")).job_id
        w = await ProtoClient.connect(port)
        await w.subscribe(["disk"], 1)
        (job,) = await w.deliveries(1)
        fill_disk(small_fs / "filler")
        code = None
        for _ in range(400):  # 256 KiB each: the open segment (64 MiB) fills within ~260
            try:
                await p.enqueue("disk", payload=b"x" * 2**18)
            except ServerError as exc:
                code = exc.code
                break
        assert code == "NO_SPACE"
        assert (await w.ack(job.job_id)).errors == []
        assert (await p.get(first)).state == "succeeded"
        p.close()
        w.close()

    with server_process(small_fs / "data", log_dir=small_fs.parent) as srv:
        run(body(srv.port))
        metrics = httpx.get(f"{srv.http_url}/metrics", timeout=30).text
        assert 'spitfire_backpressure_rejections_total{protocol="binary",reason="NO_SPACE"} 1.0' in metrics
        assert srv.terminate() == 0
        assert "Traceback" not in srv.log()
