"""Recurring schedules over the binary protocol against a real server: PUT_SCHEDULE's
create / identical / conflict / replace rules, GET, LIST, PAUSE, RESUME, TRIGGER and DELETE, and the
errors (BAD_REQUEST naming the field, creating nothing; NOT_FOUND)."""

from __future__ import annotations

import msgspec
import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType

T = MessageType
PAYLOAD = msgspec.msgpack.encode({"kind": "daily"})


def _put(name: str, queue: str, **kw: object) -> m.PutSchedule:
    fields: dict[str, object] = {"cron": "0 3 * * *", "job": "build_report", **kw}
    return m.PutSchedule(name, queue=queue, **fields)  # type: ignore[arg-type]


def test_every_schedule_operation(server: ServerProcess, queue: str) -> None:
    name = f"s-{queue}"[:100]

    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            options = m.ScheduleOptions(5, 3, m.Backoff("fixed", 2.0), 30.0, {"team": "a"})
            put = _put(
                name, queue, timezone="Europe/Berlin", payload=PAYLOAD, options=options, misfire="once"
            )
            made = await c.call(T.PUT_SCHEDULE, put)
            assert isinstance(made, m.ScheduleReply) and made.created
            s = made.schedule
            assert (s.name, s.cron, s.timezone, s.queue, s.job) == (
                name, "0 3 * * *", "Europe/Berlin", queue, "build_report",
            )  # fmt: skip
            assert s.payload == PAYLOAD and s.options == options and s.misfire == "once"
            assert not s.paused and s.next_run_at is not None and s.last_job_id is None

            again = await c.call(T.PUT_SCHEDULE, put)  # identical: answered as it is
            assert not again.created and again.schedule.created_at == s.created_at

            with pytest.raises(ServerError) as err:  # different, without replace
                await c.call(T.PUT_SCHEDULE, _put(name, queue, cron="0 4 * * *"))
            assert err.value.code == "CONFLICT"

            replaced = await c.call(T.PUT_SCHEDULE, _put(name, queue, cron="0 4 * * *", replace=True))
            assert not replaced.created and replaced.schedule.cron == "0 4 * * *"
            assert replaced.schedule.payload == b"\x80"  # none given: an empty map

            got = await c.call(T.GET_SCHEDULE, m.ScheduleRef(name))
            assert got.schedule.cron == "0 4 * * *"
            listed = await c.call(T.LIST_SCHEDULES, m.ListSchedules())
            assert isinstance(listed, m.ScheduleList) and name in [x.name for x in listed.schedules]

            paused = await c.call(T.PAUSE_SCHEDULE, m.ScheduleRef(name))
            assert paused.schedule.paused and paused.schedule.next_run_at is None

            enqueued = await c.call(T.TRIGGER_SCHEDULE, m.ScheduleRef(name))  # paused or not
            assert isinstance(enqueued, m.Enqueued) and enqueued.created
            job = await c.get(enqueued.job_id)
            assert (job.queue, job.name) == (queue, "build_report")
            assert job.headers is not None and job.headers["spitfire-schedule"] == name

            resumed = await c.call(T.RESUME_SCHEDULE, m.ScheduleRef(name))
            r = resumed.schedule
            assert not r.paused and r.next_run_at is not None
            assert r.last_job_id == enqueued.job_id and r.last_job_state == "enqueued"

            deleted = await c.call(T.DELETE_SCHEDULE, m.ScheduleRef(name))
            assert deleted.schedule.name == name
            for mtype in (T.GET_SCHEDULE, T.DELETE_SCHEDULE, T.PAUSE_SCHEDULE, T.TRIGGER_SCHEDULE):
                with pytest.raises(ServerError) as err:
                    await c.call(mtype, m.ScheduleRef(name))
                assert err.value.code == "NOT_FOUND"
        finally:
            c.close()

    run(body())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"misfire": "sometimes"}, "misfire"),
        ({"options": m.ScheduleOptions(priority=11)}, "options.priority"),
        ({"options": m.ScheduleOptions(backoff=m.Backoff("random"))}, "options.backoff.kind"),
        ({"queue": "bad queue"}, "queue"),
    ],
)
def test_a_bad_definition_names_the_field_and_creates_nothing(
    server: ServerProcess, queue: str, kwargs: dict[str, object], field: str
) -> None:
    name = f"bad-{queue}"[:100]

    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            given = dict(kwargs)
            with pytest.raises(ServerError) as err:
                await c.call(T.PUT_SCHEDULE, _put(name, str(given.pop("queue", queue)), **given))
            assert (err.value.code, err.value.field) == ("BAD_REQUEST", field)
            with pytest.raises(ServerError) as missing:
                await c.call(T.GET_SCHEDULE, m.ScheduleRef(name))
            assert missing.value.code == "NOT_FOUND"
        finally:
            c.close()

    run(body())
