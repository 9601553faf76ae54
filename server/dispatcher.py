"""Push delivery with credits (protocol/PROTOCOL.md, section 9).

Workers subscribe with credits (their free concurrency). Whenever jobs may have become ready (the
engine's ``on_ready`` callback, a credit grant, a new subscription) one dispatch pass is scheduled
for the next loop turn, so everything that happened in one turn is served by one pass. A pass goes
round-robin over the workers that have credits and a queue with ready jobs, one job per worker per
round (fair), until jobs or credits run out; each worker then gets its jobs in one DELIVER frame.
The engine picks the job: highest priority first, FIFO within a priority, across the worker's
queues. A worker never holds more undelivered-for jobs than it granted credits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Protocol

import msgspec

from spitfire.index.job import Job
from spitfire.protocol.messages import Deliver, Delivery, JobIds, MessageType

from .engine import Engine, QueueDeletion

log = logging.getLogger("spitfire.server.dispatcher")

#: Most jobs reserved in one dispatch pass; the rest follow in the next loop turn, so that a huge
#: backlog and many credits cannot stall the loop for other connections.
MAX_PER_PASS = 2048
#: Payload bytes per DELIVER frame at most (a frame always carries at least one job), far below
#: the peers' frame limit.
MAX_DELIVER_BYTES = 4 * 2**20
#: Credits one worker may hold at most (a bad client cannot make the server count to infinity).
MAX_CREDITS = 1_000_000


class Sink(Protocol):
    """Where a worker's pushes go: its connection."""

    def push(self, message_type: int, message: msgspec.Struct) -> None:
        """Queue an unsolicited frame; it is written at the end of this loop turn."""


class Worker:
    """One subscribed connection."""

    __slots__ = (
        "active", "concurrency", "connected_at", "credits", "host", "id", "last_seen", "name", "pid",
        "queues", "sink",
    )  # fmt: skip

    def __init__(self, worker_id: str, name: str, queues: tuple[str, ...], credits: int, sink: Sink) -> None:
        self.id = worker_id
        self.name = name
        self.queues = queues
        self.credits = credits
        self.sink = sink
        #: False after UNSUBSCRIBE: no more deliveries, held jobs stay leased.
        self.active = True
        #: What the worker said of itself in SUBSCRIBE ("" / 0: not said), for the dashboard.
        self.host = ""
        self.pid = 0
        self.concurrency = 0
        #: When it subscribed, and when it was last heard from (subscribe, heartbeat, credit).
        self.connected_at = 0.0
        self.last_seen = 0.0


def delivery(job: Job) -> Delivery:
    """The wire form of a job pushed to a worker."""
    return Delivery(
        job.id,
        job.queue,
        job.name,
        job.payload,
        job.attempts,
        job.max_attempts,
        job.timeout,
        job.headers,
        job.created_at,
        job.priority,
    )


