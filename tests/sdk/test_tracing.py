"""OpenTelemetry end to end: a producer process and a worker process, each with the SDK's in-memory
span exporter, and a real server with --otel exporting over OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OtlpReceiver, ReceivedSpan
from sdk_helpers import WAIT, ServerProcess, WorkerProcess, free_port

import spitfire
import spitfire.tracing

pytest.importorskip("opentelemetry.sdk")

#: The jobs, and the OpenTelemetry set-up an application does, shared by producer and worker.
JOBS = """
import atexit, json, os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spitfire

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": os.environ["SERVICE"]}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


def _hex(n, width):
    return format(n, f"0{width}x")


@atexit.register
def dump():
    out = []
    for s in exporter.get_finished_spans():
        out.append({
            "name": s.name, "kind": s.kind.name, "status": s.status.status_code.name,
            "trace_id": _hex(s.context.trace_id, 32), "span_id": _hex(s.context.span_id, 16),
            "parent": _hex(s.parent.span_id, 16) if s.parent else "",
            "attributes": dict(s.attributes),
            "links": [_hex(link.context.span_id, 16) for link in s.links],
            "events": [{"name": e.name, "attributes": dict(e.attributes)} for e in s.events],
        })
    with open(os.environ["SPANS_OUT"], "w") as f:
        json.dump(out, f)


app = spitfire.App(os.environ["SPITFIRE_URL"], tracing=os.environ.get("TRACING", "1") == "1")
QUEUE = os.environ["QUEUE"]


@app.job(queue=QUEUE)
def parent(n: int) -> None:
    child.enqueue(n=n + 1)  # from a pool thread: stays in the trace


@app.job(queue=QUEUE)
async def child(n: int) -> None:
    await grandchild.enqueue_async(n=n + 1)  # from the loop: stays in the trace


@app.job(queue=QUEUE)
def grandchild(n: int) -> None:
    pass


@app.job(queue=QUEUE, max_attempts=1)
def fails() -> None:
    raise ValueError("boom")
"""

#: The producer: enqueues under a span of its own, prints the ids.
PRODUCER = """
import json, os

from opentelemetry import trace

import jobs_module as m

custom = os.environ.get("CUSTOM_TRACEPARENT")
with trace.get_tracer("shop").start_as_current_span("checkout"):
    if custom:  # a creation context of the caller's own
        ids = {"own": m.grandchild.options(headers={"traceparent": custom, "tenant": "t1"}).enqueue(n=1)}
    else:
        ids = {"parent": m.parent.enqueue(n=1), "fails": m.fails.enqueue()}
print(json.dumps(ids))
"""


def spans_of(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


class Scenario:
    """A directory with the jobs module, and the environment of its processes."""

    def __init__(self, root: Path, server: ServerProcess, queue: str) -> None:
        self.root = root
        (root / "jobs_module.py").write_text(textwrap.dedent(JOBS))
        (root / "producer.py").write_text(textwrap.dedent(PRODUCER))
        self.env = {**os.environ, "SPITFIRE_URL": server.url, "QUEUE": queue}

    def produce(self, **env: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        out = self.root / "producer-spans.json"
        done = subprocess.run(
            [sys.executable, "producer.py"], cwd=self.root, capture_output=True, text=True, timeout=WAIT,
            env={**self.env, "SERVICE": "producer", "SPANS_OUT": str(out), **env},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1]), spans_of(out)

    def work(self, **env: str) -> list[dict[str, Any]]:
        out = self.root / "worker-spans.json"
        env = {**self.env, "SERVICE": "worker", "SPANS_OUT": str(out), **env}
        worker = WorkerProcess(self.root / "worker", JOBS, "--burst", env=env)
        assert worker.wait() == 0, worker.output()
        return spans_of(out)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def otel_server(
    tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    """A server with --otel exporting to ``receiver`` (export every 100 ms)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    proc = ServerProcess(tmp_path / "data", None, "--otel").start()
    try:
        yield proc
    finally:
        proc.kill()


