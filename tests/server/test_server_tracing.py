"""server/tracing.py in-process: the spans the hooks make, with an in-memory exporter."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spitfire.index.job import Job, JobState
from spitfire.server import tracing as server_tracing
from spitfire.server.errors import ValidationError
from spitfire.server.tracing import ServerTracer

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make(exporter: InMemorySpanExporter) -> ServerTracer:
    return ServerTracer.from_env(exporter)


def spans(tracer: ServerTracer, exporter: InMemorySpanExporter) -> dict[str, Any]:
    tracer.provider.force_flush()
    return {s.name: s for s in exporter.get_finished_spans()}


def job(lsn: int, headers: dict[str, str] | None = None) -> Job:
    j = Job(f"job-{lsn}", "emails", "send", b"\x80", JobState.ENQUEUED, 1000.0, headers=headers)
    j.lsn = lsn
    return j


def test_enqueue_and_its_commit_in_the_producers_trace() -> None:
    exporter = InMemorySpanExporter()
    tracer = make(exporter)
    request = tracer.start_enqueue("emails", {"traceparent": PARENT}, None)
    request.appended()
    tracer.durable("emails", 7, 3)  # one fsync: LSNs 5, 6, 7
    request.end([job(6, {"traceparent": PARENT})], None)
    got = spans(tracer, exporter)
    enqueue, commit = got["enqueue emails"], got["commit emails"]
    assert enqueue.kind is trace.SpanKind.SERVER
    assert f"{enqueue.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{enqueue.parent.span_id:016x}" == "b7ad6b7169203331"
    assert enqueue.attributes["messaging.message.id"] == "job-6"
    assert commit.parent.span_id == enqueue.context.span_id
    assert commit.attributes["messaging.spitfire.commit.batch_size"] == 3
    assert enqueue.start_time <= commit.start_time <= commit.end_time <= enqueue.end_time
    assert tracer.provider.resource.attributes["service.name"] == "spitfire-server"


def test_a_commit_not_remembered_gives_no_batch_size() -> None:
    exporter = InMemorySpanExporter()
    tracer = make(exporter)
    tracer.durable("emails", 3, 3)
    request = tracer.start_enqueue("emails", None, 2)
    request.end([job(9), job(9)], None)  # async durability: answered before its fsync
    got = spans(tracer, exporter)
    assert "messaging.spitfire.commit.batch_size" not in got["commit emails"].attributes
    assert got["enqueue emails"].attributes["messaging.batch.message_count"] == 2
    assert got["enqueue emails"].parent is None


def test_a_refused_enqueue_is_an_error_span_without_commit() -> None:
    exporter = InMemorySpanExporter()
    tracer = make(exporter)
    tracer.start_enqueue("emails", {"traceparent": "garbage"}, None).end(
        (), ValidationError("priority", "bad")
    )
    got = spans(tracer, exporter)
    assert set(got) == {"enqueue emails"}
    span = got["enqueue emails"]
    assert span.status.status_code is trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_delivery_spans_start_when_the_job_was_ready() -> None:
    exporter = InMemorySpanExporter()
    tracer = make(exporter)
    j = job(1, {"traceparent": PARENT})
    j.attempts = 2
    j.history = [
        float(JobState.RETRYING),
        1000.0,
        float(JobState.ENQUEUED),
        1010.0,
        float(JobState.RESERVED),
        1012.5,
    ]
    tracer.delivered("w3", [j], 1012.5)
    span = spans(tracer, exporter)["deliver emails"]
    assert span.start_time == 1010 * 10**9 and span.end_time == int(1012.5 * 10**9)
    assert span.attributes["messaging.spitfire.attempt"] == 2
    assert span.attributes["messaging.client.id"] == "w3"
    assert f"{span.parent.span_id:016x}" == "b7ad6b7169203331"


def test_remembered_commits_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_tracing, "QUEUES_KEPT", 4)
    tracer = make(InMemorySpanExporter())
    for i in range(10):
        for lsn in range(1, 200):
            tracer.durable(f"q{i}", lsn, 1)
    assert len(tracer._commits) == 4
    assert all(len(c) == server_tracing.COMMITS_KEPT for c in tracer._commits.values())


def test_the_service_name_from_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "queue-prod")
    tracer = make(InMemorySpanExporter())
    assert tracer.provider.resource.attributes["service.name"] == "queue-prod"


UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def test_an_unsampled_producer_gets_no_server_spans() -> None:
    exporter = InMemorySpanExporter()
    tracer = make(exporter)  # the default sampler follows the parent
    j = job(1, {"traceparent": UNSAMPLED})
    request = tracer.start_enqueue("emails", j.headers, None)
    request.appended()
    tracer.durable("emails", 1, 1)
    request.end([j], None)
    tracer.delivered("w1", [j], 1001.0)
    assert spans(tracer, exporter) == {}


def test_jobs_delivered_together_each_get_their_own_parent() -> None:
    exporter = InMemorySpanExporter()
    tracer = make(exporter)
    other = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
    shared = {"traceparent": PARENT}
    jobs = [job(1, shared), job(2, shared), job(3, {"traceparent": other}), job(4), job(5, dict(shared))]
    tracer.delivered("w1", jobs, 1001.0)
    tracer.provider.force_flush()
    got = {s.attributes["messaging.message.id"]: s for s in exporter.get_finished_spans()}
    trace_of = {i: f"{s.context.trace_id:032x}" for i, s in got.items()}
    assert trace_of["job-1"] == trace_of["job-2"] == trace_of["job-5"] == PARENT.split("-")[1]
    assert trace_of["job-3"] == other.split("-")[1]
    assert got["job-4"].parent is None and trace_of["job-4"] not in (
        PARENT.split("-")[1],
        other.split("-")[1],
    )
