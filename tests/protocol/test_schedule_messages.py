"""The schedule messages follow the versioning rules: a minimal PUT_SCHEDULE (the required fields
only) decodes with every default, and a ScheduleInfo with a key this build does not know still
decodes."""

from __future__ import annotations

import msgspec

from spitfire.protocol import messages as m
from spitfire.protocol.vectors import generate


def test_a_put_schedule_of_the_required_fields_takes_the_defaults() -> None:
    body = msgspec.msgpack.encode(["nightly", "0 3 * * *", "reports", "build_report"])
    put = m.decode_body(m.MessageType.PUT_SCHEDULE, body)
    assert put == m.PutSchedule("nightly", "0 3 * * *", "reports", "build_report")
    assert (put.timezone, put.payload, put.options, put.misfire, put.replace) == (
        "UTC", None, m.ScheduleOptions(), "skip", False,
    )  # fmt: skip


def test_schedule_info_is_a_map_read_by_name() -> None:
    info = msgspec.msgpack.decode(msgspec.msgpack.encode(generate._schedule()))
    assert isinstance(info, dict) and info["name"] == "nightly-report"
    info["a_new_key"] = {"nested": [1]}
    body = msgspec.msgpack.encode([info, True])
    reply = m.decode_body(m.MessageType.SCHEDULE, body)
    assert reply.schedule == generate._schedule() and reply.created


def test_every_schedule_request_type_is_a_client_type_and_answers_are_server_types() -> None:
    requests = [t for t in m.MessageType if t.name.endswith("_SCHEDULE") or t.name == "LIST_SCHEDULES"]
    assert len(requests) == 7 and all(t < 0x40 for t in requests)
    assert m.MessageType.SCHEDULE >= 0x40 and m.MessageType.SCHEDULES >= 0x40
    assert not set(requests) & m.NO_REPLY
