"""Job definitions in the engine, time as a parameter, on every storage backend (conftest.harness):
registration (latest wins, identical writes nothing, changes logged), the defaults every enqueue path
takes, payload validation, limits and hostile input, restarts and snapshots."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec
import pytest
from engine_harness import Harness, run

from spitfire.index.job import Backoff, BackoffKind
from spitfire.server import definitions as defs
from spitfire.server.building import JobOptions
from spitfire.server.definitions import DefinitionOptions, DefinitionSpec
from spitfire.server.errors import (
    DefinitionNotFound,
    PayloadTooLarge,
    TooManyDefinitions,
    ValidationError,
)
from spitfire.server.schedules import ScheduleOptions, ScheduleSpec

T = 1767225600.0
SCHEMA = json.dumps({
    "$ref": "#/$defs/send_email_args",
    "$defs": {"send_email_args": {"title": "send_email_args", "type": "object",
              "properties": {"to": {"type": "string"}, "n": {"type": "integer"},
                             "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["to"]}},
})  # fmt: skip
GOOD = msgspec.msgpack.encode({"to": "a@b.c", "n": 1})
FIXED = Backoff(BackoffKind.FIXED, 2.0)


def spec(name: str = "send_email", **kw: Any) -> DefinitionSpec:
    options = kw.pop("options", DefinitionOptions(0, 5, FIXED, 30.0))
    return DefinitionSpec(name, kw.pop("queue", "emails"), options, **kw)


def log_lsn(harness: Harness) -> int:
    assert harness.engine is not None
    return harness.engine.definitions.log.applied_lsn


@run
async def test_a_definition_fills_what_every_enqueue_path_leaves_unset(harness: Harness) -> None:
    e = await harness.open(T)
    ((d, changed),) = await e.definitions.register([spec()], "w1", T)
    assert changed and d.registered_by == "w1" and d.created_at == d.updated_at == T
    await e.enqueue("emails", "warm", GOOD, now=T)  # the queue exists: the next enqueue is the fast path
    job, _ = await e.enqueue("emails", "send_email", GOOD, now=T)
    assert (job.max_attempts, job.timeout, job.backoff) == (5, 30.0, FIXED)
    job, _ = await e.enqueue("new-queue", "send_email", GOOD, now=T)  # a new queue: the general path
    assert (job.max_attempts, job.timeout) == (5, 30.0)
    mine, _ = await e.enqueue(
        "emails", "send_email", GOOD, now=T, options=JobOptions(max_attempts=2, priority=4)
    )
    assert (mine.max_attempts, mine.timeout, mine.priority, mine.backoff) == (2, 30.0, 4, FIXED)
    other, _ = await e.enqueue("emails", "other", GOOD, now=T)
    assert (other.max_attempts, other.timeout, other.backoff) == (25, 60.0, None)  # the server's
    jobs, _ = await e.enqueue_batch("emails", "send_email", [GOOD, GOOD], now=T)
    assert [(j.max_attempts, j.timeout) for j in jobs] == [(5, 30.0), (5, 30.0)]
    keyed, _ = await e.enqueue("emails", "send_email", GOOD, now=T, idempotency_key="k")
    assert keyed.max_attempts == 5
    delayed, _ = await e.enqueue("emails", "send_email", GOOD, now=T, options=JobOptions(delay=5))
    assert delayed.max_attempts == 5 and delayed.run_at == T + 5


@run
async def test_priority_zero_takes_the_definitions_priority(harness: Harness) -> None:
    e = await harness.open(T)
    await e.definitions.register([spec(options=DefinitionOptions(priority=7))], "w", T)
    job, _ = await e.enqueue("emails", "send_email", GOOD, now=T)
    assert job.priority == 7 and job.max_attempts == 25
    job, _ = await e.enqueue("emails", "send_email", GOOD, now=T, options=JobOptions(priority=2))
    assert job.priority == 2


@run
async def test_a_schedules_ticks_take_the_definition_under_the_schedules_own_options(
    harness: Harness,
) -> None:
    e = await harness.open(T)
    await e.definitions.register([spec("report")], "w", T)
    own = ScheduleOptions(max_attempts=2)
    await e.schedules.put(ScheduleSpec("s", "* * * * *", "q", "report", options=own), T, replace=False)
    await e.tick(T + 60)
    (job,) = e.table.by_name("report", 10)
    assert (job.max_attempts, job.timeout, job.backoff) == (2, 30.0, FIXED)


@run
async def test_identical_registration_writes_nothing_the_latest_wins_and_changes_are_logged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    e = await harness.open(T)
    with caplog.at_level(logging.INFO, "spitfire.server.definitions"):
        await e.definitions.register([spec(schema=SCHEMA)], "w1", T)
        lsn = log_lsn(harness)
        ((d, changed),) = await e.definitions.register([spec(schema=SCHEMA)], "w2", T + 1)
        assert not changed and log_lsn(harness) == lsn and d.registered_by == "w1"
        # Compared in canonical form: other spacing and key order are the same schema.
        same = json.dumps(json.loads(SCHEMA), indent=2, sort_keys=False)
        ((_, changed),) = await e.definitions.register([spec(schema=same)], "w2", T + 1)
        assert not changed and log_lsn(harness) == lsn
        options = DefinitionOptions(0, 3, None, 30.0)
        ((d, changed),) = await e.definitions.register([spec(options=options, schema=SCHEMA)], "w2", T + 2)
        assert changed and log_lsn(harness) == lsn + 1
        assert (d.registered_by, d.created_at, d.updated_at) == ("w2", T, T + 2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("job definition 'send_email' registered by w1: queue 'emails', priority 0")
    assert (
        lines[1] == "job definition 'send_email' changed by w2: max_attempts 5 -> 3, backoff fixed -> default"
    )
    job, _ = await e.enqueue("emails", "send_email", GOOD, now=T + 3)
    assert job.max_attempts == 3 and job.backoff is None


@run
async def test_a_registration_replaces_only_the_names_it_gives(harness: Harness) -> None:
    e = await harness.open(T)
    await e.definitions.register([spec("a"), spec("b")], "w1", T)
    await e.definitions.register([spec("b", queue="other")], "w2", T + 1)
    assert [(d.spec.name, d.spec.queue, d.registered_by) for d in e.definitions.all()] == [
        ("a", "emails", "w1"),
        ("b", "other", "w2"),
    ]
    gone = await e.definitions.delete("a", T + 2)
    assert gone.spec.name == "a" and [d.spec.name for d in e.definitions.all()] == ["b"]
    job, _ = await e.enqueue("emails", "a", GOOD, now=T + 3)
    assert job.max_attempts == 25  # its definition is gone: the server's default again
    with pytest.raises(DefinitionNotFound):
        await e.definitions.delete("a", T + 3)
    with pytest.raises(DefinitionNotFound):
        e.definitions.get("a")


@run
async def test_validate_refuses_a_bad_payload_naming_the_field_and_enqueues_nothing(harness: Harness) -> None:
    e = await harness.open(T)
    await e.definitions.register([spec(schema=SCHEMA, validate=True)], "w", T)
    cases: list[tuple[str, Any]] = [
        ("payload.to", {"to": 3}),
        ("payload.tags[1]", {"to": "x", "tags": ["a", 2]}),
        ("payload.to", {"n": 1}),  # required
        ("payload", [1, 2]),
    ]
    for field, value in cases:
        with pytest.raises(ValidationError) as err:
            await e.enqueue("emails", "send_email", msgspec.msgpack.encode(value), now=T)
        assert err.value.field == field, str(err.value)
        assert "the schema of job 'send_email'" in str(err.value)
    with pytest.raises(ValidationError) as err:
        await e.enqueue("emails", "send_email", b"\xc1", now=T)  # not msgpack
    assert err.value.field == "payload"
    with pytest.raises(ValidationError) as err:
        await e.enqueue("emails", "send_email", b"\xc0", now=T)  # no payload: no "to"
    assert err.value.field == "payload.to"
    with pytest.raises(ValidationError) as err:
        await e.enqueue_batch("emails", "send_email", [GOOD, msgspec.msgpack.encode({"to": 1})], now=T)
    assert err.value.field == "payloads[1].to"
    assert e.table.by_name("send_email", 10) == []
    assert "emails" not in e.state.queues  # refused before its queue was created
    job, _ = await e.enqueue("emails", "send_email", GOOD, now=T)
    assert job.payload == GOOD
    # Without validate the schema is only shown: a payload that does not fit is enqueued.
    await e.definitions.register([spec(schema=SCHEMA)], "w", T)
    await e.enqueue("emails", "send_email", msgspec.msgpack.encode({"to": 3}), now=T)


@run
async def test_validation_reads_payloads_as_json_does_bytes_datetimes_int_keys(harness: Harness) -> None:
    e = await harness.open(T)
    schema = {"type": "object", "properties": {"b": {"type": "string"}, "m": {"type": "object"}}}
    await e.definitions.register([spec(schema=json.dumps(schema), validate=True)], "w", T)
    import datetime

    value = {"b": b"\x00\x01", "when": datetime.datetime.now(datetime.UTC), "m": {1: "x"}}
    await e.enqueue("emails", "send_email", msgspec.msgpack.encode(value), now=T)
    ext = msgspec.msgpack.encode(msgspec.msgpack.Ext(5, b"x"))
    with pytest.raises(ValidationError) as err:
        await e.enqueue("emails", "send_email", ext, now=T)
    assert err.value.field == "payload"
    deep = b"\x91" * 5000 + b"\x80"  # 5,000 nested arrays
    with pytest.raises(ValidationError) as err:
        await e.enqueue("emails", "send_email", deep, now=T)
    assert err.value.field == "payload"


@run
async def test_a_schedule_whose_payload_does_not_fit_is_refused(harness: Harness) -> None:
    e = await harness.open(T)
    await e.definitions.register([spec("report", schema=SCHEMA, validate=True)], "w", T)
    bad = ScheduleSpec("s", "* * * * *", "q", "report", payload=msgspec.msgpack.encode({"to": 1}))
    with pytest.raises(ValidationError) as err:
        await e.schedules.put(bad, T, replace=False)
    assert err.value.field == "payload.to" and e.schedules.all() == []


BAD: list[tuple[Any, str]] = [
    (spec(""), "definitions[1].name"),
    (spec("a\x00b"), "definitions[1].name"),
    (spec(queue="no/slash"), "definitions[1].queue"),
    (spec(options=DefinitionOptions(priority=11)), "definitions[1].priority"),
    (spec(options=DefinitionOptions(priority=True)), "definitions[1].priority"),
    (spec(options=DefinitionOptions(max_attempts=0)), "definitions[1].max_attempts"),
    (spec(options=DefinitionOptions(timeout=-1.0)), "definitions[1].timeout"),
    (spec(options=DefinitionOptions(timeout=float("nan"))), "definitions[1].timeout"),
    (
        spec(options=DefinitionOptions(backoff=Backoff(BackoffKind.FIXED, -1.0))),
        "definitions[1].backoff.base",
    ),
    (spec(options="fast"), "definitions[1].options"),
    (spec(schema="{not json"), "definitions[1].schema"),
    (spec(schema="[1, 2]"), "definitions[1].schema"),
    (spec(schema='{"type": "nope"}'), "definitions[1].schema"),
    (spec(schema='{"$ref": "http://127.0.0.1:9/x.json"}'), "definitions[1].schema"),
    (spec(schema="[" * 100 + "]" * 100), "definitions[1].schema"),
    (spec(schema='{"items": ' * 80 + "{}" + "}" * 80), "definitions[1].schema"),
    (spec(schema=3), "definitions[1].schema"),
    (spec(validate=True), "definitions[1].validate"),
    (spec(validate="yes"), "definitions[1].validate"),
    (DefinitionSpec(3), "definitions[1].name"),  # type: ignore[arg-type]
    ("not a definition", "definitions[1]"),
    (spec("fine"), "definitions[1].name"),  # the same name twice
]


@pytest.mark.parametrize(("bad", "field"), BAD)
@run
async def test_bad_definitions_name_the_field_and_change_nothing(
    harness: Harness, bad: Any, field: str
) -> None:
    e = await harness.open(T)
    await e.definitions.register([spec("kept")], "w", T)
    lsn = log_lsn(harness)
    with pytest.raises(ValidationError) as err:
        await e.definitions.register([spec("fine"), bad], "w", T)  # all or nothing: "fine" is not made
    assert err.value.field == field, str(err.value)
    assert log_lsn(harness) == lsn and [d.spec.name for d in e.definitions.all()] == ["kept"]


@run
async def test_limits_refuse_and_change_nothing(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    e = await harness.open(T)
    huge = json.dumps({"description": "x" * defs.MAX_SCHEMA_BYTES})
    with pytest.raises(PayloadTooLarge) as too_large:
        await e.definitions.register([spec(schema=huge)], "w", T)
    assert too_large.value.field == "definitions[0].schema"
    with pytest.raises(ValidationError) as err:
        await e.definitions.register([spec(f"j{i}") for i in range(defs.MAX_DEFINITIONS + 1)], "w", T)
    assert err.value.field == "definitions"
    with pytest.raises(ValidationError):
        await e.definitions.register("send_email", "w", T)  # type: ignore[arg-type]
    monkeypatch.setattr(defs, "MAX_DEFINITIONS", 3)
    await e.definitions.register([spec("a"), spec("b")], "w", T)
    with pytest.raises(TooManyDefinitions):
        await e.definitions.register([spec("c"), spec("d")], "w", T)
    await e.definitions.register([spec("a", queue="x"), spec("c")], "w", T)  # a change and one more fit
    monkeypatch.setattr(defs, "MAX_TOTAL_SCHEMA_BYTES", 2 * len(json.dumps({"title": "y" * 100})))
    big = json.dumps({"title": "y" * 100})
    await e.definitions.register([spec("a", schema=big)], "w", T)
    with pytest.raises(TooManyDefinitions):
        await e.definitions.register([spec("b", schema=big), spec("c", schema=big)], "w", T)
    assert [d.spec.name for d in e.definitions.all()] == ["a", "b", "c"]
    assert e.definitions.get("b").spec.schema is None


@run
async def test_definitions_survive_restarts_and_snapshots(harness: Harness) -> None:
    e = await harness.open(T)
    await e.definitions.register([spec(schema=SCHEMA, validate=True), spec("other")], "w", T)
    await e.definitions.delete("other", T + 1)
    e = await harness.restart(T + 2)
    assert [d.spec.name for d in e.definitions.all()] == ["send_email"]
    with pytest.raises(ValidationError):  # the validator is compiled again at recovery
        await e.enqueue("emails", "send_email", msgspec.msgpack.encode({"to": 1}), now=T + 2)
    for i in range(defs.SNAPSHOT_EVERY):
        await e.definitions.register(
            [spec(f"j{i % 7}", options=DefinitionOptions(max_attempts=i + 1))], "w", T
        )
    await e.tick(T + 3)  # writes the snapshot
    assert e.definitions.log.snapshot_lsn == e.definitions.log.applied_lsn > 0
    await e.definitions.register([spec("after")], "w", T + 4)
    e = await harness.restart(T + 5)
    names = [d.spec.name for d in e.definitions.all()]
    assert names == ["after", *(f"j{i}" for i in range(7)), "send_email"]
    job, _ = await e.enqueue("emails", "j6", GOOD, now=T + 5)
    last_j6 = max(i for i in range(defs.SNAPSHOT_EVERY) if i % 7 == 6)
    assert job.max_attempts == last_j6 + 1  # its latest registration, from the snapshot
