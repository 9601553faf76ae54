"""``client.schedules`` against the in-memory fake server: what goes on the wire, and which schedule
requests are resent after a dropped connection (PUT, GET, LIST, PAUSE, RESUME: a repeat changes
nothing) and which are not (DELETE, TRIGGER: a repeat could enqueue twice or report NOT_FOUND)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import pytest
from sdk_fakeserver import FakeServer

import spitfire
from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType
from spitfire.protocol.session import Request


def _info(name: str, put: m.PutSchedule | None = None) -> m.ScheduleInfo:
    return m.ScheduleInfo(
        name=name, cron=put.cron if put else "@daily", timezone=put.timezone if put else "UTC",
        queue=put.queue if put else "q", job=put.job if put else "n",
        payload=put.payload if put and put.payload is not None else b"\x80",
        options=put.options if put else m.ScheduleOptions(), misfire=put.misfire if put else "skip",
        paused=False, created_at=1.0, updated_at=1.0, next_run_at=2.0, last_run_at=None,
        last_job_id=None, last_job_state=None,
    )  # fmt: skip


def _answer(request: Request) -> tuple[msgspec.Struct, int] | None:
    msg = request.message
    if request.type is MessageType.PUT_SCHEDULE:
        return m.ScheduleReply(_info(msg.name, msg), True), MessageType.SCHEDULE
    if request.type is MessageType.LIST_SCHEDULES:
        return m.ScheduleList([_info("a"), _info("b")]), MessageType.SCHEDULES
    if request.type is MessageType.TRIGGER_SCHEDULE:
        return m.Enqueued("job-1", True, "enqueued"), MessageType.ENQUEUED
    if isinstance(msg, m.ScheduleRef):
        if msg.name.startswith("missing"):
            return m.Error("NOT_FOUND", f"no schedule named {msg.name!r}"), MessageType.ERROR
        return m.ScheduleReply(_info(msg.name)), MessageType.SCHEDULE
    return None


def _run(body: object) -> None:
    async def main() -> None:
        server = FakeServer()
        server.custom = _answer
        await server.start()
        try:
            await asyncio.wait_for(body(server), 30)  # type: ignore[operator]
        finally:
            await server.stop()

    asyncio.run(main())


def test_the_put_request_carries_every_field_as_given() -> None:
    async def body(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as c:
            backoff = spitfire.Backoff("linear", 3.0)
            s = await c.schedules.add(
                "nightly", "0 3 * * *", "reports", "build", {"k": 1}, timezone="Europe/Berlin",
                misfire="all", priority=4, max_attempts=2, backoff=backoff, timeout=timedelta(minutes=2),
                headers={"t": "x"},
            )  # fmt: skip
            await c.schedules.put("plain", "@hourly", "q", "n")
            first, second = [r.message for r in server.requests if r.type is MessageType.PUT_SCHEDULE]
            assert first == m.PutSchedule(
                "nightly", "0 3 * * *", "reports", "build", "Europe/Berlin", msgspec.msgpack.encode({"k": 1}),
                m.ScheduleOptions(4, 2, backoff, 120.0, {"t": "x"}), "all", False,
            )  # fmt: skip
            assert second == m.PutSchedule("plain", "@hourly", "q", "n", replace=True)
            assert s.payload == {"k": 1} and s.options.timeout == 120.0
            assert [x.name for x in await c.schedules.list()] == ["a", "b"]
            with pytest.raises(spitfire.ScheduleNotFound, match="missing-1"):
                await c.schedules.get("missing-1")

    _run(body)


def test_a_dropped_connection_resends_only_the_schedule_requests_that_are_safe() -> None:
    async def body(server: FakeServer) -> None:
        async with spitfire.AsyncClient(server.url) as c:
            for mtype, call in (
                (MessageType.PUT_SCHEDULE, lambda: c.schedules.add("s", "@daily", "q", "n")),
                (MessageType.GET_SCHEDULE, lambda: c.schedules.get("s")),
                (MessageType.LIST_SCHEDULES, lambda: c.schedules.list()),
                (MessageType.PAUSE_SCHEDULE, lambda: c.schedules.pause("s")),
                (MessageType.RESUME_SCHEDULE, lambda: c.schedules.resume("s")),
            ):
                server.drop_on = {mtype}
                await call()  # resent on a new connection
            for mtype, call in (
                (MessageType.DELETE_SCHEDULE, lambda: c.schedules.remove("s")),
                (MessageType.TRIGGER_SCHEDULE, lambda: c.schedules.trigger("s")),
            ):
                server.drop_on = {mtype}
                with pytest.raises(spitfire.ConnectionLost, match="may or may not have taken effect"):
                    await call()
            assert await c.schedules.trigger("s") == "job-1"

    _run(body)
