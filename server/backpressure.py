"""Backpressure: refuse new jobs (BUSY, with a retry-after hint) past limits on pending work.

Pending means not finished: scheduled, enqueued, reserved, running or retrying. Limits apply to
pending jobs and pending payload bytes, per queue and over all queues. Only enqueues are refused;
acks, fails and every other request keep working, so workers drain the backlog that caused it.

Exact mode (the server's): `Backpressure.attach` gives it a `PendingSource` (the engine), whose
index counts pending jobs and their payload bytes per queue and in total as jobs enter and leave the
pending states; every admission reads those four figures (one call) and nothing else is counted
here. An enqueue's jobs are indexed synchronously when the engine call starts, so the next
admission already sees them; `retract` and `recovered` have nothing to do.

Estimate mode (no source attached; kept for callers that only have a pending-jobs callback): an
admitted enqueue adds its jobs and bytes to an estimate, and finished jobs are not subtracted one by
one. When an enqueue would cross a limit, the queue's estimate is refreshed from the exact job count
before refusing, its bytes scaled by exact jobs / estimated jobs.
"""

from __future__ import annotations

from collections.abc import Callable
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
    """Admits or refuses enqueues against `Limits`.

    ``pending`` returns the exact number of pending jobs of a queue (0 for an unknown queue); it
    is asked only when an enqueue would cross a limit (a few microseconds per queue).
    """

    def __init__(self, limits: Limits, pending: Callable[[str], int]) -> None:
        self.limits = limits
        self._pending = pending
        #: queue -> [estimated pending jobs, estimated pending bytes]
        self._queues: dict[str, list[float]] = {}
        self.total_jobs = 0.0
        self.total_bytes = 0.0
        self._source: PendingSource | None = None

    def attach(self, source: object) -> None:
        """Read exact pending figures from ``source`` from now on, if it offers them (an engine's
        ``pending_figures``); otherwise keep estimating."""
        if callable(getattr(source, "pending_figures", None)):
            self._source = source  # type: ignore[assignment]

    @property
    def exact(self) -> bool:
        return self._source is not None

    def admit(self, queue: str, jobs: int, nbytes: int) -> None:
        """Admit ``jobs`` new jobs of ``nbytes`` payload bytes into ``queue``, or refuse them.

        :raises Overloaded: a limit would be crossed (nothing is counted then).
        """
        source = self._source
        if source is not None:
            q_jobs, q_bytes, t_jobs, t_bytes = source.pending_figures(queue)
            lim = self.limits
            if (
                q_jobs + jobs > lim.queue_jobs
                or q_bytes + nbytes > lim.queue_bytes
                or t_jobs + jobs > lim.total_jobs
                or t_bytes + nbytes > lim.total_bytes
            ):
                self._refuse_exact(queue, jobs, nbytes, (q_jobs, q_bytes, t_jobs, t_bytes))
            return
        entry = self._queues.get(queue)
        if entry is None:
            entry = self._queues[queue] = [0.0, 0.0]
        if self._over(entry, jobs, nbytes):
            self._refresh(queue, entry)
            if self._over_total(jobs, nbytes):
                self._refresh_all()
            self._refuse(queue, entry, jobs, nbytes)
        entry[0] += jobs
        entry[1] += nbytes
        self.total_jobs += jobs
        self.total_bytes += nbytes

    def retract(self, queue: str, jobs: int, nbytes: int) -> None:
        """Undo an `admit` whose jobs were not added (an error, or an idempotency key hit); nothing
        to do in exact mode."""
        if self._source is not None:
            return
        entry = self._queues.get(queue)
        if entry is None:
            return
        jobs = min(jobs, int(entry[0]))
        nbytes = min(nbytes, int(entry[1]))
        entry[0] -= jobs
        entry[1] -= nbytes
        self.total_jobs -= jobs
        self.total_bytes -= nbytes

    def recovered(self, queue: str, jobs: int, nbytes: int) -> None:
        """Count jobs that existed before this process started (found by a recovery scan); nothing
        to do in exact mode (the engine counted them while it recovered)."""
        if self._source is not None:
            return
        entry = self._queues.setdefault(queue, [0.0, 0.0])
        entry[0] += jobs
        entry[1] += nbytes
        self.total_jobs += jobs
        self.total_bytes += nbytes

    def estimate(self, queue: str) -> tuple[int, int]:
        """A queue's pending (jobs, bytes): exact in exact mode, else the current estimate."""
        if self._source is not None:
            return self._source.pending_figures(queue)[:2]  # type: ignore[return-value]
        entry = self._queues.get(queue)
        return (0, 0) if entry is None else (int(entry[0]), int(entry[1]))

    def _over(self, entry: list[float], jobs: int, nbytes: int) -> bool:
        lim = self.limits
        return (
            entry[0] + jobs > lim.queue_jobs
            or entry[1] + nbytes > lim.queue_bytes
            or self.total_jobs + jobs > lim.total_jobs
            or self.total_bytes + nbytes > lim.total_bytes
        )

    def _over_total(self, jobs: int, nbytes: int) -> bool:
        lim = self.limits
        return self.total_jobs + jobs > lim.total_jobs or self.total_bytes + nbytes > lim.total_bytes

    def _refuse(self, queue: str, entry: list[float], jobs: int, nbytes: int) -> None:
        lim = self.limits
        if entry[0] + jobs > lim.queue_jobs:
            what = f"queue {queue!r} holds {int(entry[0])} pending jobs (limit {lim.queue_jobs})"
        elif entry[1] + nbytes > lim.queue_bytes:
            what = f"queue {queue!r} holds {int(entry[1])} pending payload bytes (limit {lim.queue_bytes})"
        elif self.total_jobs + jobs > lim.total_jobs:
            what = f"the server holds {int(self.total_jobs)} pending jobs (limit {lim.total_jobs})"
        elif self.total_bytes + nbytes > lim.total_bytes:
            what = f"the server holds {int(self.total_bytes)} pending payload bytes (limit {lim.total_bytes})"
        else:
            return
        raise Overloaded(what, RETRY_AFTER)

    def _refuse_exact(self, queue: str, jobs: int, nbytes: int, figures: tuple[int, int, int, int]) -> None:
        lim = self.limits
        q_jobs, q_bytes, t_jobs, t_bytes = figures
        if q_jobs + jobs > lim.queue_jobs:
            what = f"queue {queue!r} holds {q_jobs} pending jobs (limit {lim.queue_jobs})"
        elif q_bytes + nbytes > lim.queue_bytes:
            what = f"queue {queue!r} holds {q_bytes} pending payload bytes (limit {lim.queue_bytes})"
        elif t_jobs + jobs > lim.total_jobs:
            what = f"the server holds {t_jobs} pending jobs (limit {lim.total_jobs})"
        else:
            what = f"the server holds {t_bytes} pending payload bytes (limit {lim.total_bytes})"
        raise Overloaded(what, RETRY_AFTER)

    def _refresh(self, queue: str, entry: list[float]) -> None:
        """Replace the estimate of ``queue`` by the engine's exact job count (bytes scaled)."""
        exact = float(self._pending(queue))
        jobs, nbytes = entry[0], entry[1]
        if exact <= 0:
            new_bytes = 0.0
        elif jobs > 0:
            new_bytes = nbytes * exact / jobs
        else:
            new_bytes = nbytes
        self.total_jobs += exact - jobs
        self.total_bytes += new_bytes - nbytes
        entry[0] = exact
        entry[1] = new_bytes

    def _refresh_all(self) -> None:
        for queue, entry in self._queues.items():
            if entry[0] > 0:  # an empty estimate cannot shrink
                self._refresh(queue, entry)

    def refresh_all(self) -> None:
        """Refresh every queue's estimate (maintenance calls this now and then)."""
        if self._source is None:
            self._refresh_all()
