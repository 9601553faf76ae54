"""Backpressure: refuse new jobs (BUSY, with a retry-after hint) past limits on pending work.

Pending means not finished: scheduled, enqueued, reserved, running or retrying. Limits apply to
pending jobs and pending payload bytes, per queue and over all queues. Only enqueues are refused;
acks, fails and every other request keep working, so workers drain the backlog that caused it.

The figures come from a `PendingSource` (the engine), whose index counts pending jobs and their
payload bytes as jobs enter and leave the pending states, plus the new jobs still waiting for their
commit (so the next admission sees them); nothing is counted here. The engine calls `admit` first
thing in every enqueue (`Engine.admission`): the rule lives once, whichever protocol asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .errors import Overloaded

#: Seconds a refused producer is told to wait: long enough for workers to finish a batch of jobs,
#: short enough that a producer resumes soon after the backlog shrinks.
RETRY_AFTER = 0.5


@dataclass(frozen=True, slots=True)
class Limits:
    """Pending work past which enqueues answer BUSY."""

    #: Pending jobs in one queue.
    queue_jobs: int
    #: Pending payload bytes in one queue.
    queue_bytes: int
    #: Pending jobs in all queues together.
    total_jobs: int
    #: Pending payload bytes in all queues together.
    total_bytes: int


class PendingSource(Protocol):
    """Exact pending work (the engine)."""

    def pending_figures(self, queue: str) -> tuple[int, int, int, int]:
        """(pending jobs of ``queue``, their payload bytes, pending jobs of all queues, their bytes)."""
        ...


class Backpressure:
    """Admits or refuses enqueues against `Limits`, reading ``source``'s figures on every admission."""

    def __init__(self, limits: Limits, source: PendingSource) -> None:
        self.limits = limits
        self.source = source

    def admit(self, queue: str, jobs: int, nbytes: int) -> None:
        """Admit ``jobs`` new jobs of ``nbytes`` payload bytes into ``queue``, or refuse them.

        :raises Overloaded: a limit would be crossed.
        """
        q_jobs, q_bytes, t_jobs, t_bytes = self.source.pending_figures(queue)
        lim = self.limits
        if q_jobs + jobs > lim.queue_jobs:
            what = f"queue {queue!r} holds {q_jobs} pending jobs (limit {lim.queue_jobs})"
        elif q_bytes + nbytes > lim.queue_bytes:
            what = f"queue {queue!r} holds {q_bytes} pending payload bytes (limit {lim.queue_bytes})"
        elif t_jobs + jobs > lim.total_jobs:
            what = f"the server holds {t_jobs} pending jobs (limit {lim.total_jobs})"
        elif t_bytes + nbytes > lim.total_bytes:
            what = f"the server holds {t_bytes} pending payload bytes (limit {lim.total_bytes})"
        else:
            return
        raise Overloaded(what, RETRY_AFTER)
