"""OpenTelemetry tracing of enqueues and job runs (docs/tracing.md).

With `opentelemetry-api` importable and a TracerProvider configured by the application, each enqueue
request runs in a PRODUCER span ``send <queue>`` whose context is injected into the jobs' headers as
W3C trace context (``traceparent``, ``tracestate``, through `opentelemetry.propagate` and so the
application's propagators), and the worker runs each job in a CONSUMER span ``process <queue>``
whose parent is that context and which links to it. The process span is the current span while the
handler runs, so a job enqueued inside a job stays in the trace. Names and attributes follow the
OpenTelemetry messaging semantic conventions, version `SEMCONV`.

Without the API `AVAILABLE` is false, and the clients and the worker never call into this module
(their cost is one flag check per enqueue or job). With the API but no TracerProvider set by the
application, `configured` is false and no span is made at all (the API's no-op spans would record
nothing and still cost the producer about a tenth of its enqueue throughput).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as _context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # the API is optional: tracing is off without it
    AVAILABLE = False
else:
    AVAILABLE = True

from spitfire.protocol.messages import FailItem as FailItemType

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from spitfire.protocol.messages import AckItem, Delivery, FailItem

__all__ = [
    "AVAILABLE",
    "SCHEMA_URL",
    "SEMCONV",
    "Process",
    "Send",
    "configured",
    "outcome_of",
    "start_process",
    "start_send",
]

#: The version of the OpenTelemetry semantic conventions (messaging) the spans follow.
SEMCONV = "1.44.0"
#: Its schema, given to the tracer.
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV}"
#: ``messaging.system`` of every span.
SYSTEM = "spitfire"
#: The W3C header of the creation context. A producer that sets it itself keeps it unchanged (the
#: conventions: a custom creation context is not modified); the send span then links to it.
TRACEPARENT = "traceparent"

#: What a finished job's process span says in ``messaging.spitfire.outcome``.
SUCCEEDED, RETRY, DEAD, SNOOZED, CANCELLED, RELEASED = (
    "succeeded", "retry", "dead", "snoozed", "cancelled", "released",
)  # fmt: skip

#: Attribute sets kept (per queue and job name); more start the cache again.
BASES_KEPT = 1024

_tracer: Any = None
_send_bases: dict[tuple[str, str, int], tuple[str, dict[str, Any]]] = {}
_process_bases: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
if AVAILABLE:
    _PRODUCER = _trace.SpanKind.PRODUCER
    _CONSUMER = _trace.SpanKind.CONSUMER
    _EMPTY = _context.Context()
    #: The last creation context extracted: (the propagator, the headers, the context).
    _last_parent: tuple[object, Mapping[str, str], Context] = (None, {}, _EMPTY)


#: Whether the environment names a TracerProvider for the API to make on first use.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def configured() -> bool:
    """The application has set a TracerProvider (the API's default proxy and its no-op provider make
    spans that record nothing: callers skip tracing then). Call only when `AVAILABLE`."""
    # While none is set, the API's getter looks the environment up on every call (~1 us, 2-4% of a
    # no-op job's or an enqueue's cost, py-spy): answer from its global instead when it has one.
    if getattr(_trace, "_TRACER_PROVIDER", _trace) is None and not _PROVIDER_FROM_ENV:
        return False
    return not isinstance(
        _trace.get_tracer_provider(), (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)
    )


def _get_tracer() -> Any:
    """The SDK's tracer: the API's proxy, which follows the TracerProvider the application sets,
    even one set after the first enqueue."""
    global _tracer
    if _tracer is None:
        from . import __version__

        _tracer = _trace.get_tracer("spitfire", __version__, schema_url=SCHEMA_URL)
    return _tracer


def _error_type(exc: BaseException) -> str:
    """``error.type``: the exception's class, qualified by its module unless it is a builtin."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _record(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute("error.type", _error_type(exc))


def _creation_link(parent: Context) -> list[Any] | None:
    """A link to the span context ``parent`` carries, if it carries a valid one."""
    creation = _trace.get_current_span(parent).get_span_context()
    return [_trace.Link(creation)] if creation.is_valid else None


class Send:
    """One enqueue request's PRODUCER span. ``headers`` are the jobs' headers with its context
    injected (None when there were none and nothing was injected: no provider, or not recording)."""

    __slots__ = ("headers", "span")

    def __init__(self, span: Span, headers: dict[str, str] | None) -> None:
        self.span = span
        self.headers = headers

    def done(self, job_id: str | None = None) -> None:
        """The server made the job(s) durable; ``job_id`` names the one job of a single enqueue."""
        if job_id is not None and self.span.is_recording():
            self.span.set_attribute("messaging.message.id", job_id)
        self.span.end()

    def failed(self, exc: BaseException) -> None:
        """The request raised ``exc``: recorded on the span, whose status becomes ERROR."""
        _record(self.span, exc)
        self.span.end()


def _send_base(queue: str, host: str, port: int) -> tuple[str, dict[str, Any]]:
    """The name and the attributes every send span to ``queue`` at ``host:port`` has, made once."""
    key = (queue, host, port)
    base = _send_bases.get(key)
    if base is None:
        if len(_send_bases) >= BASES_KEPT:
            _send_bases.clear()  # many queues: start again rather than grow
        base = _send_bases[key] = (
            f"send {queue}",
            {
                "messaging.system": SYSTEM,
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": queue,
                "server.address": host,
                "server.port": port,
            },
        )
    return base