class Dispatcher:
    """Pushes ready jobs to subscribed workers within their credits.

    ``clock`` gives epoch seconds; ``on_lease`` is told the earliest lease end of each pass (the
    maintenance timer must wake by then to expire it).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float],
        on_lease: Callable[[float], None] = lambda _at: None,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._on_lease = on_lease
        self.workers: dict[str, Worker] = {}
        #: Queues that may have ready jobs (every queue the engine reports through on_ready; a queue
        #: leaves when a reserve over it comes back short).
        self._ready: set[str] = set()
        self._scheduled = False
        self._stopped = False
        self._turn = 0
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Told of every push: (worker id, the jobs, when); tracing's hook (None: off).
        self.on_deliver: Callable[[str, list[Job], float], None] | None = None
        #: A cluster leader's lease check: ``gate(proceed)`` True to deliver now, else ``proceed(ok)``
        #: is called later (None: a single node, always).
        self.gate: Callable[[Callable[[bool], None]], bool] | None = None

    # -- events -----------------------------------------------------------------------------------------

    def on_ready(self, queue: str) -> None:
        """The engine's callback: jobs became ready in ``queue``."""
        self._ready.add(queue)
        self._schedule()

    def all_ready(self) -> None:
        """Consider every known queue (after recovery, when ready jobs came from the log)."""
        self._ready.update(self.engine.queues())
        self._schedule()

    def subscribe(
        self, sink: Sink, queues: list[str], credits: int, name: str, resume: str | None = None
    ) -> Worker:
        """Register a worker for ``queues`` (already validated) with ``credits``.

        ``resume`` (the id an earlier connection of this worker had) becomes its id when no live
        connection holds it: the leases still held by that id are then this worker's (a cluster's
        new leader continues the old one's). Otherwise the worker gets a new id, never one that a
        live worker or a held lease uses."""
        if resume is not None and resume not in self.workers:
            worker_id = resume
        else:
            worker_id = f"w{next(self._ids)}"
            while worker_id in self.workers or self.engine.held_by(worker_id):
                worker_id = f"w{next(self._ids)}"
        worker = Worker(worker_id, name, tuple(dict.fromkeys(queues)), min(credits, MAX_CREDITS), sink)
        worker.connected_at = worker.last_seen = self._clock()
        self.workers[worker.id] = worker
        if credits > 0:
            self._schedule()
        return worker

    def credit(self, worker: Worker, credits: int) -> None:
        """The worker can take ``credits`` more jobs."""
        if credits <= 0:
            return
        worker.credits = min(MAX_CREDITS, worker.credits + credits)
        if worker.active and not self._ready.isdisjoint(worker.queues):
            self._schedule()

    def unsubscribe(self, worker: Worker) -> None:
        """No more deliveries to this worker; it keeps the jobs it holds."""
        worker.active = False

    def remove(self, worker: Worker, *, release: bool = True) -> None:
        """The worker's connection is gone: forget it and (unless shutting down) return its jobs."""
        worker.active = False
        self.workers.pop(worker.id, None)
        if release:
            task = asyncio.get_running_loop().create_task(self._release(worker.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _release(self, worker_id: str) -> None:
        try:
            jobs = await self.engine.release_worker(worker_id, self._clock())
        except Exception:
            log.exception("returning the jobs of disconnected worker %s failed", worker_id)
            return
        if jobs:
            log.info("worker %s disconnected holding %d jobs: returned to their queues", worker_id, len(jobs))

    def cancelled(self, worker_id: str, job_ids: list[str]) -> None:
        """These jobs were cancelled or deleted while ``worker_id`` held them: tell it."""
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.sink.push(MessageType.CANCEL_JOBS, JobIds(job_ids))

    def queue_deleted(self, deletion: QueueDeletion) -> None:
        """A queue was deleted: tell each worker that held its jobs to stop them, and stop offering
        it. Subscriptions name queues, not queue objects: a worker subscribed to the name keeps it,
        and a new queue of that name is delivered to it."""
        for worker_id, job_ids in deletion.revoked.items():
            self.cancelled(worker_id, job_ids)
        self._ready.discard(deletion.queue)

    def stop(self) -> None:
        """Deliver nothing more (shutdown)."""
        self._stopped = True

    async def wait_released(self) -> None:
        """Wait until the jobs of every disconnected worker went back (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- dispatch ---------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._scheduled and not self._stopped:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _confirmed(self, ok: bool) -> None:
        if ok:
            self._schedule()

    def _eligible(self) -> list[Worker]:
        ready = self._ready
        workers = [
            w for w in self.workers.values() if w.active and w.credits > 0 and not ready.isdisjoint(w.queues)
        ]
        if len(workers) > 1:
            # Start each pass at a different worker so that one-job passes are fair too.
            k = self._turn % len(workers)
            self._turn += 1
            workers = workers[k:] + workers[:k]
        return workers

    def _run(self) -> None:
        self._scheduled = False
        if self._stopped:
            return
        if self.gate is not None and not self.gate(self._confirmed):
            return
        workers = self._eligible()
        if not workers:
            return
        try:
            batches, budget = self._reserve(workers)
        except Exception:
            log.exception("dispatch pass failed")
            return
        earliest = float("inf")
        on_deliver = self.on_deliver
        for worker, jobs in batches.items():
            for job in jobs:
                if job.lease_until is not None and job.lease_until < earliest:
                    earliest = job.lease_until
            self._push(worker, jobs)
            if on_deliver is not None:
                on_deliver(worker.id, jobs, self._clock())
        if earliest != float("inf"):
            self._on_lease(earliest)
        if budget <= 0:
            self._schedule()  # more may be ready: continue next turn, after other connections

    def _reserve(self, workers: list[Worker]) -> tuple[dict[Worker, list[Job]], int]:
        """Round-robin reservation; returns each worker's jobs and the unused pass budget."""
        engine = self.engine
        now = self._clock()
        batches: dict[Worker, list[Job]] = {}
        budget = MAX_PER_PASS
        while workers and budget > 0:
            # One worker alone takes all it can at once; several take one job each per round.
            single = len(workers) == 1
            still: list[Worker] = []
            for worker in workers:
                limit = min(worker.credits, budget) if single else 1
                jobs = engine.reserve(worker.queues, worker.id, now, limit)
                if jobs:
                    batches.setdefault(worker, []).extend(jobs)
                    worker.credits -= len(jobs)
                    budget -= len(jobs)
                if len(jobs) < limit:
                    self._ready.difference_update(worker.queues)  # its queues have nothing ready
                elif worker.credits > 0:
                    still.append(worker)
                if budget <= 0:
                    break
            workers = [w for w in still if not self._ready.isdisjoint(w.queues)]
        return batches, budget

    @staticmethod
    def _push(worker: Worker, jobs: list[Job]) -> None:
        """Push ``jobs`` in as few DELIVER frames as the frame budget allows."""
        frame: list[Delivery] = []
        size = 0
        for job in jobs:
            n = len(job.payload)
            if frame and size + n > MAX_DELIVER_BYTES:
                worker.sink.push(MessageType.DELIVER, Deliver(frame))
                frame, size = [], 0
            frame.append(delivery(job))
            size += n
        if frame:
            worker.sink.push(MessageType.DELIVER, Deliver(frame))
