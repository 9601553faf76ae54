"""Writes ``wal/vectors/records.json``: golden bytes of every log record type and snapshot chunk.

wal/FORMAT.md ("Record bodies") describes each body; these vectors pin the exact bytes, so that an
accidental change of the encoding (a reordered field, a changed default, a new msgspec) fails
``tests/wal/test_records_golden.py`` instead of silently writing logs older servers misread. Run from
a checkout (idempotent: the same input always writes the same bytes)::

    .venv/bin/python -m spitfire.server.record_vectors          # rewrite wal/vectors/records.json
    .venv/bin/python -m spitfire.server.record_vectors --check  # exit 1 if it is stale

A new record type needs a vector here (the test fails until every `RecordType` has one): add it to
`RECORDS` and run the first command.

The file holds ``{"format", "records": [...], "snapshot_chunks": [...]}``. A record vector is
``{"name", "type", "type_byte", "body", "body_hex", "record_hex"}``: ``body`` is the body's fields by
name in declaration order (bytes as lower-case hex, enums as their integer, non-finite floats as
the strings "inf"/"-inf", absent optionals as null, nested structs as objects), ``body_hex`` the
msgpack body, ``record_hex`` the whole framed record as a segment holds it (crc32c, length, type
byte, body, padding). A snapshot chunk vector is ``{"name", "kind", "body", "hex"}``.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from pathlib import Path
from typing import Any

import msgspec

from spitfire.index.job import AttemptError, Backoff, BackoffKind, Job, JobState
from spitfire.wal.format import encode_record

from . import records as rec
from .records import RecordType

#: Where the vectors are written: next to wal/FORMAT.md, in the checkout this module lives in.
OUTPUT = Path(__file__).resolve().parent.parent / "wal" / "vectors" / "records.json"
#: Bumped when the file's layout (not the record format) changes.
FILE_FORMAT = 1

# Ids have the server's shape: 12 hex digits of Unix ms, 6 of counter, 6 random.
JOB_A = "019b76daa800000000964b48"
JOB_B = "019b76daa800000001a1f3c2"
T0 = 1767225600.25  # 2026-01-01T00:00:00.25Z
PAYLOAD = msgspec.msgpack.encode({"to": "a@b.c"})

S = JobState
#: Every state the full job was in, with when it entered it (scheduled, ran, failed, retried, runs).
FULL_HISTORY = (
    (S.SCHEDULED, T0),
    (S.ENQUEUED, T0 + 10.0),
    (S.RESERVED, T0 + 10.25),
    (S.RETRYING, T0 + 10.5),
    (S.ENQUEUED, T0 + 11.0),
    (S.RESERVED, T0 + 11.25),
    (S.RUNNING, T0 + 12.0),
)


def full_job() -> Job:
    """A job with every field set to a value other than its default: three attempts, two of them
    failed (one with a traceback), a result, a history of every transition, a lease."""
    return Job(
        id=JOB_A,
        queue="emails",
        name="send_email",
        payload=PAYLOAD,
        state=S.RUNNING,
        created_at=T0,
        priority=5,
        run_at=T0 + 10.0,
        max_attempts=5,
        backoff=Backoff(BackoffKind.LINEAR, base=2.5, factor=3.0, cap=600.0, jitter=True),
        timeout=30.0,
        idempotency_key="welcome-42",
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "ünï"},
        attempts=3,
        errors=[
            AttemptError(
                1, T0 + 10.5, "TimeoutError: smtp", 'Traceback (most recent call last):\n  File "x.py"\n'
            ),
            AttemptError(2, T0 + 11.5, "lease expired"),
        ],
        result=b"\xc3",
        history=[x for state, at in FULL_HISTORY for x in (float(state), at)],
        lease_until=T0 + 42.0,
        worker="w-7",
        lsn=4096,
        updated_at=T0 + 12.0,
        seq=17,
    )


def full_schedule() -> rec.Schedule:
    """A schedule with every field set (a paused one that has run)."""
    options = rec.ScheduleOptions(
        7, 3, Backoff(BackoffKind.FIXED, 30.0, 1.0, 30.0, False), 600.0, {"team": "bi"}
    )
    spec = rec.ScheduleSpec(
        "nightly", "0 3 * * *", "reports", "build_report", "Europe/Berlin", PAYLOAD, options, "once"
    )
    return rec.Schedule(spec, True, T0, T0 + 5.0, T0 + 3.0, T0 + 3.5, JOB_A)


SCHEMA = '{"$defs":{"send_email_args":{"properties":{"to":{"type":"string"}},"required":["to"],"type":"object"}},"$ref":"#/$defs/send_email_args"}'  # noqa: E501


def full_definition() -> rec.JobDefinition:
    """A job definition with every field set (a validated one that was changed once)."""
    options = rec.DefinitionOptions(5, 3, Backoff(BackoffKind.DELAYS, delays=(1.0, 5.0)), 30.0)
    spec = rec.DefinitionSpec("send_email", "emails", options, SCHEMA, True)
    return rec.JobDefinition(spec, "spitfire-python/0.1.0 web-1:812", T0, T0 + 60.0)


def minimal_job() -> Job:
    """A job as a plain enqueue writes it: every optional field at its default."""
    return Job(JOB_B, "emails", "send_email", b"", S.ENQUEUED, T0, updated_at=T0)


#: (name, record type, body): the record vectors, in file order. Every RecordType has at least one.
def history_block(hour_offset: int = 0) -> rec.HistoryBlock:
    """One hour of counters: minute 0 of the hour with 3 enqueued, 2 succeeded, 1 failed; minute 59
    with 1,000,000 enqueued (a full 64-bit little-endian lane)."""
    counts = [0] * 180
    counts[0:3] = [3, 2, 1]
    counts[177] = 1_000_000
    data = b"".join(n.to_bytes(8, "little") for n in counts)
    return rec.HistoryBlock(int(T0 // 3600) + hour_offset, data)


RECORDS: list[tuple[str, RecordType, msgspec.Struct]] = [
    ("job-enqueued-every-field", RecordType.JOB_ENQUEUED, full_job()),
    ("job-enqueued-minimal", RecordType.JOB_ENQUEUED, minimal_job()),
    (
        "job-enqueued-delays-backoff",
        RecordType.JOB_ENQUEUED,
        msgspec.structs.replace(minimal_job(), backoff=Backoff(BackoffKind.DELAYS, delays=(1.0, 5.0, 30.0))),
    ),
    ("jobs-enqueued", RecordType.JOBS_ENQUEUED, rec.JobsEnqueued([minimal_job(), full_job()])),
    ("jobs-enqueued-empty", RecordType.JOBS_ENQUEUED, rec.JobsEnqueued([])),
    (
        "jobs-enqueued-request-token",
        RecordType.JOBS_ENQUEUED,
        rec.JobsEnqueued([minimal_job()], bytes.fromhex("9f3c1ad2e45b6708a1b2c3d4e5f60718")),
    ),
    ("job-succeeded", RecordType.JOB_SUCCEEDED, rec.JobSucceeded(JOB_A, T0 + 12.5, 3, b"\x81\xa2ok\xc3")),
    ("job-succeeded-no-result", RecordType.JOB_SUCCEEDED, rec.JobSucceeded(JOB_A, T0 + 12.5, 1)),
    (
        "job-failed-retrying",
        RecordType.JOB_FAILED,
        rec.JobFailed(JOB_A, T0 + 10.5, 1, "ValueError: bad input", "Traceback ...\n", T0 + 12.5),
    ),
    (
        "job-failed-dead",
        RecordType.JOB_FAILED,
        rec.JobFailed(JOB_A, T0 + 10.5, 5, "Permanent: unknown user", None, None, True),
    ),
    ("job-requeued", RecordType.JOB_REQUEUED, rec.JobRequeued(JOB_A, T0 + 70.0, 2, "lease expired")),
    ("job-requeued-no-error", RecordType.JOB_REQUEUED, rec.JobRequeued(JOB_A, T0 + 70.0, 2)),
    ("job-cancelled", RecordType.JOB_CANCELLED, rec.JobEvent(JOB_A, T0 + 1.0, 1)),
    ("job-retried", RecordType.JOB_RETRIED, rec.JobEvent(JOB_A, T0 + 2.0, 0)),
    ("job-deleted", RecordType.JOB_DELETED, rec.JobEvent(JOB_A, T0 + 3.0, 3)),
    ("queue-paused", RecordType.QUEUE_PAUSED, rec.QueueEvent(T0)),
    ("queue-resumed", RecordType.QUEUE_RESUMED, rec.QueueEvent(T0 + 60.0)),
    ("queue-durability", RecordType.QUEUE_DURABILITY, rec.QueueDurability("sync", T0)),
    ("job-snoozed", RecordType.JOB_SNOOZED, rec.JobSnoozed(JOB_A, T0 + 5.0, 1, T0 + 65.0)),
    ("job-released", RecordType.JOB_RELEASED, rec.JobEvent(JOB_A, T0 + 4.0, 0)),
    (
        "jobs-leased",
        RecordType.JOBS_LEASED,
        rec.JobsLeased("w3", T0 + 1.0, [rec.Lease(JOB_A, 1, T0 + 61.0), rec.Lease(JOB_B, 2, T0 + 31.0)]),
    ),
    ("queue-deleted", RecordType.QUEUE_DELETED, rec.QueueEvent(T0 + 120.0)),
    ("schedule-set-every-field", RecordType.SCHEDULE_SET, full_schedule()),
    (
        "schedule-set-minimal",
        RecordType.SCHEDULE_SET,
        rec.Schedule(rec.ScheduleSpec("hourly", "@hourly", "default", "ping"), False, T0, T0, T0),
    ),
    ("schedule-deleted", RecordType.SCHEDULE_DELETED, rec.ScheduleDeleted("nightly", T0 + 7.0)),
    ("schedule-ticked", RecordType.SCHEDULE_TICKED, rec.ScheduleTicked("nightly", T0 + 3.5, T0 + 3.0, JOB_A)),
    (
        "schedule-ticked-skipped",
        RecordType.SCHEDULE_TICKED,
        rec.ScheduleTicked("nightly", T0 + 9.0, T0 + 8.0, None),
    ),
    ("schedule-triggered", RecordType.SCHEDULE_TICKED, rec.ScheduleTicked("nightly", T0 + 9.5, None, JOB_B)),
    (
        "definitions-set",
        RecordType.DEFINITIONS_SET,
        rec.DefinitionsSet(
            [full_definition(), rec.JobDefinition(rec.DefinitionSpec("ping"), "http 127.0.0.1", T0, T0)]
        ),
    ),
    ("definition-deleted", RecordType.DEFINITION_DELETED, rec.DefinitionDeleted("send_email", T0 + 90.0)),
]

#: (name, body): snapshot chunk vectors (chunk 0 is a QueueMeta, the others JobChunks).
SNAPSHOT_CHUNKS: list[tuple[str, msgspec.Struct]] = [
    (
        "queue-meta",
        rec.QueueMeta(
            rec.SNAPSHOT_VERSION,
            True,
            "group",
            [
                # Held: its job exists (expires_at infinite); released: its job was forgotten.
                rec.IdempotencyEntry("welcome-42", JOB_A, "send_email", math.inf),
                rec.IdempotencyEntry("welcome-41", JOB_B, "send_email", T0 + 86400.0),
            ],
            JOB_B,
            True,
            [
                rec.TokenRecord(
                    bytes.fromhex("9f3c1ad2e45b6708a1b2c3d4e5f60718"), "send_email", [JOB_A], T0 + 300.0
                )
            ],
        ),
    ),
    ("queue-meta-empty", rec.QueueMeta(rec.SNAPSHOT_VERSION, False, "async", [], "")),
    ("history-chunk", rec.HistoryChunk([], rec.HISTORY_VERSION, [history_block(), history_block(1)])),
    ("history-chunk-empty", rec.HistoryChunk([], rec.HISTORY_VERSION, [])),
    ("job-chunk", rec.JobChunk([full_job(), minimal_job()])),
    ("schedules", rec.SchedulesSnapshot(rec.SCHEDULES_SNAPSHOT_VERSION, [full_schedule()])),
    ("definitions", rec.DefinitionsSnapshot(rec.DEFINITIONS_SNAPSHOT_VERSION, [full_definition()])),
]

#: (name, body): records of ``meta/history-retired`` (type byte `history.RETIRED_RECORD`).
RETIRED_RECORDS: list[tuple[str, rec.RetiredHistory]] = [
    ("retired-one-queue", rec.RetiredHistory([("emails", 42, T0 + 120.0)], [history_block()])),
    (
        "retired-compacted",
        rec.RetiredHistory(
            [("emails", 42, T0 + 120.0), ("sms", 7, T0 + 180.0)], [history_block(), history_block(1)]
        ),
    ),
]
#: Type byte of a retired-history record (`spitfire.server.history.RETIRED_RECORD`).
RETIRED_TYPE_BYTE = 1

_DECODERS: dict[str, msgspec.msgpack.Decoder[Any]] = {
    "QueueMeta": rec.meta_decoder,
    "JobChunk": rec.chunk_decoder,
    "SchedulesSnapshot": msgspec.msgpack.Decoder(rec.SchedulesSnapshot),
    "DefinitionsSnapshot": msgspec.msgpack.Decoder(rec.DefinitionsSnapshot),
    "HistoryChunk": rec.history_decoder,
    "RetiredHistory": rec.retired_decoder,
}


def describe(value: Any) -> Any:
    """The JSON description of a body or field (see the module docstring)."""
    if isinstance(value, msgspec.Struct):
        return {name: describe(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.IntEnum):
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "inf", "-inf", "nan": JSON has no such numbers
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value


def build(cls: type[msgspec.Struct], description: dict[str, Any]) -> msgspec.Struct:
    """The body a description stands for (the inverse of `describe`), typed by ``cls``."""
    return _build(msgspec.inspect.type_info(cls), description)  # type: ignore[no-any-return]


def _build(info: msgspec.inspect.Type, value: Any) -> Any:
    if isinstance(info, msgspec.inspect.StructType):
        if set(value) != {f.name for f in info.fields}:
            raise ValueError(f"a {info.cls.__name__} description names every field: {sorted(value)}")
        return info.cls(**{f.name: _build(f.type, value[f.name]) for f in info.fields})
    if isinstance(info, msgspec.inspect.UnionType):
        if value is None:
            return None
        (inner,) = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return _build(inner, value)
    if isinstance(info, msgspec.inspect.BytesType):
        return bytes.fromhex(value)
    if isinstance(info, msgspec.inspect.TupleType):
        return tuple(_build(t, v) for t, v in zip(info.item_types, value, strict=True))
    if isinstance(info, msgspec.inspect.ListType):
        return [_build(info.item_type, v) for v in value]
    if isinstance(info, msgspec.inspect.VarTupleType):
        return tuple(_build(info.item_type, v) for v in value)
    if isinstance(info, msgspec.inspect.DictType):
        return {k: _build(info.value_type, v) for k, v in value.items()}
    if isinstance(info, msgspec.inspect.FloatType):
        return float(value)  # also parses "inf"
    if isinstance(info, msgspec.inspect.EnumType):
        return info.cls(value)
    return value


def records() -> list[dict[str, Any]]:
    """The record vectors, as written to the file."""
    out: list[dict[str, Any]] = []
    for name, rtype, body in RECORDS:
        encoded = rec.encode(body)
        out.append(
            {
                "name": name,
                "type": rtype.name,
                "type_byte": int(rtype),
                "body": describe(body),
                "body_hex": encoded.hex(),
                "record_hex": encode_record(int(rtype), encoded).hex(),
            }
        )
    return out


def snapshot_chunks() -> list[dict[str, Any]]:
    """The snapshot chunk vectors, as written to the file."""
    return [
        {"name": name, "kind": type(body).__name__, "body": describe(body), "hex": rec.encode(body).hex()}
        for name, body in SNAPSHOT_CHUNKS
    ]


def retired_records() -> list[dict[str, Any]]:
    """The retired-history record vectors, as written to the file."""
    out: list[dict[str, Any]] = []
    for name, body in RETIRED_RECORDS:
        encoded = rec.encode(body)
        out.append(
            {
                "name": name,
                "kind": type(body).__name__,
                "type_byte": RETIRED_TYPE_BYTE,
                "body": describe(body),
                "hex": encoded.hex(),
                "record_hex": encode_record(RETIRED_TYPE_BYTE, encoded).hex(),
            }
        )
    return out


def chunk_decoder(kind: str) -> msgspec.msgpack.Decoder[Any]:
    """The decoder recovery uses for a snapshot chunk of ``kind`` ("QueueMeta", "HistoryChunk" or
    "JobChunk"), or for a retired-history record ("RetiredHistory")."""
    return _DECODERS[kind]


def render() -> str:
    """The whole file's text."""
    document = {
        "format": FILE_FORMAT,
        "records": records(),
        "snapshot_chunks": snapshot_chunks(),
        "retired_history": retired_records(),
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write (or with --check, verify) the vectors file; returns the exit status."""
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python -m spitfire.server.record_vectors", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date ({len(RECORDS)} records, {len(SNAPSHOT_CHUNKS)} chunks)")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(RECORDS)} records, {len(SNAPSHOT_CHUNKS)} chunks)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
