"""Writes ``vectors.json``: golden frames of every message type for every SDK's codec tests.

Run from the repository root (idempotent: the same input always writes the same bytes)::

    .venv/bin/python -m spitfire.protocol.vectors.generate          # rewrite vectors.json
    .venv/bin/python -m spitfire.protocol.vectors.generate --check  # exit 1 if it is stale

Each vector is ``{"name", "type", "type_byte", "request_id", "body", "hex"}``: ``type`` is the
`MessageType` name, ``body`` the message's fields by name in declaration order (bytes as lower-case
hex strings, absent optionals as null, nested bodies as objects), ``hex`` the whole frame. A codec
passes when decoding ``hex`` yields ``body`` and encoding ``body`` yields ``hex`` byte for byte
(PROTOCOL.md, "Golden vectors", says how floats and integers must be encoded for that).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from .. import messages as m
from ..frames import MAX_REQUEST_ID, encode_frame

#: Where the vectors are written (next to this script).
OUTPUT = Path(__file__).with_name("vectors.json")
#: Bumped when the file's layout (not the protocol) changes.
FILE_FORMAT = 1

# Job ids have the server's shape: 12 hex digits of Unix ms, 6 of counter, 6 random.
JOB_A = "019b76daa800000000964b48"
JOB_B = "019b76daa800000001a1f3c2"
JOB_C = "019b76daa80400000000d00d"
T0 = 1767225600.25  # 2026-01-01T00:00:00.25Z
PAYLOAD = msgspec.msgpack.encode({"to": "a@b.c"})
#: A request-dedupe token as the SDKs make them: 16 random bytes (here fixed).
REQUEST_TOKEN = bytes.fromhex("9f3c1ad2e45b6708a1b2c3d4e5f60718")


def _job_info() -> m.JobInfo:
    """A job with every field set: two failed attempts, then success."""
    return m.JobInfo(
        id=JOB_A,
        queue="emails",
        name="send_email",
        payload=PAYLOAD,
        state="succeeded",
        priority=5,
        created_at=T0,
        updated_at=T0 + 12.5,
        run_at=T0 + 10.0,
        attempts=3,
        max_attempts=5,
        backoff=m.Backoff(),
        timeout=30.0,
        idempotency_key="welcome-42",
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        errors=[
            m.AttemptInfo(attempt=1, at=T0 + 10.5, error="TimeoutError: smtp", traceback="Traceback ...\n"),
            m.AttemptInfo(attempt=2, at=T0 + 11.5, error="lease expired", traceback=None),
        ],
        result=b"\xc0",
        history=[
            m.Transition(state="scheduled", at=T0),
            m.Transition(state="enqueued", at=T0 + 10.0),
            m.Transition(state="succeeded", at=T0 + 12.5),
        ],
        lease_until=None,
        worker=None,
    )


def _scheduled_job() -> m.JobInfo:
    """A job that never ran: optional fields absent, empty lists, a leased-looking worker field."""
    return m.JobInfo(
        id=JOB_B,
        queue="ünïcode-queue",
        name="report.build",
        payload=b"",
        state="reserved",
        priority=0,
        created_at=T0,
        updated_at=T0,
        run_at=None,
        attempts=1,
        max_attempts=25,
        backoff=None,
        timeout=1800.0,
        idempotency_key=None,
        headers=None,
        errors=[],
        result=None,
        history=[m.Transition(state="enqueued", at=T0), m.Transition(state="reserved", at=T0 + 0.5)],
        lease_until=T0 + 1800.5,
        worker="w-7",
    )


def _running_job() -> m.JobInfo:
    """A running job that reported progress (the optional ``progress`` key, present)."""
    return msgspec.structs.replace(
        _scheduled_job(),
        id=JOB_C,
        state="running",
        progress=m.ProgressInfo(value=0.4, message="resized 4 of 10", at=T0 + 2.5),
    )


def _stats() -> m.StatsInfo:
    counts = dict.fromkeys(
        ("scheduled", "enqueued", "reserved", "running", "succeeded", "retrying", "dead", "cancelled"), 0
    )
    return m.StatsInfo(
        total_jobs=1203,
        queues=[
            m.QueueInfo(
                name="emails",
                paused=False,
                durability="group",
                counts={**counts, "enqueued": 1200, "running": 2},
                total=1202,
            ),
            m.QueueInfo(
                name="reports", paused=True, durability="sync", counts={**counts, "dead": 1}, total=1
            ),
        ],
        workers=2,
        connections=5,
    )


def _schedule() -> m.ScheduleInfo:
    """A schedule with every field set: it ran once, and its last job still exists."""
    return m.ScheduleInfo(
        name="nightly-report",
        cron="0 3 * * *",
        timezone="Europe/Berlin",
        queue="reports",
        job="build_report",
        payload=msgspec.msgpack.encode({"kind": "daily"}),
        options=m.ScheduleOptions(5, 3, m.Backoff("linear", 10.0, 1.0, 600.0, False), 120.0, {"team": "ñ"}),
        misfire="once",
        paused=False,
        created_at=T0,
        updated_at=T0 + 1.5,
        next_run_at=T0 + 86400.0,
        last_run_at=T0 + 3600.0,
        last_job_id=JOB_C,
        last_job_state="succeeded",
    )


#: The JSON Schema of ``send_email(to: str, subject: str = "hello")`` as the Python SDK sends it
#: (``msgspec.json.schema`` of its parameters); the server answers it with its keys sorted.
SCHEMA = (
    '{"$ref":"#/$defs/send_email_args","$defs":{"send_email_args":{"title":"send_email_args",'
    '"type":"object","properties":{"to":{"type":"string"},"subject":{"type":"string"}},"required":["to"]}}}'
)
SCHEMA_SORTED = (
    '{"$defs":{"send_email_args":{"properties":{"subject":{"type":"string"},"to":{"type":"string"}},'
    '"required":["to"],"title":"send_email_args","type":"object"}},"$ref":"#/$defs/send_email_args"}'
)


def _definition_spec() -> m.JobDefinitionSpec:
    """A job definition with every field set, as a worker registers it."""
    return m.JobDefinitionSpec(
        "send_email", "emails", 5, 3, m.Backoff.of_delays([1, 5, 30]), 30.0, SCHEMA, validate=True
    )


def _definition_info() -> m.JobDefinitionInfo:
    delays = m.Backoff.of_delays([1, 5, 30])
    return m.JobDefinitionInfo(
        name="send_email", queue="emails", priority=5, max_attempts=3, backoff=delays, timeout=30.0,
        schema=SCHEMA_SORTED, validate=True, registered_by="spitfire-python/0.1.0 web-1:812",
        created_at=T0, updated_at=T0 + 60.0,
    )  # fmt: skip


def _bare_definition_info() -> m.JobDefinitionInfo:
    """A definition that sets nothing but its name (the server's defaults apply)."""
    return m.JobDefinitionInfo(
        name="ping", queue=None, priority=0, max_attempts=None, backoff=None, timeout=None, schema=None,
        validate=False, registered_by="http 127.0.0.1", created_at=T0, updated_at=T0,
    )  # fmt: skip


def _paused_schedule() -> m.ScheduleInfo:
    """A paused schedule that never ran: optional fields nil, default options."""
    return m.ScheduleInfo(
        name="every-second",
        cron="* * * * * *",
        timezone="UTC",
        queue="q",
        job="noop",
        payload=b"\x80",
        options=m.ScheduleOptions(),
        misfire="skip",
        paused=True,
        created_at=T0,
        updated_at=T0,
        next_run_at=None,
        last_run_at=None,
        last_job_id=None,
        last_job_state=None,
    )


T = m.MessageType

#: (name, message type, request id, message): the vectors, in file order.
VECTORS: list[tuple[str, m.MessageType, int, msgspec.Struct]] = [
    ("hello-minimal", T.HELLO, 1, m.Hello()),
    ("hello-token-unicode", T.HELLO, 1, m.Hello(1, "spitfire-ts/0.1.0 Zürich 🚀 pid:42", "s3cr3t-tøken")),
    ("ping", T.PING, 2, m.Ping()),
    ("enqueue-minimal", T.ENQUEUE, 3, m.Enqueue("emails", "send_email", PAYLOAD)),
    (
        "enqueue-every-option",
        T.ENQUEUE,
        4,
        m.Enqueue(
            queue="emails",
            name="send_email",
            payload=PAYLOAD,
            priority=10,
            delay=None,
            run_at=T0 + 60.0,
            max_attempts=5,
            backoff=m.Backoff("fixed", 2.5, 1.0, 60.0, True),
            timeout=30.0,
            idempotency_key="welcome-42",
            headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tag": "ñ"},
            request_token=REQUEST_TOKEN,
        ),
    ),
    (
        "enqueue-delays-backoff",
        T.ENQUEUE,
        5,
        m.Enqueue("emails", "send_email", PAYLOAD, backoff=m.Backoff.of_delays([1, 5, 30, 300])),
    ),
    (
        "enqueue-delay-empty-payload",
        T.ENQUEUE,
        MAX_REQUEST_ID,
        m.Enqueue("q", "noop", b"", delay=10.0, headers={}),
    ),
    (
        "enqueue-many-with-keys",
        T.ENQUEUE_MANY,
        5,
        m.EnqueueMany(
            "emails",
            "send_email",
            [PAYLOAD, b"\x80", bytes(range(256))],
            priority=1,
            idempotency_keys=["k-1", None, "k-3"],
        ),
    ),
    ("enqueue-many-empty", T.ENQUEUE_MANY, 6, m.EnqueueMany("emails", "send_email", [])),
    (
        "enqueue-many-request-token",
        T.ENQUEUE_MANY,
        6,
        m.EnqueueMany("emails", "send_email", [PAYLOAD, PAYLOAD], request_token=REQUEST_TOKEN),
    ),
    ("get", T.GET, 7, m.JobRef(JOB_A)),
    ("cancel", T.CANCEL, 8, m.JobRef(JOB_A)),
    ("retry", T.RETRY, 9, m.JobRef(JOB_B)),
    ("delete", T.DELETE, 10, m.JobRef("not-a-job-id")),
    ("stats-all-queues", T.STATS, 11, m.QueueRef(None)),
    ("stats-one-queue", T.STATS, 12, m.QueueRef("emails")),
    ("pause", T.PAUSE, 13, m.QueueRef("emails")),
    ("resume", T.RESUME, 14, m.QueueRef("emails")),
    ("subscribe", T.SUBSCRIBE, 15, m.Subscribe(["emails", "reports"], 64, "host-1:4242")),
    (
        "subscribe-described",
        T.SUBSCRIBE,
        15,
        m.Subscribe(["emails"], 100, "host-1:4242", host="host-1", pid=4242, concurrency=10),
    ),
    ("subscribe-unnamed", T.SUBSCRIBE, 16, m.Subscribe(["emails"], 0)),
    (
        "subscribe-resume",
        T.SUBSCRIBE,
        16,
        m.Subscribe(["emails"], 8, "host-1:4242", host="host-1", pid=4242, concurrency=10, resume="w3.5f2a"),
    ),
    ("credit", T.CREDIT, 0, m.Credit(3)),
    ("unsubscribe", T.UNSUBSCRIBE, 17, m.Unsubscribe()),
    ("start", T.START, 0, m.JobIds([JOB_A, JOB_B])),
    ("ack", T.ACK, 18, m.Ack([m.AckItem(JOB_A), m.AckItem(JOB_B, b"\x81\xa2ok\xc3")])),
    ("ack-empty", T.ACK, 19, m.Ack([])),
    (
        "fail",
        T.FAIL,
        20,
        m.Fail(
            [
                m.FailItem(
                    JOB_A, "ValueError: bad input", 'Traceback (most recent call last):\n  File "x.py"\n'
                ),
                m.FailItem(JOB_B, "Permanent: unknown user", None, retryable=False),
                m.FailItem(JOB_C, "RetryAfter(60)", None, retryable=True, retry_at=T0 + 60.0),
            ]
        ),
    ),
    ("heartbeat-worker", T.HEARTBEAT, 21, m.Heartbeat()),
    ("heartbeat-jobs", T.HEARTBEAT, 22, m.Heartbeat([JOB_A], 120.0)),
    ("release", T.RELEASE, 23, m.JobIds([JOB_C])),
    ("delete-queue", T.DELETE_QUEUE, 24, m.DeleteQueue("emails")),
    ("delete-queue-force", T.DELETE_QUEUE, 25, m.DeleteQueue("reports", force=True)),
    (
        "put-schedule-minimal",
        T.PUT_SCHEDULE,
        26,
        m.PutSchedule("hourly", "@hourly", "emails", "digest"),
    ),
    (
        "put-schedule-replace-every-option",
        T.PUT_SCHEDULE,
        27,
        m.PutSchedule(
            name="nightly-report",
            cron="0 3 * * *",
            queue="reports",
            job="build_report",
            timezone="Europe/Berlin",
            payload=msgspec.msgpack.encode({"kind": "daily"}),
            options=m.ScheduleOptions(
                5, 3, m.Backoff("linear", 10.0, 1.0, 600.0, False), 120.0, {"team": "ñ"}
            ),
            misfire="once",
            replace=True,
        ),
    ),
    ("get-schedule", T.GET_SCHEDULE, 28, m.ScheduleRef("nightly-report")),
    ("list-schedules", T.LIST_SCHEDULES, 29, m.ListSchedules()),
    ("delete-schedule", T.DELETE_SCHEDULE, 30, m.ScheduleRef("nightly-report")),
    ("pause-schedule", T.PAUSE_SCHEDULE, 31, m.ScheduleRef("nightly-report")),
    ("resume-schedule", T.RESUME_SCHEDULE, 32, m.ScheduleRef("nightly-report")),
    ("trigger-schedule", T.TRIGGER_SCHEDULE, 33, m.ScheduleRef("nightly-report")),
    ("list-jobs-all", T.LIST_JOBS, 60, m.ListJobs()),
    (
        "list-jobs-filtered",
        T.LIST_JOBS,
        61,
        m.ListJobs("emails", ["dead", "cancelled"], 20, JOB_B, newest_first=False),
    ),
    ("purge", T.PURGE, 62, m.Purge("emails", ["succeeded", "dead"])),
    ("set-durability", T.SET_DURABILITY, 63, m.SetDurability("emails", "sync")),
    ("list-workers", T.LIST_WORKERS, 64, m.ListWorkers()),
    ("wait", T.WAIT, 40, m.Wait(JOB_A, 10.0)),
    ("wait-default-timeout", T.WAIT, 41, m.Wait(JOB_B)),
    ("progress", T.PROGRESS, 0, m.Progress(JOB_A, 0.4, "resized 4 of 10")),
    ("progress-message-only", T.PROGRESS, 0, m.Progress(JOB_B, None, "warming up")),
    ("register-jobs", T.REGISTER_JOBS, 70, m.RegisterJobs([_definition_spec(), m.JobDefinitionSpec("ping")])),
    ("register-jobs-empty", T.REGISTER_JOBS, 71, m.RegisterJobs([])),
    ("list-job-definitions", T.LIST_JOB_DEFINITIONS, 72, m.ListJobDefinitions()),
    (
        "welcome",
        T.WELCOME,
        1,
        m.Welcome(1, "spitfire-server/0.1.0", 64 * 2**20, 2**20, 10.0),
    ),
    ("pong", T.PONG, 2, m.Pong()),
    ("ok", T.OK, 13, m.Ok()),
    ("enqueued-created", T.ENQUEUED, 3, m.Enqueued(JOB_A, True, "enqueued")),
    ("enqueued-existing", T.ENQUEUED, 4, m.Enqueued(JOB_A, False, "succeeded")),
    ("enqueued-many", T.ENQUEUED_MANY, 5, m.EnqueuedMany([JOB_A, JOB_B, JOB_C], [True, False, True])),
    ("job-full", T.JOB, 7, m.Job(_job_info())),
    ("job-sparse", T.JOB, 9, m.Job(_scheduled_job())),
    ("stats-reply", T.STATS_REPLY, 11, m.StatsReply(_stats())),
    ("stats-reply-empty", T.STATS_REPLY, 12, m.StatsReply(m.StatsInfo(total_jobs=0, queues=[]))),
    ("subscribed", T.SUBSCRIBED, 15, m.Subscribed("w-7")),
    (
        "deliver",
        T.DELIVER,
        0,
        m.Deliver(
            [
                m.Delivery(JOB_A, "emails", "send_email", PAYLOAD, 1, 5, 30.0, None, T0, 0),
                m.Delivery(JOB_B, "emails", "send_email", b"", 3, 3, 0.5, {"k": "v"}, T0 + 1.0, 10),
            ]
        ),
    ),
    ("done", T.DONE, 18, m.Done()),
    (
        "done-with-errors",
        T.DONE,
        20,
        m.Done(
            [
                m.ItemError(0, "CONFLICT", f"job {JOB_A} is not leased to this worker"),
                m.ItemError(2, "NOT_FOUND", f"no job {JOB_C}"),
            ]
        ),
    ),
    ("heartbeat-ok", T.HEARTBEAT_OK, 21, m.HeartbeatOk(3)),
    ("cancel-jobs", T.CANCEL_JOBS, 0, m.JobIds([JOB_B])),
    ("goaway", T.GOAWAY, 0, m.GoAway("the server is shutting down")),
    ("schedule-created", T.SCHEDULE, 27, m.ScheduleReply(_schedule(), True)),
    ("schedule-paused", T.SCHEDULE, 31, m.ScheduleReply(_paused_schedule())),
    ("schedules", T.SCHEDULES, 29, m.ScheduleList([_schedule(), _paused_schedule()])),
    ("schedules-empty", T.SCHEDULES, 29, m.ScheduleList([])),
    ("enqueued-trigger", T.ENQUEUED, 33, m.Enqueued(JOB_C, True, "enqueued")),
    ("jobs", T.JOBS, 61, m.JobList([_job_info(), _scheduled_job()], JOB_B)),
    ("jobs-last-page", T.JOBS, 60, m.JobList([])),
    ("purged", T.PURGED, 62, m.Purged(120, 118, 2)),
    ("definitions", T.DEFINITIONS, 72, m.JobDefinitionList([_definition_info(), _bare_definition_info()])),
    ("definitions-empty", T.DEFINITIONS, 72, m.JobDefinitionList([])),
    (
        "error-payload-against-schema",
        T.ERROR,
        73,
        m.Error(
            "BAD_REQUEST",
            "payload.to: 42 is not of type \"string\" (the schema of job 'send_email')",
            "payload.to",
        ),
    ),
    (
        "workers",
        T.WORKERS,
        64,
        m.WorkerList(
            [
                m.WorkerInfo(
                    id="w-7",
                    name="host-a:4242",
                    queues=["emails", "reports"],
                    held=3,
                    active=True,
                    credits=7,
                    connected_at=T0,
                    last_seen=T0 + 5.0,
                    host="host-a",
                    pid=4242,
                    concurrency=10,
                ),
                m.WorkerInfo(
                    id="w-8",
                    name="w-8",
                    queues=["emails"],
                    held=0,
                    active=False,
                    credits=0,
                    connected_at=T0 + 1.0,
                    last_seen=T0 + 2.0,
                ),
            ]
        ),
    ),
    (
        "error-purge-no-states",
        T.ERROR,
        62,
        m.Error("BAD_REQUEST", "states: give at least one state", "states"),
    ),
    ("job-running-with-progress", T.JOB, 42, m.Job(_running_job())),
    (
        "error-too-many-waiters",
        T.ERROR,
        40,
        m.Error("BUSY", "this connection already waits on 1000 jobs", None, 1.0),
    ),
    ("error-busy", T.ERROR, 3, m.Error("BUSY", "queue emails holds 100000 jobs", None, 0.5)),
    ("error-bad-request", T.ERROR, 4, m.Error("BAD_REQUEST", "priority must be in 0..10", "priority")),
    (
        "error-bad-cron",
        T.ERROR,
        26,
        m.Error(
            "BAD_REQUEST",
            "cron: 'every day' has 2 fields; give 5 (minute hour day month weekday) or 6",
            "cron",
        ),
    ),
    ("error-schedule-not-found", T.ERROR, 28, m.Error("NOT_FOUND", "no schedule named 'nightly-report'")),
    ("error-connection", T.ERROR, 0, m.Error("BAD_REQUEST", "the first frame must be HELLO")),
    (
        "error-not-leader",
        T.ERROR,
        5,
        m.Error(
            "NOT_LEADER",
            "this cluster member (b) does not lead; the leader is at 127.0.0.1:7878",
            "127.0.0.1:7878",
        ),
    ),
]


def describe(value: Any) -> Any:
    """The JSON description of a message or field: structs as objects, bytes as hex."""
    if isinstance(value, msgspec.Struct):
        return {name: describe(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value


def build() -> list[dict[str, Any]]:
    """Every vector as a JSON-ready dict."""
    out = []
    for name, mtype, request_id, message in VECTORS:
        if not isinstance(message, m.BODY_TYPES[mtype]):
            raise TypeError(f"vector {name}: {type(message).__name__} is not the body of {mtype.name}")
        frame = encode_frame(mtype, request_id, m.encode_body(message))
        out.append(
            {
                "name": name,
                "type": mtype.name,
                "type_byte": int(mtype),
                "request_id": request_id,
                "body": describe(message),
                "hex": frame.hex(),
            }
        )
    return out


def render() -> str:
    """The file's exact text."""
    document = {
        "format": FILE_FORMAT,
        "protocol_version": m.PROTOCOL_VERSION,
        "about": "Golden frames of the Spitfire binary protocol; see PROTOCOL.md, 'Golden vectors'.",
        "vectors": build(),
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write (or with --check, verify) vectors.json; returns the exit status."""
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python -m spitfire.protocol.vectors.generate", file=sys.stderr)
            return 1
        return 0
    if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
        OUTPUT.write_text(text, encoding="utf-8")
    missing = set(m.MessageType) - {mtype for _, mtype, _, _ in VECTORS}
    if missing:
        print(f"no vector for {sorted(t.name for t in missing)}", file=sys.stderr)
        return 1
    print(f"{len(VECTORS)} vectors in {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