def by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def one(spans: list[dict[str, Any]], name: str, **attributes: Any) -> dict[str, Any]:
    found = [
        s for s in by_name(spans, name) if all(s["attributes"].get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{name} {attributes}: {found}"
    return found[0]


def server_span(spans: list[ReceivedSpan], name: str, job_id: str) -> ReceivedSpan:
    (span,) = [s for s in spans if s.name == name and s.attributes.get("messaging.message.id") == job_id]
    return span


def test_one_trace_from_producer_through_server_to_worker_and_child_jobs(
    tmp_path: Path, otel_server: ServerProcess, receiver: OtlpReceiver, queue: str
) -> None:
    scene = Scenario(tmp_path, otel_server, queue)
    ids, produced = scene.produce()
    worked = scene.work()

    checkout = one(produced, "checkout")
    trace_id = checkout["trace_id"]
    sends = by_name(produced, f"send {queue}")
    assert len(sends) == 2
    for send in sends:
        assert (send["kind"], send["parent"], send["trace_id"]) == ("PRODUCER", checkout["span_id"], trace_id)
        assert send["attributes"]["messaging.system"] == "spitfire"
        assert send["attributes"]["messaging.operation.type"] == "send"
        assert send["attributes"]["messaging.destination.name"] == queue
    send_parent = one(produced, f"send {queue}", **{"messaging.message.id": ids["parent"]})

    # The job carries the producer span's context; the worker's span continues it (parent and link).
    with spitfire.Client(otel_server.url, tracing=False) as client:
        headers = client.get(ids["parent"]).headers
    assert headers["traceparent"].split("-")[1:3] == [trace_id, send_parent["span_id"]]
    run = one(worked, f"process {queue}", **{"messaging.message.id": ids["parent"]})
    assert (run["kind"], run["trace_id"], run["parent"]) == ("CONSUMER", trace_id, send_parent["span_id"])
    assert run["links"] == [send_parent["span_id"]]
    assert run["attributes"]["messaging.operation.type"] == "process"
    assert run["attributes"]["messaging.spitfire.attempt"] == 1
    assert run["attributes"]["messaging.spitfire.outcome"] == "succeeded"
    assert run["status"] == "UNSET"

    # Jobs enqueued inside jobs (from a pool thread, then from the loop) stay in the trace.
    child_send = [s for s in by_name(worked, f"send {queue}") if s["parent"] == run["span_id"]]
    assert len(child_send) == 1 and child_send[0]["trace_id"] == trace_id
    child_id = child_send[0]["attributes"]["messaging.message.id"]
    child_run = one(worked, f"process {queue}", **{"messaging.message.id": child_id})
    assert (child_run["trace_id"], child_run["parent"]) == (trace_id, child_send[0]["span_id"])
    grand_send = [s for s in by_name(worked, f"send {queue}") if s["parent"] == child_run["span_id"]]
    assert len(grand_send) == 1
    grand_id = grand_send[0]["attributes"]["messaging.message.id"]
    grand_run = one(worked, f"process {queue}", **{"messaging.message.id": grand_id})
    assert grand_run["trace_id"] == trace_id

    # The failed job: its exception on the span, status ERROR.
    failed = one(worked, f"process {queue}", **{"messaging.message.id": ids["fails"]})
    assert failed["trace_id"] == trace_id
    assert failed["status"] == "ERROR"
    assert failed["attributes"]["messaging.spitfire.outcome"] == "dead"
    assert failed["attributes"]["error.type"] == "ValueError"
    (event,) = failed["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "boom"

    # The server's spans: enqueue, commit (with the fsync batch size) and deliver, in the same trace.
    jobs = {ids["parent"], ids["fails"], child_id, grand_id}

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = [(s.name, s.attributes.get("messaging.message.id")) for s in spans]
        return all((f"{op} {queue}", j) in names for op in ("enqueue", "deliver") for j in jobs)

    server = [
        s for s in receiver.wait_for(complete) if s.attributes.get("messaging.destination.name") == queue
    ]
    assert {s.service for s in server} == {"spitfire-server"}
    assert {s.trace_id for s in server} == {trace_id}
    enqueue = next(
        s
        for s in server
        if s.name == f"enqueue {queue}" and s.attributes["messaging.message.id"] == ids["parent"]
    )
    assert enqueue.parent_span_id == send_parent["span_id"]
    commits = [s for s in server if s.name == f"commit {queue}" and s.parent_span_id == enqueue.span_id]
    assert len(commits) == 1
    assert commits[0].attributes["messaging.spitfire.commit.batch_size"] >= 1
    assert enqueue.start_ns <= commits[0].start_ns <= commits[0].end_ns <= enqueue.end_ns
    deliver = next(
        s
        for s in server
        if s.name == f"deliver {queue}" and s.attributes["messaging.message.id"] == ids["parent"]
    )
    assert deliver.parent_span_id == send_parent["span_id"]
    assert deliver.attributes["messaging.spitfire.attempt"] == 1


def test_tracing_false_sends_no_trace_context(tmp_path: Path, server: ServerProcess, queue: str) -> None:
    scene = Scenario(tmp_path, server, queue)
    ids, produced = scene.produce(TRACING="0")
    assert [s["name"] for s in produced] == ["checkout"]  # no send span either
    with spitfire.Client(server.url, tracing=False) as client:
        for job_id in ids.values():
            assert "traceparent" not in (client.get(job_id).headers or {})


def test_without_the_api_the_sdk_imports_and_enqueues(server: ServerProcess, queue: str) -> None:
    code = textwrap.dedent(f"""
        import sys
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
        import spitfire, spitfire.tracing
        assert not spitfire.tracing.AVAILABLE
        with spitfire.Client({server.url!r}) as c:
            job_id = c.enqueue({queue!r}, "noop", {{"a": 1}}, headers={{"tenant": "t"}})
            assert c.get(job_id).headers == {{"tenant": "t"}}
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


CUSTOM_TRACE = "0af7651916cd43dd8448eb211c80319c"
CUSTOM = f"00-{CUSTOM_TRACE}-b7ad6b7169203331-01"


def test_a_creation_context_the_producer_gives_is_kept_and_linked(
    tmp_path: Path, otel_server: ServerProcess, receiver: OtlpReceiver, queue: str
) -> None:
    scene = Scenario(tmp_path, otel_server, queue)
    ids, produced = scene.produce(CUSTOM_TRACEPARENT=CUSTOM)
    with spitfire.Client(otel_server.url, tracing=False) as client:
        assert client.get(ids["own"]).headers == {"traceparent": CUSTOM, "tenant": "t1"}
    send = one(produced, f"send {queue}")
    assert send["links"] == ["b7ad6b7169203331"]  # the send span links to it, changes nothing
    worked = scene.work()
    run = one(worked, f"process {queue}")
    assert (run["trace_id"], run["parent"], run["links"]) == (
        CUSTOM_TRACE,
        "b7ad6b7169203331",
        ["b7ad6b7169203331"],
    )
    spans = receiver.wait_for(lambda got: any(s.name == f"deliver {queue}" for s in got))
    assert {s.trace_id for s in spans if s.attributes.get("messaging.destination.name") == queue} == {
        CUSTOM_TRACE
    }


def test_hostile_trace_headers_change_nothing_but_the_trace(
    tmp_path: Path, otel_server: ServerProcess, receiver: OtlpReceiver, queue: str
) -> None:
    """Malformed, huge and nonsense trace headers: the server and the worker ignore them (each
    such job gets a trace of its own) and run the jobs; nothing crashes."""
    hostile = [
        {"traceparent": "garbage"},
        {"traceparent": f"00-{'z' * 32}-b7ad6b7169203331-01"},
        {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"},
        {"traceparent": "x" * 200_000, "tracestate": ",".join(["k=v"] * 20_000)},
        {"traceparent": CUSTOM, "tracestate": "=" * 100_000, "baggage": "%%%" * 10_000},
        {"traceparent": f"ff-{CUSTOM_TRACE}-b7ad6b7169203331-01"},
    ]
    with spitfire.Client(otel_server.url, tracing=False) as client:
        ids = [client.enqueue(queue, "grandchild", {"n": i}, headers=h) for i, h in enumerate(hostile)]
    worked = Scenario(tmp_path, otel_server, queue).work()
    runs = by_name(worked, f"process {queue}")
    assert sorted(r["attributes"]["messaging.message.id"] for r in runs) == sorted(ids)
    assert all(r["attributes"]["messaging.spitfire.outcome"] == "succeeded" for r in runs)
    by_id = {r["attributes"]["messaging.message.id"]: r for r in runs}
    for job_id, headers in zip(ids, hostile, strict=True):
        if headers["traceparent"] == CUSTOM:  # valid: continued, whatever its tracestate
            assert by_id[job_id]["trace_id"] == CUSTOM_TRACE
        else:
            assert by_id[job_id]["parent"] == "" and by_id[job_id]["trace_id"] != CUSTOM_TRACE
    receiver.wait_for(lambda got: sum(s.name == f"deliver {queue}" for s in got) == len(ids))
    with spitfire.Client(otel_server.url, tracing=False) as client:
        assert client.ping() > 0


def test_an_unreachable_collector_slows_nothing_and_the_server_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queue: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{free_port()}/v1/traces")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    server = ServerProcess(tmp_path / "data", None, "--otel").start()
    try:
        with spitfire.Client(server.url, tracing=False) as client:
            ids = client.enqueue_many(
                queue, "grandchild", [{"n": i} for i in range(50)], headers={"traceparent": CUSTOM}
            )
        Scenario(tmp_path, server, queue).work()
        with spitfire.Client(server.url, tracing=False) as client:
            assert {client.get(i).state for i in ids} == {"succeeded"}
        assert server.terminate() == 0  # within the export grace, though nothing takes the spans
    finally:
        server.kill()


def test_a_job_keeps_its_trace_across_a_server_crash(
    tmp_path: Path, otel_server: ServerProcess, receiver: OtlpReceiver, queue: str
) -> None:
    with spitfire.Client(otel_server.url, tracing=False) as client:
        job_id = client.enqueue(queue, "grandchild", {"n": 1}, headers={"traceparent": CUSTOM})
    otel_server.kill()  # SIGKILL: the job's headers are in the log
    otel_server.start()
    Scenario(tmp_path, otel_server, queue).work()
    spans = receiver.wait_for(lambda got: any(s.name == f"deliver {queue}" for s in got))
    (deliver,) = [s for s in spans if s.name == f"deliver {queue}"]
    assert (deliver.trace_id, deliver.parent_span_id) == (CUSTOM_TRACE, "b7ad6b7169203331")
    assert deliver.attributes["messaging.message.id"] == job_id


def test_no_tracer_provider_means_no_trace_headers(server: ServerProcess, queue: str) -> None:
    """The API is installed here, but nothing set a TracerProvider: the API's no-op spans."""
    assert spitfire.tracing.AVAILABLE
    with spitfire.Client(server.url) as client:
        job_id = client.enqueue(queue, "noop", {}, headers={"tenant": "t"})
        ids = client.enqueue_many(queue, "noop", [{}, {}])
        assert client.get(job_id).headers == {"tenant": "t"}
        assert all(client.get(i).headers == {} for i in ids)


def test_the_dashboard_learns_the_trace_url_template(tmp_path: Path) -> None:
    import httpx

    template = "https://tempo.example/trace/{trace_id}"
    with_template = ServerProcess(tmp_path / "a", None, "--trace-url-template", template).start()
    without = ServerProcess(tmp_path / "b").start()
    try:
        for proc, expected in ((with_template, template), (without, None)):
            stats = httpx.get(f"http://127.0.0.1:{proc.http_port}/api/stats", timeout=WAIT).json()
            assert stats["server"]["trace_url_template"] == expected
    finally:
        with_template.kill()
        without.kill()
