"""Bounds on clients that never authenticate, against real spitfire-server processes: pre-HELLO
frames of at most 64 KiB, the handshake timeout, --max-connections, and memory
of closed connections given back at once (RSS read from /proc/<pid>/status)."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

from protoclient import TIMEOUT, ProtoClient, run, server_process

from spitfire.protocol import messages as m
from spitfire.protocol.frames import FrameReader
from spitfire.protocol.messages import MessageType
from spitfire.protocol.session import ClientSession

MiB = 2**20


def rss(pid: int) -> int:
    """The process's resident set size in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


async def wait_rss(pid: int, ok: object, what: str, timeout: float = TIMEOUT) -> int:
    """Poll the RSS until ``ok(rss)`` (there is no event for "memory was given back")."""
    deadline = time.monotonic() + timeout
    while True:
        value = rss(pid)
        if ok(value):  # type: ignore[operator]
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"RSS {value / MiB:.0f} MiB: {what}")
        await asyncio.sleep(0.05)


async def read_to_eof(reader: asyncio.StreamReader) -> list[m.Error]:
    """Every frame the server sends until it closes, as decoded ERROR bodies."""
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    frames = FrameReader().feed(data)
    assert all(f.type == MessageType.ERROR for f in frames), frames
    return [m.decode_body(MessageType.ERROR, f.body) for f in frames]


def hello_bytes() -> bytes:
    return ClientSession("bounds-test").data_to_send()


async def wait_connections(client: ProtoClient, count: int) -> None:
    """Until the server counts ``count`` open connections (``client`` included)."""
    for _ in range(int(TIMEOUT * 20)):
        if (await client.stats()).connections == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server never got to {count} connections")


def test_a_pre_hello_frame_over_64_kib_gets_too_large_and_is_never_buffered(tmp_path: Path) -> None:
    async def body(port: int, pid: int) -> None:
        control = await ProtoClient.connect(port)
        baseline = rss(pid)
        for _ in range(6):  # the reproduction: six 50 MiB half-frames, never authenticated
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(struct.pack(">IBI", 50 * MiB, MessageType.HELLO, 1) + b"x" * 32 * 1024)
            [error] = await read_to_eof(reader)
            assert error.code == "TOO_LARGE" and "before a successful HELLO" in error.message
            writer.close()
        await wait_connections(control, 1)
        assert rss(pid) < baseline + 16 * MiB
        control.close()

    with server_process(tmp_path / "data") as server:
        run(body(server.port, server.pid))


def test_half_frames_of_closed_connections_are_freed_at_once(tmp_path: Path) -> None:
    """Authenticated clients may send large frames; once they disconnect mid-frame, the buffers go
    back to the OS at once (not at some later garbage collection)."""
    connections, sent = 6, 40 * MiB  # > glibc's 32 MiB mmap threshold: freeing lowers RSS

    async def body(port: int, pid: int) -> None:
        control = await ProtoClient.connect(port)
        baseline = rss(pid)
        writers = []
        chunk = b"x" * MiB
        for _ in range(connections):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(hello_bytes() + struct.pack(">IBI", 60 * MiB, MessageType.PING, 2))
            for _ in range(sent // MiB):
                writer.write(chunk)
                await writer.drain()
            writers.append(writer)
        grown = connections * sent * 3 // 4
        await wait_rss(pid, lambda v: v > baseline + grown, "the half-frames never reached the server")
        for writer in writers:
            writer.close()
        await wait_connections(control, 1)
        await wait_rss(pid, lambda v: v < baseline + 24 * MiB, f"not back near {baseline / MiB:.0f} MiB")
        control.close()

    with server_process(tmp_path / "data") as server:
        run(body(server.port, server.pid))


def test_a_client_that_never_says_hello_is_closed_after_the_handshake_timeout(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(hello_bytes()[:5])  # half a HELLO header, then nothing
        [error] = await read_to_eof(reader)
        elapsed = time.monotonic() - started
        writer.close()
        assert error.code == "BAD_REQUEST" and "no successful HELLO within 0.5 s" in error.message
        assert 0.45 <= elapsed < TIMEOUT
        # A client that said HELLO in time is not affected by the deadline.
        client = await ProtoClient.connect(port)
        await asyncio.sleep(1.0)  # past the deadline: nothing is to happen, so no event to await
        assert not client.closed.is_set()
        assert await client.call(MessageType.PING, m.Ping()) == m.Pong()
        client.close()

    with server_process(tmp_path / "data", "--handshake-timeout", "0.5") as server:
        run(body(server.port))
        assert "no successful HELLO within 0.5 s" in server.log()


def test_past_max_connections_new_ones_get_busy_and_are_closed(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        clients = [await ProtoClient.connect(port) for _ in range(3)]
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            [error] = await read_to_eof(reader)
            writer.close()
            assert error.code == "BUSY" and error.retry_after == 1.0 and "--max-connections" in error.message
        assert await clients[0].call(MessageType.PING, m.Ping()) == m.Pong()  # the open ones go on
        clients.pop().close()
        await wait_connections(clients[0], 2)
        clients.append(await ProtoClient.connect(port))
        for client in clients:
            client.close()

    with server_process(tmp_path / "data", "--max-connections", "3") as server:
        run(body(server.port))
        log = server.log()
        assert log.count("refusing new connections: 3 are open") == 1  # one line per burst
        assert log.count("accepting connections again (5 were refused at the limit)") == 1


def test_quic_past_max_connections_is_not_accepted_and_tcp_gets_busy(tmp_path: Path) -> None:
    from spitfire.protocol.quic import connect_quic

    async def body(port: int) -> None:
        first = await ProtoClient.connect(port, transport="quic")
        late = ProtoClient(ClientSession("late"))
        started = time.monotonic()
        try:
            await connect_quic("127.0.0.1", port, late, verify=False, timeout=1.0)
        except TimeoutError:
            pass
        else:
            raise AssertionError("a QUIC connection past --max-connections was accepted")
        assert time.monotonic() - started >= 0.9
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        [error] = await read_to_eof(reader)
        writer.close()
        assert error.code == "BUSY"
        assert await first.call(MessageType.PING, m.Ping()) == m.Pong()
        first.close()

    with server_process(tmp_path / "data", "--max-connections", "1", quic=True) as server:
        run(body(server.port))
        assert server.log().count("refusing new QUIC connections") == 1
