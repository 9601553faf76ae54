"""Workers of the HTTP worker API: who claimed from which queues and when they were last seen.

Leases of HTTP-claimed jobs live in the engine like those of protocol workers (worker id
``http:<name>``): a lease that is neither acked, failed nor extended by a heartbeat before it ends
is expired by maintenance and the job is delivered again (attempt counted). This registry only
feeds GET /api/workers; it forgets a worker that holds no job and was not seen for `FORGET_AFTER`
seconds, and never holds more than `MAX_WORKERS` entries.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

#: Prefix of the engine's worker id of an HTTP worker.
PREFIX = "http:"
#: Seconds after which an idle HTTP worker is forgotten.
FORGET_AFTER = 3600.0
#: HTTP workers remembered at most (the least recently seen go first).
MAX_WORKERS = 10_000


def worker_id(name: str | None) -> str:
    """The engine's worker id for an HTTP worker name (a random one when None); an id that
    already carries the prefix is kept as it is."""
    if name is None:
        return PREFIX + secrets.token_hex(6)
    return name if name.startswith(PREFIX) else PREFIX + name


@dataclass(slots=True)
class HttpWorker:
    id: str
    queues: set[str] = field(default_factory=set)
    first_seen: float = 0.0
    last_seen: float = 0.0


class HttpWorkers:
    """The HTTP workers seen recently."""

    def __init__(self) -> None:
        self.workers: dict[str, HttpWorker] = {}

    def seen(self, wid: str, now: float, queue: str | None = None) -> None:
        """Note that worker ``wid`` made a request at ``now`` (claiming from ``queue``)."""
        w = self.workers.pop(wid, None)  # re-inserted last: dict order is least recently seen first
        if w is None:
            w = HttpWorker(wid, first_seen=now)
        w.last_seen = now
        if queue is not None and len(w.queues) < 1000:
            w.queues.add(queue)
        self.workers[wid] = w
        if len(self.workers) > MAX_WORKERS:
            del self.workers[next(iter(self.workers))]

    def prune(self, now: float, holding: set[str]) -> None:
        """Forget workers idle for FORGET_AFTER seconds that hold no lease (ids in ``holding`` do)."""
        stale = [w for w, v in self.workers.items() if now - v.last_seen > FORGET_AFTER and w not in holding]
        for wid in stale:
            del self.workers[wid]
