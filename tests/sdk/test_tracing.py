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
from sdk_helpers import WAIT, ServerProcess, WorkerProcess

import spitfire

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
import json, sys

from opentelemetry import trace

import jobs_module as m

with trace.get_tracer("shop").start_as_current_span("checkout"):
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
