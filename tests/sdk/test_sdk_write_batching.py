"""How the client's connection groups requests into writes: at the end of a loop turn, or at once
every `FLUSH_FRAMES` requests, so the server can start on the first ones while the rest are built."""

from __future__ import annotations

import asyncio

from spitfire._connection import FLUSH_FRAMES, Connection
from spitfire.protocol.frames import FrameReader
from spitfire.protocol.messages import EnqueueMany, MessageType, Ping
from spitfire.protocol.session import ClientSession


class RecordingStream:
    """A stream that keeps every write (the connection's side of a socket)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_turn_of_many_requests_is_written_every_flush_frames_and_the_rest_at_its_end() -> None:
    asyncio.run(_many_requests())


def test_a_few_requests_share_one_write_at_the_end_of_the_turn() -> None:
    asyncio.run(_few_requests())


async def _many_requests() -> None:
    conn = Connection(ClientSession("write-batching-test"))
    stream = RecordingStream()
    conn.connection_made(stream)  # writes HELLO
    stream.writes.clear()
    count = 2 * FLUSH_FRAMES + 5
    ids = [conn.request(MessageType.PING, Ping())[0] for _ in range(count)]
    assert len(stream.writes) == 2  # two full blocks, written while the turn goes on
    await asyncio.sleep(0)  # the end of the turn writes what is left
    assert len(stream.writes) == 3
    frames = FrameReader().feed(b"".join(stream.writes))
    assert [f.request_id for f in frames] == ids  # every request once, in order
    assert [len(FrameReader().feed(w)) for w in stream.writes] == [FLUSH_FRAMES, FLUSH_FRAMES, 5]
    conn.close()


async def _few_requests() -> None:
    conn = Connection(ClientSession("write-batching-test"))
    stream = RecordingStream()
    conn.connection_made(stream)
    stream.writes.clear()
    for _ in range(3):
        conn.request(MessageType.PING, Ping())
    assert stream.writes == []
    await asyncio.sleep(0)
    assert len(stream.writes) == 1 and len(FrameReader().feed(stream.writes[0])) == 3
    conn.close()


def test_a_batch_request_is_written_at_once() -> None:
    asyncio.run(_batch())


async def _batch() -> None:
    # A batch is many jobs in one frame already: it is not held back for the rest of the turn.
    conn = Connection(ClientSession("write-batching-test"))
    stream = RecordingStream()
    conn.connection_made(stream)
    stream.writes.clear()
    conn.request(MessageType.PING, Ping())
    conn.request(MessageType.ENQUEUE_MANY, EnqueueMany("q", "job", [b"\x90"] * 100))
    assert len(stream.writes) == 1  # the PING before it goes in the same write
    assert [f.type for f in FrameReader().feed(stream.writes[0])] == [
        MessageType.PING,
        MessageType.ENQUEUE_MANY,
    ]
    conn.close()
