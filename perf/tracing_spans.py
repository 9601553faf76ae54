"""python -m perf tracing --micro: what one span costs, in-process (docs/tracing.md, "Cost").

Each case is timed over ``OPS`` operations, every case once per round in a rotated order, ``repeat``
rounds; the figures are the fastest round (the cost on a quiet core) and the median, in
microseconds per operation. The spans go to a
BatchSpanProcessor whose exporter sends nothing (its queue large enough to drop none), so the cases
measure making spans; ``OTLP encode`` is what the OTLP/HTTP exporter does with each one later, in
its thread. ``[base]`` cases run the same calls on another revision's spitfire/tracing.py and
server/tracing.py (``--baseline REV``, default ``integ``; read with ``git show``), to measure a change.

- ``extract``: `opentelemetry.propagate.extract` of a job's ``traceparent`` (the default propagators);
- ``SDK span, bare``: ``tracer.start_span(name, parent).end()``, the SDK's floor;
- ``SDK span, process attributes``: the same with the eight attributes and the link of a process
  span, and its outcome set at the end: what any instrumentation of these conventions pays;
- ``process span``: `spitfire.tracing.start_process` and `Process.finish`, everything the worker does
  per job (extract, attributes, link, the span current while the handler runs), for jobs of one
  batch (one ``traceparent``) and for jobs of their own (``own context``); ``unsampled``: the
  job's ``traceparent`` says not sampled (its flags ``00``), so the parent-based sampler drops it;
- ``send span``: `spitfire.tracing.start_send` and `Send.done`, with the context injected;
- ``server spans``: what ``spitfire-server --otel`` does per job enqueued alone and delivered (the
  enqueue, commit and deliver spans of one job).
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from perf.report import Figure, print_table, write_json
from spitfire import tracing
from spitfire.index.job import Job, JobState
from spitfire.protocol.messages import AckItem, Delivery
from spitfire.server import tracing as server_tracing

ROOT = Path(__file__).resolve().parent.parent
#: Operations per case and round.
OPS = 10_000
SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
ACK = AckItem("job-1", None)


class NullExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def load(rev: str, path: str, name: str, into: Path) -> ModuleType:
    """The module at ``path`` as of ``rev``, imported as ``name``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    file = into / f"{name}.py"
    file.write_bytes(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def delivery(headers: dict[str, str] | None) -> Delivery:
    return Delivery("job-1", "emails", "send_email", b"\x80", 1, 3, 60.0, headers)


def job(lsn: int) -> Job:
    j = Job(
        f"job-{lsn}",
        "emails",
        "send_email",
        b"\x80",
        JobState.RESERVED,
        1000.0,
        headers={"traceparent": SAMPLED},
    )
    j.lsn = lsn
    return j


def cases(sdk: Any, server: Any, tracer: Any, tag: str) -> dict[str, Callable[[], None]]:
    """The timed operations of one revision's modules (``sdk``: spitfire.tracing, ``server``:
    spitfire.server.tracing), labelled with ``tag``."""
    sampled, unsampled = delivery({"traceparent": SAMPLED}), delivery({"traceparent": UNSAMPLED})
    server_tracer = server.ServerTracer(trace.get_tracer_provider())
    lsn = iter(range(1, 10**9))

    def process() -> None:
        sdk.start_process(sampled, "host:1").finish(ACK, None)

    others = [delivery({"traceparent": SAMPLED[:-4] + f"{i:x}-01"}) for i in range(1, 3)]
    turn = iter(range(10**9))

    def process_own() -> None:  # each job its own trace context (nothing to reuse)
        sdk.start_process(others[next(turn) & 1], "host:1").finish(ACK, None)

    def process_unsampled() -> None:
        sdk.start_process(unsampled, "host:1").finish(ACK, None)

    def send() -> None:
        sdk.start_send("emails", None, "127.0.0.1", 7878).done("job-1")

    def server_spans() -> None:
        j = job(next(lsn))
        request = server_tracer.start_enqueue("emails", j.headers, None)
        request.appended()
        server_tracer.durable("emails", j.lsn, 1)
        request.end([j], None)
        server_tracer.delivered("host:1", [j], 1001.0)

    sdk._tracer = tracer
    return {
        f"process span [{tag}]": process,
        f"process span, own context [{tag}]": process_own,
        f"process span, unsampled [{tag}]": process_unsampled,
        f"send span [{tag}]": send,
        f"server spans [{tag}]": server_spans,
    }


def floor_cases(tracer: Any) -> dict[str, Callable[[], None]]:
    """The SDK's and the API's own costs, whatever the instrumentation."""
    headers = {"traceparent": SAMPLED}
    parent = propagate.extract(headers)
    creation = trace.get_current_span(parent).get_span_context()

    def extract() -> None:
        propagate.extract(headers)

    def bare() -> None:
        tracer.start_span("process emails", parent).end()

    def attributed() -> None:
        span = tracer.start_span(
            "process emails",
            parent,
            trace.SpanKind.CONSUMER,
            {
                "messaging.system": "spitfire",
                "messaging.operation.name": "process",
                "messaging.operation.type": "process",
                "messaging.destination.name": "emails",
                "messaging.message.id": "job-1",
                "messaging.client.id": "host:1",
                "messaging.spitfire.job.name": "send_email",
                "messaging.spitfire.attempt": 1,
            },
            [trace.Link(creation)],
        )
        span.set_attribute("messaging.spitfire.outcome", "succeeded")
        span.end()

    return {"extract": extract, "SDK span, bare": bare, "SDK span, process attributes": attributed}


def encode_cost(repeat: int) -> list[float]:
    """Microseconds per span to encode 512 process spans for OTLP (as the exporter does per batch)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    saved, tracing._tracer = tracing._tracer, provider.get_tracer("spitfire")
    try:
        for _ in range(512):
            tracing.start_process(delivery({"traceparent": SAMPLED}), "host:1").finish(ACK, None)
    finally:
        tracing._tracer = saved
    spans: list[ReadableSpan] = list(memory.get_finished_spans())
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(10):
            encode_spans(spans).SerializePartialToString()
        runs.append(1e6 * (time.perf_counter() - t0) / (10 * len(spans)))
    return runs


def run(baseline: str, repeat: int) -> int:
    provider = TracerProvider()  # the default sampler: parent-based, always on for roots
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=2**17))
    trace.set_tracer_provider(provider)
    tracer = provider.get_tracer("spitfire")
    with tempfile.TemporaryDirectory() as tmp:
        base_sdk = load(baseline, "sdks/python/tracing.py", "perf_base_sdk_tracing", Path(tmp))
        base_server = load(baseline, "server/tracing.py", "perf_base_server_tracing", Path(tmp))
    timed = {**floor_cases(tracer), **cases(tracing, server_tracing, tracer, "this")}
    timed.update(cases(base_sdk, base_server, tracer, f"base {baseline}"))
    names = list(timed)
    runs: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            op = timed[name]
            t0 = time.perf_counter()
            for _ in range(OPS):
                op()
            runs[name].append(1e6 * (time.perf_counter() - t0) / OPS)
    runs["OTLP encode (exporter thread)"] = encode_cost(repeat)
    provider.shutdown()
    # The fastest round is the cost on a quiet core; the median says how much load moved it.
    figures = [Figure(f"{n} (best)", min(v), "us/op", "", None, v) for n, v in runs.items()]
    figures += [Figure(f"{n} (median)", statistics.median(v), "us/op") for n, v in runs.items()]
    print_table(figures)
    path = write_json("tracing-spans", {"ops": OPS, "repeat": repeat, "baseline": baseline}, figures)
    print(f"\nwrote {path}")
    return 0
