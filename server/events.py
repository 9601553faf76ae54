"""Observers of job changes: the one hook the engine calls when a job is created, changes state, or
is deleted (the HTTP live events and the Prometheus counters listen to it).

The engine holds one `JobObserver` (``Engine.observer``, `ignore` by default), and optionally one
`BatchObserver` for the jobs of a batch enqueue, and calls them synchronously, on the loop, right
after the change is applied in memory (before its commit resolves). An observer must be cheap and
must never raise: `Observers` fans one call out to many observers and logs (never propagates) what
one of them raises. Recovery does not call observers: they are attached after the engine has opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from spitfire.index.job import Job

log = logging.getLogger("spitfire.server.events")

#: ``observer(job, deleted)``: ``job`` was just created or moved to ``job.state`` (``deleted`` False),
#: or was deleted (``deleted`` True; ``job.state`` is the state it had).
JobObserver = Callable[[Job, bool], None]
#: ``batch_observer(jobs)``: one batch created these jobs (at least one), all at once, in order: the
#: same queue, handler, state, ``updated_at`` and attempts (0). When the engine has one
#: (``Engine.batch_observer``), it is called instead of the job observer for a batch's new jobs, so
#: an observer pays once per batch rather than once per job.
BatchObserver = Callable[[list[Job]], None]


def ignore(job: Job, deleted: bool) -> None:
    """The engine's default observer: does nothing."""


class Observers:
    """Several observers behind one callable; a failing observer is logged and detached."""

    def __init__(self) -> None:
        self._observers: list[JobObserver] = []

    def add(self, observer: JobObserver) -> None:
        """Call ``observer`` for every change from now on."""
        self._observers.append(observer)

    def remove(self, observer: JobObserver) -> None:
        """Stop calling ``observer`` (no error if it was not added)."""
        if observer in self._observers:
            self._observers.remove(observer)

    def __call__(self, job: Job, deleted: bool) -> None:
        for observer in self._observers:
            try:
                observer(job, deleted)
            except Exception:
                log.exception("job observer %r failed; detached", observer)
                self.remove(observer)
