"""Record bodies: golden bytes of wal/FORMAT.md "Record bodies", type bytes, and the history reader."""

from __future__ import annotations

import pytest

from spitfire.index.job import Job, JobState, transitions
from spitfire.server import records as rec
from spitfire.server.records import RecordType

JOB_ID = "0123456789abcdef01234567"
AT = 1700000000.5
ID_HEX = "b8" + JOB_ID.encode().hex()  # msgpack str8 of 24 bytes
AT_HEX = "cb41d954fc40200000"  # msgpack float64


def test_record_type_bytes_are_stable() -> None:
    assert {t.name: t.value for t in RecordType} == {
        "JOB_ENQUEUED": 1, "JOBS_ENQUEUED": 2, "JOB_SUCCEEDED": 3, "JOB_FAILED": 4, "JOB_REQUEUED": 5,
        "JOB_CANCELLED": 6, "JOB_RETRIED": 7, "JOB_DELETED": 8, "QUEUE_PAUSED": 9, "QUEUE_RESUMED": 10,
        "QUEUE_DURABILITY": 11, "JOB_SNOOZED": 12, "JOB_RELEASED": 13, "QUEUE_DELETED": 14, "JOBS_LEASED": 15,
        "SCHEDULE_SET": 20, "SCHEDULE_DELETED": 21, "SCHEDULE_TICKED": 22,
        "DEFINITIONS_SET": 30, "DEFINITION_DELETED": 31,
    }  # fmt: skip
    assert set(rec.BODY_TYPES) == set(RecordType)


@pytest.mark.parametrize(
    ("rtype", "body", "golden"),
    [
        (RecordType.JOB_RELEASED, rec.JobEvent(JOB_ID, AT, 2), "93" + ID_HEX + AT_HEX + "02"),
        (RecordType.JOB_CANCELLED, rec.JobEvent(JOB_ID, AT, 2), "93" + ID_HEX + AT_HEX + "02"),
        (
            RecordType.JOB_SUCCEEDED,
            rec.JobSucceeded(JOB_ID, AT, 1, b"ok"),
            "94" + ID_HEX + AT_HEX + "01c4026f6b",
        ),
        (RecordType.QUEUE_PAUSED, rec.QueueEvent(AT), "91" + AT_HEX),
    ],
)
def test_record_body_golden_bytes(rtype: RecordType, body: object, golden: str) -> None:
    assert rec.encode(body).hex() == golden
    assert rec.decode(rtype, bytes.fromhex(golden)) == body


def test_a_shorter_body_takes_the_default_of_missing_trailing_fields() -> None:
    assert rec.decode(RecordType.JOB_RELEASED, bytes.fromhex("92" + ID_HEX + AT_HEX)) == rec.JobEvent(
        JOB_ID, AT, 0
    )


def test_unknown_record_type_is_refused() -> None:
    with pytest.raises(rec.UnknownRecordType):
        rec.decode(200, b"\x90")


def _job(state: JobState, history: list[float] | None) -> Job:
    return Job(JOB_ID, "q", "h", b"", state, 10.0, history=history)


def test_transitions_start_at_the_creation_state() -> None:
    S = JobState
    assert transitions(_job(S.SCHEDULED, None)) == [(S.SCHEDULED, 10.0)]
    seeded = _job(S.RESERVED, [2.0, 10.0, 3.0, 11.0])
    assert transitions(seeded) == [(S.ENQUEUED, 10.0), (S.RESERVED, 11.0)]
    # Histories written before the creation state was recorded: it is derived.
    assert transitions(_job(S.RESERVED, [3.0, 11.0])) == [(S.ENQUEUED, 10.0), (S.RESERVED, 11.0)]
    assert transitions(_job(S.ENQUEUED, [2.0, 12.0])) == [(S.SCHEDULED, 10.0), (S.ENQUEUED, 12.0)]
