"""OpenTelemetry spans of the server, on with ``spitfire-server --otel`` (docs/tracing.md).

Imported only then: the engine, the dispatcher and the protocol service know nothing of
OpenTelemetry; they call the hooks of `spitfire.server.tracehooks` when a tracer is set (one
``is not None`` check on each hot path when it is not). Three spans per job, each in the trace of
the producer's span, whose context the job's ``traceparent`` header carries (a job without one
gets spans of its own trace):

- ``enqueue <queue>`` (SERVER): one enqueue request, from its frame's arrival to its answer;
- ``commit <queue>`` (INTERNAL, child of it): from the record's append (the queue's first job:
  the creation of its files) to the end of the fdatasync that made it durable, with
  ``messaging.spitfire.commit.batch_size``, the records that fdatasync covered in the queue's log;
- ``deliver <queue>`` (INTERNAL): from the moment the job was ready (enqueued, or due) to its push
  to a worker, with the attempt and the worker.

Spans go to a BatchSpanProcessor and the OTLP/HTTP exporter, both configured by the standard
``OTEL_*`` environment variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``, ``OTEL_SERVICE_NAME``...). The processor's queue is bounded: spans an unreachable
collector cannot take are dropped, never buffered without limit, and never slow the loop.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from spitfire.index.job import Job, JobState

__all__ = ["DEFAULT_SERVICE_NAME", "ServerTracer"]

#: ``service.name`` unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name another.
DEFAULT_SERVICE_NAME = "spitfire-server"
#: The OpenTelemetry semantic conventions (messaging) the spans follow (as the SDK's do).
SEMCONV = "1.44.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV}"
#: Recent commits remembered per queue, to give each traced enqueue its fsync batch size. The
#: service answers an enqueue right after its commit, so the one it needs is among the last few.
COMMITS_KEPT = 64
#: Queues whose recent commits are remembered at most (the oldest is forgotten first).
QUEUES_KEPT = 1024

_SERVER = trace.SpanKind.SERVER
_INTERNAL = trace.SpanKind.INTERNAL
_ENQUEUED = float(JobState.ENQUEUED)
_EMPTY = Context()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spitfire")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _resource() -> Resource:
    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME and the SDK's own
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _parent(headers: Mapping[str, str] | None) -> Context:
    """The producer's context from a job's headers (empty without one, or when it is malformed)."""
    return propagate.extract(headers) if headers else _EMPTY


def _ready_at(job: Job) -> float:
    """When a job just reserved became ready: it entered ENQUEUED then (its creation otherwise)."""
    h = job.history
    if h is not None and len(h) >= 4 and h[-4] == _ENQUEUED:
        return h[-3]
    return job.created_at


class _Enqueue:
    """One enqueue request being traced (`ServerTracer.start_enqueue`)."""

    __slots__ = ("appended_ns", "count", "headers", "owner", "queue", "started_ns")

    def __init__(
        self, owner: ServerTracer, queue: str, headers: Mapping[str, str] | None, count: int | None
    ) -> None:
        self.owner = owner
        self.queue = queue
        self.headers = headers
        self.count = count
        self.started_ns = time.time_ns()
        self.appended_ns = 0

    def appended(self) -> None:
        if not self.appended_ns:
            self.appended_ns = time.time_ns()

    def end(self, jobs: Sequence[Job], exc: BaseException | None) -> None:
        self.owner.enqueued(self, jobs, exc)


class ServerTracer:
    """Makes the server's spans (see the module docstring) with its own TracerProvider."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("spitfire.server", _version(), SCHEMA_URL)
        #: Queue name -> its recent commits: (last LSN made durable, records, when, ns), oldest first.
        self._commits: dict[str, collections.deque[tuple[int, int, int]]] = {}
        #: (operation, queue) -> the span name and the attributes all its spans share, made once.
        self._bases: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    @classmethod
    def from_env(cls, exporter: SpanExporter | None = None) -> ServerTracer:
        """A tracer exporting with a BatchSpanProcessor to ``exporter`` (default: the OTLP/HTTP
        exporter), both configured by the ``OTEL_*`` environment variables."""
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider = TracerProvider(resource=_resource())
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def shutdown(self) -> None:
        """Export what is buffered and stop (blocking: at most the exporter's timeout)."""
        self.provider.shutdown()

    # -- hooks ------------------------------------------------------------------------------------

    def start_enqueue(self, queue: str, headers: Mapping[str, str] | None, count: int | None) -> _Enqueue:
        """An enqueue request arrived (``count``: the jobs of a batch; None: one job)."""
        return _Enqueue(self, queue, headers, count)

    def durable(self, queue: str, upto: int, records: int) -> None:
        """`Commits.on_durable`: an fdatasync made ``records`` records of ``queue`` durable, up to
        LSN ``upto``."""
        commits = self._commits.get(queue)
        if commits is None:
            if len(self._commits) >= QUEUES_KEPT:
                del self._commits[next(iter(self._commits))]
            commits = self._commits[queue] = collections.deque(maxlen=COMMITS_KEPT)
        commits.append((upto, records, time.time_ns()))

    def _commit_of(self, queue: str, lsn: int) -> tuple[int, int] | None:
        """(records, when it was durable in ns) of the recent commit of ``queue`` that covered
        ``lsn``; None when it is not among them (async durability answers before the fsync)."""
        for upto, records, at in reversed(self._commits.get(queue, ())):
            if upto - records < lsn <= upto:
                return records, at
            if upto < lsn:
                break
        return None

    def _base(self, operation: str, queue: str) -> tuple[str, dict[str, Any]]:
        """The name and the shared attributes of ``operation``'s spans on ``queue``."""
        key = (operation, queue)
        base = self._bases.get(key)
        if base is None:
            if len(self._bases) >= 3 * QUEUES_KEPT:
                self._bases.clear()  # many queues: start again rather than grow
            attributes = {
                "messaging.system": "spitfire",
                "messaging.operation.name": operation,
                "messaging.destination.name": queue,
            }
            base = self._bases[key] = (f"{operation} {queue}", attributes)
        return base

    def enqueued(self, request: _Enqueue, jobs: Sequence[Job], exc: BaseException | None) -> None:
        """The enqueue request ended: its span and its commit's, in the producer's trace."""
        ended = time.time_ns()
        name, attributes = self._base("enqueue", request.queue)
        if request.count is not None:
            attributes = {**attributes, "messaging.batch.message_count": request.count}
        elif jobs:
            attributes = {**attributes, "messaging.message.id": jobs[0].id}
        span = self.tracer.start_span(
            name, _parent(request.headers), _SERVER, attributes, start_time=request.started_ns
        )
        if not span.is_recording():
            return  # not sampled (nor, then, its commit): nothing to end or to look up
        if exc is not None:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.set_attribute("error.type", type(exc).__name__)
        elif jobs:
            self._commit_span(span, request, max(job.lsn for job in jobs), ended)
        span.end(ended)

    def _commit_span(self, parent: trace.Span, request: _Enqueue, lsn: int, ended: int) -> None:
        commit = self._commit_of(request.queue, lsn)
        name, attributes = self._base("commit", request.queue)
        if commit is not None:
            attributes = {**attributes, "messaging.spitfire.commit.batch_size": commit[0]}
        start = request.appended_ns or request.started_ns
        end = ended if commit is None else max(start, commit[1])
        span = self.tracer.start_span(
            name,
            trace.set_span_in_context(parent),
            _INTERNAL,
            attributes,
            start_time=start,
        )
        span.end(end)

    def delivered(self, worker_id: str, jobs: Sequence[Job], now: float) -> None:
        """The dispatcher pushed ``jobs`` to ``worker_id``: one span per job, from ready to pushed."""
        ended = int(now * 1e9)
        tracer = self.tracer
        headers: Mapping[str, str] | None = None
        parent = _EMPTY
        for job in jobs:
            name, base = self._base("deliver", job.queue)
            attributes = {
                **base,
                "messaging.message.id": job.id,
                "messaging.client.id": worker_id,
                "messaging.spitfire.job.name": job.name,
                "messaging.spitfire.attempt": job.attempts,
            }
            if job.headers != headers:  # the jobs of one batch share theirs: extracted once
                headers = job.headers
                parent = _parent(headers)
            start = min(ended, int(_ready_at(job) * 1e9))
            tracer.start_span(name, parent, _INTERNAL, attributes, start_time=start).end(ended)
