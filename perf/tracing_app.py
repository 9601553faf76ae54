"""The tracing benchmark's jobs and producer (`python -m perf tracing`).

Imported by ``spitfire worker perf.tracing_app:app``: the drain benchmark's jobs (perf.noop_app), and
``work`` / ``work_sync``, which wait ``ms`` (an ``asyncio.sleep``; a ``time.sleep`` in the worker's
thread pool). Run as ``python -m perf.tracing_app URL QUEUE NAME JOBS [MS]``: the producer, which
enqueues ``JOBS`` jobs one request each (64 in flight, as a busy service does) and prints its rate
as JSON.

Traced when SPITFIRE_PERF_OTEL=1: a TracerProvider with a BatchSpanProcessor and the OTLP/HTTP
exporter, on their defaults and the OTEL_* environment variables (the sampler too), as an
application sets them up; SPITFIRE_PERF_OTEL=null: the same with an exporter that sends nothing;
0: no TracerProvider. SPITFIRE_PERF_SWITCH_INTERVAL: `sys.setswitchinterval` (seconds). This file
runs under other checkouts too (``--ab``): it uses only the public API of ``spitfire``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

MODE = os.environ.get("SPITFIRE_PERF_OTEL", "0")
if os.environ.get("SPITFIRE_PERF_SWITCH_INTERVAL"):
    # How long a thread holding the GIL (the exporter's, encoding) keeps a waiting one (the loop) off.
    sys.setswitchinterval(float(os.environ["SPITFIRE_PERF_SWITCH_INTERVAL"]))
if MODE in ("1", "null"):
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NullExporter(SpanExporter):
        """Takes every span and sends nothing: the cost of making spans, without exporting them."""

        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    if MODE == "1":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter()
    else:
        exporter = NullExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "perf-worker"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

# After the provider is set, as an application does it (it works the other way round too).
import spitfire  # noqa: E402
from perf.noop_app import app  # noqa: E402

__all__ = ["app"]

#: Enqueue requests the producer keeps in flight.
INFLIGHT = 64


@app.job(queue="bench-work")
async def work(ms: float = 0.0, n: int = 0, to: str = "", subject: str = "", body: str = "") -> None:
    """Waits ``ms`` milliseconds: a job that does something (I/O), for the overhead beside work."""
    await asyncio.sleep(ms / 1000)


@app.job(queue="bench-work")
def work_sync(ms: float = 0.0, n: int = 0, to: str = "", subject: str = "", body: str = "") -> None:
    """The same in the worker's thread pool (``time.sleep``: it holds a thread, not the GIL)."""
    time.sleep(ms / 1000)


async def produce(url: str, queue: str, name: str, jobs: int, ms: float) -> dict[str, float]:
    """Enqueue ``jobs`` jobs, one request each, ``INFLIGHT`` at a time; their rate."""
    extra = {"ms": ms} if ms else {}
    async with spitfire.AsyncClient(url) as client:
        await client.enqueue(queue, name, {"n": -1, **extra})  # connect (and create the queue)
        counter = iter(range(jobs - 1))

        async def one_producer() -> None:
            for i in counter:
                body = {"n": i, "to": f"user-{i:08d}@example.com", "subject": "Welcome", "body": "x" * 24}
                await client.enqueue(queue, name, {**body, **extra})

        start = time.perf_counter()
        await asyncio.gather(*(one_producer() for _ in range(INFLIGHT)))
        elapsed = time.perf_counter() - start
    return {"jobs": jobs, "seconds": elapsed, "jobs_per_s": (jobs - 1) / elapsed}


if __name__ == "__main__":
    url, queue, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    result = asyncio.run(produce(url, queue, name, count, float(sys.argv[5]) if len(sys.argv) > 5 else 0.0))
    if MODE in ("1", "null"):
        provider.shutdown()  # the last spans exported (what an application does at exit)
    print(json.dumps(result))
