"""Recurring schedules in the engine, time as a parameter, on every storage backend (conftest.harness)."""

from __future__ import annotations

import pytest
from engine_harness import Harness, run

from spitfire.index.cron import rfc3339
from spitfire.server.errors import ScheduleConflict, ScheduleNotFound, ValidationError
from spitfire.server.schedules import GRACE, MAX_CATCH_UP, ScheduleOptions, ScheduleSpec, tick_key

#: 2026-01-01T00:00:00Z, a Thursday.
T = 1767225600.0


def spec(name: str = "s", cron: str = "* * * * *", **kw: object) -> ScheduleSpec:
    base: dict[str, object] = {"queue": "q", "job": "report", "payload": b"\x81\xa1n\x01"}
    base.update(kw)
    return ScheduleSpec(name, cron, **base)  # type: ignore[arg-type]


def jobs_of(harness: Harness, name: str) -> list[str]:
    e = harness.engine
    assert e is not None
    return sorted(
        j.headers["spitfire-tick"]
        for j in e.table.by_name("report", 10_000)
        if j.headers and j.headers.get("spitfire-schedule") == name
    )


@run
async def test_ticks_enqueue_one_job_each_with_headers_and_key(harness: Harness) -> None:
    e = await harness.open(T)
    s, created = await e.schedules.put(spec(), T, replace=False)
    assert created and s.last_tick == T and e.schedules.next_run_at(s, T) == T + 60
    assert await e.tick(T + 30) is not None and jobs_of(harness, "s") == []
    await e.tick(T + 60)
    await e.tick(T + 60.5)  # the same tick again: nothing new
    assert jobs_of(harness, "s") == [rfc3339(T + 60)]
    (job,) = [j for j in e.table.by_name("report", 10_000) if j.headers]
    assert job.queue == "q" and job.name == "report" and job.payload == b"\x81\xa1n\x01"
    assert job.idempotency_key == tick_key("s", T + 60) == "spitfire-schedule:s:2026-01-01T00:01:00Z"
    assert e.schedules.get("s").last_job_id == job.id and e.schedules.get("s").last_run_at == T + 60


@run
async def test_tick_deadline_is_the_next_fire_time(harness: Harness) -> None:
    e = await harness.open(T)
    await e.schedules.put(spec(cron="0 * * * *"), T, replace=False)
    assert await e.tick(T + 1) == T + 3600


@run
async def test_identical_post_is_no_change_different_is_conflict_put_replaces(harness: Harness) -> None:
    e = await harness.open(T)
    await e.schedules.put(spec(), T, replace=False)
    same, created = await e.schedules.put(spec(), T + 1, replace=False)
    assert not created and same.updated_at == T
    with pytest.raises(ScheduleConflict):
        await e.schedules.put(spec(cron="*/5 * * * *"), T + 2, replace=False)
    replaced, created = await e.schedules.put(spec(cron="*/5 * * * *"), T + 3, replace=True)
    assert not created and replaced.spec.cron == "*/5 * * * *" and replaced.last_tick == T + 3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "@sometimes"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),  # never fires
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "bad name"}, "name"),
        ({"queue": "bad/queue"}, "queue"),
        ({"job": ""}, "job"),
        ({"misfire": "sometimes"}, "misfire"),
        ({"options": ScheduleOptions(priority=11)}, "options.priority"),
    ],
)
@run
async def test_bad_definitions_name_the_field_and_change_nothing(
    harness: Harness, changes: dict[str, object], field: str
) -> None:
    e = await harness.open(T)
    kw: dict[str, object] = {"name": "s", "cron": "* * * * *", **changes}
    name, cron = kw.pop("name"), kw.pop("cron")
    with pytest.raises(ValidationError) as err:
        await e.schedules.put(spec(name, cron, **kw), T, replace=False)  # type: ignore[arg-type]
    assert err.value.field == field
    assert e.schedules.all() == [] and e.queues() == []


@run
async def test_schedules_survive_a_restart_and_a_snapshot(harness: Harness) -> None:
    e = await harness.open(T)
    await e.schedules.put(spec("a"), T, replace=False)
    await e.schedules.put(spec("b", "@hourly", timezone="Europe/Berlin"), T, replace=False)
    await e.schedules.pause("b", T + 1)
    await e.tick(T + 60)
    e = await harness.restart(T + 61)
    assert [s.spec.name for s in e.schedules.all()] == ["a", "b"]
    assert e.schedules.get("a").last_tick == T + 60 and e.schedules.get("b").paused
    await e.schedules.snapshot()
    await e.schedules.delete("a", T + 62)
    e = await harness.restart(T + 63)
    assert [s.spec.name for s in e.schedules.all()] == ["b"]
    assert e.schedules.get("b").spec.cron == "@hourly"


