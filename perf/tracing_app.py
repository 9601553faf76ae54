"""The drain benchmark's jobs (perf.noop_app, and ``work``, which waits), traced when
SPITFIRE_PERF_OTEL=1: a TracerProvider with a BatchSpanProcessor and the OTLP/HTTP exporter, both on
their defaults and the OTEL_* environment variables, as an application sets them up (`python -m perf
tracing`); SPITFIRE_PERF_OTEL=null: the same with an exporter that sends nothing."""

from __future__ import annotations

import asyncio
import os

MODE = os.environ.get("SPITFIRE_PERF_OTEL", "0")
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
from perf.noop_app import app  # noqa: E402

__all__ = ["app"]


@app.job(queue="bench-work")
async def work(ms: float = 0.0, n: int = 0, to: str = "", subject: str = "", body: str = "") -> None:
    """Waits ``ms`` milliseconds: a job that does something (I/O), for the overhead beside work."""
    await asyncio.sleep(ms / 1000)
