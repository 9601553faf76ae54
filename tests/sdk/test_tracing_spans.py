"""spitfire.tracing in-process: the spans it makes and the context it injects and extracts, with a
TracerProvider of the test's own (the process-wide one stays unset, so other tests see no tracing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spitfire import tracing
from spitfire.protocol.messages import AckItem, Delivery, FailItem

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield memory
    provider.shutdown()


def delivery(headers: dict[str, str] | None = None, attempt: int = 1, max_attempts: int = 3) -> Delivery:
    return Delivery("job-1", "emails", "send_email", b"\x80", attempt, max_attempts, 60.0, headers)


def test_send_injects_its_own_context(exporter: InMemorySpanExporter) -> None:
    send = tracing.start_send("emails", {"tenant": "t1"}, "127.0.0.1", 7878)
    send.done("job-1")
    (span,) = exporter.get_finished_spans()
    assert span.name == "send emails" and span.kind is trace.SpanKind.PRODUCER
    ctx = span.context
    assert send.headers is not None and send.headers["tenant"] == "t1"
    version, trace_id, span_id, flags = send.headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert dict(span.attributes or {}) == {
        "messaging.system": "spitfire",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "emails",
        "server.address": "127.0.0.1",
        "server.port": 7878,
        "messaging.message.id": "job-1",
    }


def test_a_batch_is_one_span_and_a_failure_is_recorded(exporter: InMemorySpanExporter) -> None:
    send = tracing.start_send("emails", None, "h", 1, count=3)
    send.failed(ValueError("refused"))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in span.attributes
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"
    assert [e.name for e in span.events] == ["exception"]


def test_the_callers_creation_context_is_kept_and_linked(exporter: InMemorySpanExporter) -> None:
    send = tracing.start_send("emails", {"traceparent": PARENT}, "h", 1)
    send.done()
    assert send.headers == {"traceparent": PARENT}
    (span,) = exporter.get_finished_spans()
    assert [f"{link.context.span_id:016x}" for link in span.links] == ["b7ad6b7169203331"]


def test_process_continues_the_producers_trace_and_is_current(exporter: InMemorySpanExporter) -> None:
    before = trace.get_current_span()
    run = tracing.start_process(delivery({"traceparent": PARENT}), "host:1")
    assert trace.get_current_span() is run.span  # jobs enqueued now join the trace
    run.finish(AckItem("job-1", None), None)
    assert trace.get_current_span() is before
    (span,) = exporter.get_finished_spans()
    assert span.name == "process emails" and span.kind is trace.SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert [f"{link.context.span_id:016x}" for link in span.links] == ["b7ad6b7169203331"]
    assert span.attributes is not None
    assert span.attributes["messaging.spitfire.outcome"] == "succeeded"
    assert span.attributes["messaging.spitfire.attempt"] == 1
    assert span.status.status_code is trace.StatusCode.UNSET


@pytest.mark.parametrize(
    ("outcome", "exc", "flags", "label", "error"),
    [
        (FailItem("job-1", "ValueError: x", "tb"), ValueError("x"), {}, "retry", "ValueError"),
        (
            FailItem("job-1", "ValueError: x", "tb", retryable=False),
            ValueError("x"),
            {},
            "dead",
            "ValueError",
        ),
        (FailItem("job-1", "RetryAfter: 5s", None, True, 10.0), RuntimeError("later"), {}, "snoozed", None),
        (None, None, {"cancelled": True}, "cancelled", None),
        (AckItem("job-1", None), None, {"released": True}, "released", None),
        (
            FailItem("job-1", "JobArgumentError: bad payload", None, False),
            None,
            {},
            "dead",
            "JobArgumentError",
        ),
    ],
)
def test_each_outcome_is_labelled(
    exporter: InMemorySpanExporter,
    outcome: AckItem | FailItem | None,
    exc: BaseException | None,
    flags: dict[str, bool],
    label: str,
    error: str | None,
) -> None:
    tracing.start_process(delivery(attempt=1, max_attempts=3), "w").finish(outcome, exc, **flags)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["messaging.spitfire.outcome"] == label
    assert span.attributes.get("error.type") == error
    assert (span.status.status_code is trace.StatusCode.ERROR) == (error is not None)


def test_the_last_attempt_that_fails_is_dead(exporter: InMemorySpanExporter) -> None:
    d = delivery(attempt=3, max_attempts=3)
    tracing.start_process(d, "w").finish(FailItem("job-1", "E: x"), RuntimeError("x"))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["messaging.spitfire.outcome"] == "dead"


@pytest.mark.parametrize("headers", [None, {}, {"traceparent": "garbage"}, {"traceparent": "x" * 100_000}])
def test_a_job_without_valid_trace_context_gets_a_root_span(
    exporter: InMemorySpanExporter, headers: dict[str, str] | None
) -> None:
    tracing.start_process(delivery(headers), "w").finish(AckItem("job-1", None), None)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and list(span.links) == []


UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def test_an_unsampled_run_records_nothing_and_its_jobs_stay_unsampled(exporter: InMemorySpanExporter) -> None:
    before = trace.get_current_span()
    run = tracing.start_process(delivery({"traceparent": UNSAMPLED}), "w")
    assert not run.span.is_recording()
    child = tracing.start_send("emails", None, "h", 1)  # a job the handler enqueues
    child.done("job-2")
    run.finish(FailItem("job-1", "ValueError: x"), ValueError("x"))
    assert trace.get_current_span() is before
    assert exporter.get_finished_spans() == ()
    assert child.headers is not None
    _, trace_id, _, flags = child.headers["traceparent"].split("-")
    assert (trace_id, flags) == ("0af7651916cd43dd8448eb211c80319c", "00")  # same trace, not sampled


def test_the_shared_attributes_are_made_once_per_queue_and_bounded(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "BASES_KEPT", 4)
    monkeypatch.setattr(tracing, "_process_bases", {})
    for i in range(10):
        d = Delivery(f"job-{i}", f"q{i}", "send_email", b"\x80", 2, 3, 60.0, None)
        tracing.start_process(d, "w").finish(AckItem(d.job_id, None), None)
    assert len(tracing._process_bases) <= 4
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [f"process q{i}" for i in range(10)]
    last = spans[-1].attributes
    assert last is not None
    assert (last["messaging.destination.name"], last["messaging.message.id"]) == ("q9", "job-9")
    assert last["messaging.spitfire.attempt"] == 2
    # Each span has its own attributes: the shared ones are copied, never changed.
    assert all(s.attributes is not None and "messaging.spitfire.outcome" in s.attributes for s in spans)
    assert "messaging.spitfire.outcome" not in tracing._process_bases[("q9", "send_email", "w")][1]


def test_jobs_of_one_batch_share_one_extraction_and_others_get_theirs(exporter: InMemorySpanExporter) -> None:
    other = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
    shared = {"traceparent": PARENT, "tenant": "t1"}
    for headers in (shared, dict(shared), {"traceparent": other}, {"traceparent": PARENT}, None):
        run = tracing.start_process(delivery(headers), "w")
        if headers is not None:
            headers["traceparent"] = other  # the handler changes its job's headers: later jobs unaffected
        run.finish(AckItem("job-1", None), None)
    traces = [f"{s.context.trace_id:032x}" for s in exporter.get_finished_spans()]
    mine, theirs = PARENT.split("-")[1], other.split("-")[1]
    assert traces[:4] == [mine, mine, theirs, mine]
    assert traces[4] not in (mine, theirs)  # no headers: a root span


def test_a_new_propagator_is_used_at_once(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import propagate
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    tracing.start_process(delivery({"traceparent": PARENT}), "w").finish(AckItem("job-1", None), None)
    monkeypatch.setattr(propagate, "get_global_textmap", lambda: W3CBaggagePropagator())  # no traceparent
    tracing.start_process(delivery({"traceparent": PARENT}), "w").finish(AckItem("job-1", None), None)
    first, second = exporter.get_finished_spans()
    assert first.parent is not None and second.parent is None