@run
async def test_a_tick_enqueued_but_not_recorded_is_not_enqueued_again(harness: Harness) -> None:
    """The crash window between the tick's job and SCHEDULE_TICKED: the key dedups the retry."""
    e = await harness.open(T)
    s, _ = await e.schedules.put(spec(), T, replace=False)
    # What the tick does before its SCHEDULE_TICKED record: the job alone.
    from spitfire.server.schedules import job_options

    await e.enqueue(
        "q", "report", b"\x80", now=T + 60, options=job_options(s.spec), idempotency_key=tick_key("s", T + 60)
    )
    e = await harness.restart(T + 61)
    assert e.schedules.get("s").last_tick == T
    await e.tick(T + 61)
    keyed = [j for j in e.table.by_name("report", 10_000) if j.idempotency_key == tick_key("s", T + 60)]
    assert len(keyed) == 1 and e.schedules.get("s").last_tick == T + 60


@pytest.mark.parametrize(("policy", "expected"), [("skip", 0), ("once", 1), ("all", 10)])
@run
async def test_misfire_after_downtime(harness: Harness, policy: str, expected: int) -> None:
    e = await harness.open(T)
    await e.schedules.put(spec(misfire=policy), T, replace=False)
    e = await harness.restart(T + 600 + 30)  # down for ten ticks (every minute), back 30 s after the last
    await e.tick(T + 630)
    got = jobs_of(harness, "s")
    assert len(got) == expected
    if policy == "once":
        assert got == [rfc3339(T + 600)]  # the newest missed tick
    assert e.schedules.get("s").last_tick == T + 600
    assert e.schedules.next_run_at(e.schedules.get("s"), T + 630) == T + 660


@run
async def test_misfire_all_catches_up_at_most_100(harness: Harness) -> None:
    e = await harness.open(T)
    await e.schedules.put(spec(cron="* * * * * *", misfire="all"), T, replace=False)  # every second
    await e.tick(T + 3600)
    got = jobs_of(harness, "s")
    assert len(got) == MAX_CATCH_UP and got[-1] == rfc3339(T + 3600)


@run
async def test_a_tick_late_by_less_than_the_grace_still_runs_under_skip(harness: Harness) -> None:
    e = await harness.open(T)
    await e.schedules.put(spec(), T, replace=False)
    await e.tick(T + 60 + GRACE - 1)
    assert jobs_of(harness, "s") == [rfc3339(T + 60)]


@run
async def test_pause_resume_trigger_delete(harness: Harness) -> None:
    e = await harness.open(T)
    await e.schedules.put(spec(), T, replace=False)
    paused = await e.schedules.pause("s", T + 1)
    assert paused.paused and e.schedules.next_run_at(paused, T + 1) is None
    await e.tick(T + 300)
    assert jobs_of(harness, "s") == []
    job = await e.schedules.trigger("s", T + 301)  # paused schedules can be triggered
    assert job.headers is not None and job.headers["spitfire-tick"] == rfc3339(T + 301)
    assert job.idempotency_key is None
    resumed = await e.schedules.resume("s", T + 302)
    assert not resumed.paused and resumed.last_tick == T + 302  # no catch-up of the paused ticks
    await e.tick(T + 303)
    assert jobs_of(harness, "s") == [rfc3339(T + 301)]
    await e.schedules.delete("s", T + 304)
    with pytest.raises(ScheduleNotFound):
        e.schedules.get("s")
    with pytest.raises(ScheduleNotFound):
        await e.schedules.trigger("s", T + 305)


@run
async def test_daily_berlin_schedule_across_both_dst_changes(harness: Harness) -> None:
    """02:30 daily in Europe/Berlin: once on each change day, at 03:00 CEST on the spring-forward day."""
    spring = 1774742400.0  # 2026-03-29T00:00:00Z
    e = await harness.open(spring - 86400)
    await e.schedules.put(spec(cron="30 2 * * *", timezone="Europe/Berlin"), spring - 86400, replace=False)
    at = spring - 86400
    fired = []
    for _ in range(3):
        s = e.schedules.get("s")
        at = e.schedules.next_run_at(s, at) or 0
        await e.tick(at)
        fired.append(at)
    assert [rfc3339(t) for t in fired] == [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ]
