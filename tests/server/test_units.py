"""In-process unit tests of the server's pieces: backpressure accounting and the maintenance timer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from protoclient import run

from spitfire.protocol import messages as m
from spitfire.protocol.frames import FrameReader, encode_frame
from spitfire.protocol.messages import MessageType, decode_body
from spitfire.protocol.session import Request, ServerSession
from spitfire.server.backpressure import Backpressure, Limits
from spitfire.server.dispatcher import Dispatcher
from spitfire.server.engine import Engine
from spitfire.server.errors import Overloaded
from spitfire.server.maintenance import MAX_TICK_INTERVAL, Maintenance
from spitfire.server.service import Service
from spitfire.wal.memory import MemoryStorage


class Figures:
    """Exact pending figures a test controls (what the engine's pending_figures reports)."""

    def __init__(self) -> None:
        self.queues: dict[str, tuple[int, int]] = {}

    def pending_figures(self, queue: str) -> tuple[int, int, int, int]:
        jobs, nbytes = self.queues.get(queue, (0, 0))
        return (
            jobs,
            nbytes,
            sum(j for j, _ in self.queues.values()),
            sum(b for _, b in self.queues.values()),
        )


def test_backpressure_reads_exact_figures_on_every_admit() -> None:
    figures = Figures()
    bp = Backpressure(Limits(queue_jobs=3, queue_bytes=100, total_jobs=5, total_bytes=150), figures)
    bp.admit("a", 3, 30)  # nothing counted here: the engine counts what it indexed
    figures.queues["a"] = (3, 30)
    with pytest.raises(Overloaded, match="queue 'a' holds 3 pending jobs"):
        bp.admit("a", 1, 10)
    figures.queues["a"] = (1, 10)  # two finished: admitted at once
    bp.admit("a", 2, 20)
    figures.queues["a"] = (1, 95)
    with pytest.raises(Overloaded, match="queue 'a' holds 95 pending payload bytes"):
        bp.admit("a", 1, 6)
    figures.queues["b"] = (3, 10)
    with pytest.raises(Overloaded, match="the server holds 4 pending jobs"):
        bp.admit("c", 2, 1)
    with pytest.raises(Overloaded, match="the server holds 105 pending payload bytes") as refused:
        bp.admit("c", 1, 46)
    assert refused.value.retry_after > 0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_noted_deadline_wakes_the_timer_before_its_planned_tick() -> None:
    async def body() -> None:
        engine = Engine(MemoryStorage())
        await engine.open(now=1000.0)
        ticks: list[float] = []
        original = engine.tick

        async def tick(now: float) -> float | None:
            ticks.append(now)
            return await original(now)

        engine.tick = tick  # type: ignore[method-assign]
        clock = FakeClock(1000.0)
        maintenance = Maintenance(engine, clock=clock)
        runner = asyncio.get_running_loop().create_task(maintenance.run())
        while not ticks:
            await asyncio.sleep(0)
        # Nothing is due: the timer sleeps MAX_TICK_INTERVAL (by the fake clock: it never passes).
        await asyncio.sleep(0.01)
        assert len(ticks) == 1
        maintenance.note(clock.now + 5 * MAX_TICK_INTERVAL)  # later than planned: no wake
        await asyncio.sleep(0.01)
        assert len(ticks) == 1
        clock.now += 0.5
        maintenance.note(clock.now)  # due now: wakes at once
        for _ in range(100):
            if len(ticks) > 1:
                break
            await asyncio.sleep(0.001)
        assert ticks[1:] == [1000.5]
        maintenance.stop()
        await runner
        await engine.close()

    run(body())


class _Peer:
    """A connection stand-in: a real ServerSession, no socket."""

    def __init__(self) -> None:
        welcome = m.Welcome(1, "test", 2**20, 2**20, 10.0)
        self.session = ServerSession(welcome)
        self.worker = None
        self.session.receive_data(encode_frame(MessageType.HELLO, 1, msgspec.msgpack.encode(m.Hello())))
        self.session.data_to_send()

    def schedule_flush(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def push(self, message_type: int, message: msgspec.Struct) -> None:
        self.session.push(message_type, message)


def test_an_unexpected_exception_answers_internal_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def get(self, job_id: str) -> None:
            raise RuntimeError("bug")

    async def body() -> None:
        engine: Any = Broken()
        service = Service(engine, Dispatcher(engine, time.time), Backpressure(Limits(1, 1, 1, 1), Figures()))
        peer = _Peer()
        service.handle(peer, Request(MessageType.GET, 7, m.JobRef("x")))
        reader = FrameReader()
        (frame,) = reader.feed(peer.session.data_to_send())
        assert (frame.type, frame.request_id) == (MessageType.ERROR, 7)
        error = decode_body(frame.type, frame.body)
        assert error.code == "INTERNAL" and "bug" not in error.message

    run(body())
    assert "RuntimeError: bug" in caplog.text and "request GET (id 7) failed" in caplog.text
