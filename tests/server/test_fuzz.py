"""Throw random and mutated frames at a live server; it must keep serving everyone else.

Deterministic (seeded) and bounded in count. Each fuzz connection sends a HELLO (usually) and then
a burst of frames: valid requests with mutated bytes, well-typed bodies with hostile values, random
types and bodies, bad lengths and plain garbage. Afterwards a normal client must still be served,
and the server log must hold no traceback (no request reached an unexpected exception).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from protoclient import ProtoClient, run, server_process

from spitfire.protocol import messages as m
from spitfire.protocol.frames import encode_frame
from spitfire.protocol.messages import MessageType

#: Fuzz connections per run, and how many run at once.
CONNECTIONS = 240
PARALLEL = 16

_enc = msgspec.msgpack.encode
HELLO = encode_frame(MessageType.HELLO, 1, _enc(m.Hello(m.PROTOCOL_VERSION, "fuzz")))

VALID: list[tuple[MessageType, msgspec.Struct]] = [
    (MessageType.PING, m.Ping()),
    (
        MessageType.ENQUEUE,
        m.Enqueue("fuzz", "job", b"\x80", 1, 0.5, None, 3, m.Backoff(), 1.0, "k", {"a": "b"}),
    ),
    (
        MessageType.ENQUEUE_MANY,
        m.EnqueueMany("fuzz", "job", [b"\x01", b"\x02"], idempotency_keys=["x", None]),
    ),
    (MessageType.GET, m.JobRef("01a20b80bcd8000000e63097")),
    (MessageType.CANCEL, m.JobRef("x")),
    (MessageType.RETRY, m.JobRef("x")),
    (MessageType.DELETE, m.JobRef("x")),
    (MessageType.STATS, m.QueueRef(None)),
    (MessageType.PAUSE, m.QueueRef("fuzz-paused")),
    (MessageType.RESUME, m.QueueRef("fuzz-paused")),
    (MessageType.SUBSCRIBE, m.Subscribe(["fuzz"], 3, "fuzzer")),
    (MessageType.CREDIT, m.Credit(2)),
    (MessageType.START, m.JobIds(["x"])),
    (MessageType.UNSUBSCRIBE, m.Unsubscribe()),
    (MessageType.ACK, m.Ack([m.AckItem("x", b"\x01")])),
    (MessageType.FAIL, m.Fail([m.FailItem("x", "e", "tb", False, 1.0)])),
    (MessageType.HEARTBEAT, m.Heartbeat(["x"], 2.0)),
    (MessageType.RELEASE, m.JobIds(["x"])),
]

HOSTILE: list[Any] = [
    0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1e308, float("nan"), float("inf"), -0.0, "", "\x00", "é" * 300,
    "a" * 5000, b"", b"\xff" * 64, None, True, [], {}, [None], {"k": None}, [[[]]],
]  # fmt: skip


def _hostile_body(rng: random.Random) -> bytes:
    """A msgpack array of hostile values: often decodes into a well-typed body with bad values."""
    _, msg = rng.choice(VALID)
    fields = list(msgspec.structs.astuple(msg))
    for i in range(len(fields)):
        if rng.random() < 0.5:
            fields[i] = rng.choice(HOSTILE)
    return _enc(fields)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.5 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op < 0.75 and buf:
            del buf[rng.randrange(len(buf)) :]
        else:
            buf[rng.randrange(len(buf) + 1) : 0] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def fuzz_bytes(rng: random.Random) -> bytes:
    """One burst of hostile bytes for a fresh connection."""
    out = [HELLO] if rng.random() < 0.9 else []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        mtype, msg = rng.choice(VALID)
        rid = rng.choice([0, 1, 2, 7, 2**32 - 1])
        if kind < 0.35:
            out.append(encode_frame(mtype, rid, _hostile_body(rng)))
        elif kind < 0.6:
            out.append(_mutate(encode_frame(mtype, rid, _enc(msg)), rng))
        elif kind < 0.75:
            out.append(encode_frame(rng.randrange(256), rid, rng.randbytes(rng.randint(0, 40))))
        elif kind < 0.85:
            out.append(rng.randbytes(rng.randint(1, 64)))
        elif kind < 0.9:
            out.append(b"\xff\xff\xff\xff" + rng.randbytes(5))  # a frame length far over the limit
        else:
            out.append(encode_frame(mtype, rid, _enc(msg)))
    return b"".join(out)


async def _one(port: int, data: bytes) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        writer.write(data)
        await writer.drain()
        # Read a little of what comes back (answers, ERROR), then hang up either way.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(65536), 0.2)
    except OSError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_frames_never_hurt_the_server(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    bursts = [fuzz_bytes(rng) for _ in range(CONNECTIONS)]

    async def fuzz(port: int) -> None:
        for start in range(0, len(bursts), PARALLEL):
            await asyncio.gather(*(_one(port, b) for b in bursts[start : start + PARALLEL]))

    async def still_served(port: int) -> None:
        c = await ProtoClient.connect(port)
        e = await c.enqueue("after-fuzz", "ok", b"\x01")
        w = await ProtoClient.connect(port)
        await w.subscribe(["after-fuzz"], 1)
        (job,) = await w.deliveries(1)
        assert job.job_id == e.job_id
        assert (await w.ack(job.job_id)).errors == []
        assert (await c.get(e.job_id)).state == "succeeded"
        stats = await c.stats()
        assert stats.total_jobs == sum(q.total for q in stats.queues)
        c.close()
        w.close()

    with server_process(tmp_path / "data") as srv:
        run(fuzz(srv.port))
        run(still_served(srv.port))
        assert srv.proc is not None and srv.proc.poll() is None
        assert srv.terminate() == 0
        log = srv.log()
        at = log.find("Traceback")
        assert at < 0, log[max(0, at - 300) : at + 3000]
        assert "closing connection" in log  # malformed frames were seen and logged
