"""The hooks through which tracing (``spitfire-server --otel``, server/tracing.py) hears of enqueues,
commits and deliveries. Nothing here imports OpenTelemetry: the protocol service, the commit
machinery and the dispatcher hold an optional `Tracer` (None: off, one ``is not None`` check on each
hot path) and call it; the implementation that makes spans lives in server/tracing.py, imported only
with ``--otel``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from spitfire.index.job import Job


class EnqueueTrace(Protocol):
    """One enqueue request being traced, from its arrival (`Tracer.start_enqueue`) to its answer."""

    def appended(self) -> None:
        """The request's record was appended (its write now waits for the fsync); idempotent."""

    def end(self, jobs: Sequence[Job], exc: BaseException | None) -> None:
        """The request was answered with ``jobs`` (empty when it failed), or failed with ``exc``."""


class Tracer(Protocol):
    """What the server's parts tell the tracer."""

    def start_enqueue(self, queue: str, headers: Mapping[str, str] | None, count: int | None) -> EnqueueTrace:
        """An enqueue request to ``queue`` arrived: one job (``count`` None) or a batch of ``count``,
        with the jobs' ``headers`` (the producer's trace context, if any)."""

    def durable(self, queue: str, upto: int, records: int) -> None:
        """One fsync made ``records`` records of ``queue``'s log durable, up to LSN ``upto``."""

    def delivered(self, worker_id: str, jobs: Sequence[Job], now: float) -> None:
        """The dispatcher pushed ``jobs`` (just reserved) to ``worker_id`` at ``now``."""

    def shutdown(self) -> None:
        """Export what is buffered and stop (blocking)."""
