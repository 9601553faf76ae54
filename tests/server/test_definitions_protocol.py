"""Job definitions over the binary protocol against a real server: REGISTER_JOBS and
LIST_JOB_DEFINITIONS; an ENQUEUE that sets no option gets the definition's; validate refuses a bad
payload naming the field; hostile registrations (a huge schema, 100,000 definitions, wrong types,
a remote $ref) are refused and change nothing; SIGTERM and SIGKILL keep every definition."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest
from protoclient import TIMEOUT, ProtoClient, ServerError, ServerProcess, run, server_process

from spitfire.protocol import messages as m
from spitfire.protocol.frames import encode_frame
from spitfire.protocol.messages import MessageType

T = MessageType
SCHEMA = json.dumps({
    "$ref": "#/$defs/send_email_args",
    "$defs": {"send_email_args": {"type": "object", "properties": {"to": {"type": "string"}},
                                  "required": ["to"]}},
})  # fmt: skip


def definition(name: str, **kw: object) -> m.JobDefinitionSpec:
    fields: dict[str, object] = {"queue": "emails", "max_attempts": 5, "timeout": 30.0, **kw}
    return m.JobDefinitionSpec(name, **fields)  # type: ignore[arg-type]


async def listed(c: ProtoClient) -> dict[str, m.JobDefinitionInfo]:
    reply = await c.call(T.LIST_JOB_DEFINITIONS, m.ListJobDefinitions())
    assert isinstance(reply, m.JobDefinitionList)
    return {d.name: d for d in reply.definitions}


def test_register_list_and_an_enqueue_that_sets_nothing_gets_the_definition(
    server: ServerProcess, queue: str
) -> None:
    name = f"job-{queue}"[:150]

    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            reply = await c.call(
                T.REGISTER_JOBS, m.RegisterJobs([definition(name, priority=3, schema=SCHEMA)])
            )
            assert isinstance(reply, m.Ok)
            d = (await listed(c))[name]
            assert (d.queue, d.priority, d.max_attempts, d.timeout, d.validate) == (
                "emails",
                3,
                5,
                30.0,
                False,
            )
            assert d.registered_by == "protoclient/test" and json.loads(d.schema or "") == json.loads(SCHEMA)
            enqueued = await c.enqueue(queue, name, msgspec.msgpack.encode({"to": "a@b.c"}))
            job = await c.get(enqueued.job_id)
            assert (job.max_attempts, job.timeout, job.priority) == (5, 30.0, 3)
            many = await c.call(
                T.ENQUEUE_MANY, m.EnqueueMany(queue, name, [b"\x80", b"\x80"], max_attempts=2)
            )
            assert [(await c.get(i)).max_attempts for i in many.job_ids] == [2, 2]  # the enqueue's own wins
            other = await c.get((await c.enqueue(queue, "undefined")).job_id)
            assert (other.max_attempts, other.timeout) == (25, 60.0)
        finally:
            c.close()

    run(body())


def test_validate_refuses_a_bad_payload_naming_the_field(server: ServerProcess, queue: str) -> None:
    name = f"checked-{queue}"[:150]

    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            await c.call(T.REGISTER_JOBS, m.RegisterJobs([definition(name, schema=SCHEMA, validate=True)]))
            with pytest.raises(ServerError) as err:
                await c.enqueue(queue, name, msgspec.msgpack.encode({"to": 42}))
            assert (err.value.code, err.value.field) == ("BAD_REQUEST", "payload.to")
            with pytest.raises(ServerError) as err:
                await c.call(T.ENQUEUE_MANY, m.EnqueueMany(queue, name, [b"\x81\xa2to\xa1x", b"\x80"]))
            assert err.value.field == "payloads[1].to"
            with pytest.raises(ServerError):
                await c.stats(queue)  # nothing was enqueued: the queue was never made
            ok = await c.enqueue(queue, name, msgspec.msgpack.encode({"to": "a@b.c"}))
            assert ok.created
        finally:
            c.close()

    run(body())


def test_hostile_registrations_are_refused_and_change_nothing(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            before = await listed(c)
            cases: list[tuple[m.RegisterJobs, str, str]] = [
                (m.RegisterJobs([definition("huge", schema='{"title": "' + "x" * 70_000 + '"}')]),
                 "TOO_LARGE", "definitions[0].schema"),
                (m.RegisterJobs([definition(f"d{i}") for i in range(100_000)]), "BAD_REQUEST", "definitions"),
                (m.RegisterJobs([definition("ok"), definition("bad", max_attempts=0)]),
                 "BAD_REQUEST", "definitions[1].max_attempts"),
                (m.RegisterJobs([definition("remote", schema='{"$ref": "http://127.0.0.1:9/s.json"}')]),
                 "BAD_REQUEST", "definitions[0].schema"),
                (m.RegisterJobs([definition("deep", schema="[" * 5000 + "]" * 5000)]),
                 "BAD_REQUEST", "definitions[0].schema"),
                (m.RegisterJobs([definition("v", validate=True)]), "BAD_REQUEST", "definitions[0].validate"),
                (m.RegisterJobs([definition("b", backoff=m.Backoff("sideways"))]),
                 "BAD_REQUEST", "definitions[0].backoff.kind"),
            ]  # fmt: skip
            for message, code, field in cases:
                with pytest.raises(ServerError) as err:
                    await c.call(T.REGISTER_JOBS, message)
                assert (err.value.code, err.value.field) == (code, field), err.value
            # Wrong types on the wire: the frame does not decode (BAD_REQUEST, then the server closes).
            bad = msgspec.msgpack.encode([[["name", {"not": "a queue"}]]])
            c.write_raw(encode_frame(T.REGISTER_JOBS, 99, bad))
            await asyncio.wait_for(c.closed.wait(), TIMEOUT)
        finally:
            c.close()
        again = await ProtoClient.connect(server.port)
        try:
            assert await listed(again) == before
        finally:
            again.close()

    run(body())


def test_definitions_survive_sigterm_and_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def register(port: int) -> None:
        c = await ProtoClient.connect(port)
        try:
            await c.call(T.REGISTER_JOBS, m.RegisterJobs([definition("a", schema=SCHEMA, validate=True)]))
            await c.call(T.REGISTER_JOBS, m.RegisterJobs([definition("b", max_attempts=7)]))
        finally:
            c.close()

    async def check(port: int) -> None:
        c = await ProtoClient.connect(port)
        try:
            held = await listed(c)
            assert sorted(held) == ["a", "b"] and held["b"].max_attempts == 7 and held["a"].validate
            job = await c.get((await c.enqueue("q", "b")).job_id)
            assert job.max_attempts == 7
            with pytest.raises(ServerError) as err:
                await c.enqueue("q", "a", b"\x80")
            assert err.value.field == "payload.to"
        finally:
            c.close()

    with server_process(data) as first:
        run(register(first.port))
        assert first.terminate() == 0
    with server_process(data) as second:
        run(check(second.port))
        second.kill()
    with server_process(data) as third:
        run(check(third.port))