def start_send(
    queue: str, headers: Mapping[str, str] | None, host: str, port: int, count: int | None = None
) -> Send:
    """Start the span of one enqueue request to ``queue`` at ``host:port`` (``count``: the jobs of
    a batch, None for a single enqueue), in the current context (so inside a job, a child of its
    process span), and inject its context into a copy of ``headers``."""
    name, attributes = _send_base(queue, host, port)
    if count is not None:
        attributes = {**attributes, "messaging.batch.message_count": count}
    carrier = dict(headers) if headers else {}
    given = TRACEPARENT in carrier
    links = _creation_link(_propagate.extract(carrier)) if given else None
    span = _get_tracer().start_span(name, kind=_PRODUCER, attributes=attributes, links=links)
    if not given:
        # Unsampled spans too: their context (flags 00) tells the worker not to sample the run.
        _propagate.inject(carrier, context=_trace.set_span_in_context(span))
    return Send(span, carrier if carrier or headers is not None else None)


class Process:
    """One job run's CONSUMER span, current in this thread or task until `finish`."""

    __slots__ = ("d", "span", "token")

    def __init__(self, span: Span, token: object, d: Delivery) -> None:
        self.span = span
        self.token = token
        self.d = d

    def finish(
        self,
        outcome: AckItem | FailItem | None,
        exc: BaseException | None,
        *,
        cancelled: bool = False,
        released: bool = False,
    ) -> None:
        """The run ended with ``outcome`` (what the worker reports; None: nothing, it was cancelled),
        after the handler raised ``exc`` (None: it returned, or never ran). ``cancelled`` and
        ``released``: the server cancelled the job, or the worker handed it back at shutdown."""
        span = self.span
        if not span.is_recording():  # not sampled: nothing is kept, so nothing to work out
            _context.detach(self.token)  # type: ignore[arg-type]
            return
        label = RELEASED if released else CANCELLED if cancelled else outcome_of(outcome, self.d)
        span.set_attribute("messaging.spitfire.outcome", label)
        if label in (SNOOZED, CANCELLED, RELEASED):
            pass  # what was asked for (RetryAfter, a cancel, a shutdown), not an error
        elif exc is not None:
            _record(span, exc)
        elif isinstance(outcome, FailItemType):  # no exception: a payload that does not fit...
            span.set_status(_trace.Status(_trace.StatusCode.ERROR, outcome.error))
            span.set_attribute("error.type", outcome.error.partition(":")[0])
        span.end()
        _context.detach(self.token)  # type: ignore[arg-type]


def _parent_of(headers: Mapping[str, str] | None) -> Context:
    """The creation context in a job's ``headers`` (the empty context without one). The jobs of one
    batch arrive one after the other with equal headers: the last extraction is reused for them."""
    global _last_parent
    if not headers:
        return _EMPTY  # nothing to extract: the propagators would find the empty context
    textmap = _propagate.get_global_textmap()
    last = _last_parent  # one read: other threads (sync handlers) may replace it meanwhile
    if last[0] is textmap and last[1] == headers:
        return last[2]
    # From the empty context, not the current one: the result depends on the headers alone.
    parent = textmap.extract(headers, _EMPTY)
    _last_parent = (textmap, dict(headers), parent)  # a copy: the handler may change its own
    return parent


def _process_base(queue: str, name: str, client_id: str) -> tuple[str, dict[str, Any]]:
    """The span name and the attributes every run of job ``name`` of ``queue`` on this worker has,
    made once (the SDK copies them into each span)."""
    key = (queue, name, client_id)
    base = _process_bases.get(key)
    if base is None:
        if len(_process_bases) >= BASES_KEPT:
            _process_bases.clear()  # many queues or names: start again rather than grow
        base = _process_bases[key] = (
            f"process {queue}",
            {
                "messaging.system": SYSTEM,
                "messaging.operation.name": "process",
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.client.id": client_id,
                "messaging.spitfire.job.name": name,
            },
        )
    return base


def start_process(d: Delivery, client_id: str) -> Process:
    """Start the span of one run of the delivered job ``d`` and make it current. Its parent is the
    creation context in the job's headers (a root span without one), and it links to that context
    too; a malformed ``traceparent`` is ignored (the propagator's rule)."""
    parent = _parent_of(d.headers)
    name, base = _process_base(d.queue, d.name, client_id)
    creation = _trace.get_current_span(parent).get_span_context()
    span = _get_tracer().start_span(
        name,
        context=parent,
        kind=_CONSUMER,
        attributes={**base, "messaging.message.id": d.job_id, "messaging.spitfire.attempt": d.attempt},
        links=(_trace.Link(creation),) if creation.is_valid else None,
    )
    # Current even when not sampled: the jobs the handler enqueues carry its "not sampled" context.
    return Process(span, _context.attach(_trace.set_span_in_context(span, parent)), d)


def outcome_of(outcome: AckItem | FailItem | None, d: Delivery) -> str:
    """The ``messaging.spitfire.outcome`` of a run that produced ``outcome`` (None: no outcome is
    sent, the run was cancelled)."""
    if outcome is None:
        return CANCELLED
    if not isinstance(outcome, FailItemType):
        return SUCCEEDED
    if outcome.retry_at is not None:
        return SNOOZED
    return RETRY if outcome.retryable and d.attempt < d.max_attempts else DEAD
