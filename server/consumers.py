"""Consumers: clients that take jobs by asking for them, one request at a time, instead of subscribing
to pushes (the RESP adapter's list and stream commands use these operations; the rules live here).

Two ways to take a job, both in the engine's order (highest priority first, FIFO within one, ties
between queues to the earliest ready) and both skipping paused queues:

- `Consumers.pop` is at-most-once: the jobs are leased to ``holder`` and acked at once; they are
  returned only when their JOB_SUCCEEDED records are durable. A crash before that leaves them ready
  again (the client was answered nothing); once answered, a job is done whatever the client does
  with it, so a client that dies before using it loses it.
- `Consumers.claim` is at-least-once: the jobs are leased to ``holder`` (RUNNING) for their
  ``timeout``, nothing is logged; `Consumers.ack` settles them. A lease that runs out is expired by
  maintenance like any other and the job is delivered again (attempt counted); a claim is not
  lost when the server restarts (the job is ready again).

Both can wait for a ready job (`wait_ready`, woken by the engine's ``on_ready``, which this object
chains to the callback already set) for a bounded time, and every wait ends when the client goes
away (its task is cancelled) or `close` is called (shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence

from spitfire.index.job import LEASED_STATES, Job

from . import validation as v
from .engine import Engine
from .errors import QueueNotFound, ValidationError

#: Longest wait between two looks at the queues: a resume or a lease expiry wakes nobody, and the
#: next look finds what they made ready.
LOOK_AGAIN = 1.0
#: Most jobs one pop or claim takes.
MAX_TAKE = 1000
#: Payload bytes one pop or claim takes at most (it always takes one job when there is one): what
#: one answer holds in memory until the client reads it.
MAX_TAKE_BYTES = 16 * 2**20

_WAITING = ("enqueued", "scheduled", "retrying")
_CLAIMED = ("reserved", "running")


class Consumers:
    """Pop, claim, ack and count over one engine (``clock`` gives epoch seconds)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        #: Jobs of pushes not durable yet, per queue (what a push counts ahead of its own).
        self._pushing: dict[str, int] = {}
        self._closed = False
        previous = engine.on_ready

        def on_ready(queue: str) -> None:
            if previous is not None:
                previous(queue)
            if self._waiters:
                self._wake(queue)

        engine.on_ready = on_ready

    # -- adding -----------------------------------------------------------------------------------------

    async def push(self, queue: str, jobs: Sequence[tuple[str, bytes]]) -> tuple[list[Job], int]:
        """Enqueue each ``(name, payload)`` on ``queue`` with the default options, in order. Returns
        the jobs, once durable, and how many jobs wait in the queue after them: those `waiting`
        when the push began, those of pushes still committing before it, and its own (concurrent
        pushes that commit together each count those before them, as sequential ones would).

        Jobs of one name go in one record, all or nothing; a push naming several handlers writes one
        record per run of equal names, one after the other (a crash may keep the first runs only).

        :raises ValidationError: naming the field, before anything is written; `Overloaded`,
            `NoSpace`, `PayloadTooLarge` as for any enqueue.
        """
        config = self.engine.config
        v.check_queue(queue, config)
        if not jobs:
            raise ValidationError("values", "give at least one value")
        runs: list[tuple[str, list[bytes]]] = []
        for name, payload in jobs:
            if runs and runs[-1][0] == name:
                runs[-1][1].append(payload)
            else:
                runs.append((v.check_name("name", name, config), [payload]))
        ahead = self.waiting(queue) + self._pushing.get(queue, 0)
        self._pushing[queue] = self._pushing.get(queue, 0) + len(jobs)
        out: list[Job] = []
        try:
            for name, payloads in runs:
                made, _ = await self.engine.enqueue_batch(queue, name, payloads, now=self.clock())
                out.extend(made)
        finally:
            left = self._pushing[queue] - len(jobs)
            if left:
                self._pushing[queue] = left
            else:
                del self._pushing[queue]
        return out, ahead + len(out)

    def check_queue(self, queue: str) -> str:
        """``queue`` when it is a valid queue name. :raises ValidationError: naming ``queue``."""
        return v.check_queue(queue, self.engine.config)

    # -- counting ---------------------------------------------------------------------------------------

    def counts(self, queue: str) -> dict[str, int] | None:
        """Jobs of ``queue`` per state label (None for a queue that does not exist), with the sums
        ``waiting`` (enqueued, scheduled, retrying), ``claimed`` (reserved, running) and ``total``."""
        try:
            stats = self.engine.queue_stats(queue)
        except QueueNotFound:
            return None
        counts = dict(stats.counts)
        counts["waiting"] = sum(counts[s] for s in _WAITING)
        counts["claimed"] = sum(counts[s] for s in _CLAIMED)
        counts["total"] = stats.total
        return counts

    def waiting(self, queue: str) -> int:
        """Jobs of ``queue`` not taken yet: enqueued, scheduled and retrying (0 for no such queue)."""
        counts = self.counts(queue)
        return 0 if counts is None else counts["waiting"]

    # -- taking -----------------------------------------------------------------------------------------

    async def pop(self, queues: Sequence[str], limit: int, holder: str, *, wait: float = 0.0) -> list[Job]:
        """Take up to ``limit`` ready jobs and mark them succeeded (at-most-once: see the module).
        With ``wait`` > 0 (seconds; ``math.inf``: until the client goes away) and nothing ready,
        wait for a job. Returns the jobs once their outcome is durable ([] when none came).

        :raises ValidationError: a bad queue name, holder or limit; `StorageFailed` when no job
            could be completed.
        """
        self._check(queues, limit, holder)
        deadline = time.monotonic() + wait
        while True:
            jobs = self._reserve(queues, holder, self.clock(), limit)
            if jobs:
                return await self._complete(jobs, holder)
            left = deadline - time.monotonic()
            if left <= 0 or self._closed:
                return []
            await self.wait_ready(queues, min(left, LOOK_AGAIN))

    async def claim(self, queues: Sequence[str], limit: int, holder: str, *, wait: float = 0.0) -> list[Job]:
        """Lease up to ``limit`` ready jobs to ``holder`` (RUNNING, each for its ``timeout``), waiting
        for one as `pop` does. Nothing is logged: `ack` settles a job, an expired lease returns it.

        :raises ValidationError: a bad queue name, holder or limit.
        """
        self._check(queues, limit, holder)
        deadline = time.monotonic() + wait
        engine = self.engine
        while True:
            now = self.clock()
            jobs = self._reserve(queues, holder, now, limit)
            if jobs:
                for job in jobs:
                    engine.start(job.id, holder, now)
                return jobs
            left = deadline - time.monotonic()
            if left <= 0 or self._closed:
                return []
            await self.wait_ready(queues, min(left, LOOK_AGAIN))

    def pending(self, queue: str, holder: str, after: str = "", limit: int = MAX_TAKE) -> list[Job]:
        """The jobs of ``queue`` that ``holder`` holds (claimed, not acked, lease not expired) whose
        ids sort after ``after``, oldest first, at most ``limit``."""
        jobs = [j for j in self.engine.held_by(holder) if j.queue == queue and j.id > after]
        jobs.sort(key=lambda j: j.id)
        return jobs[:limit]

    async def ack(self, queue: str, job_ids: Iterable[str], holders: str) -> int:
        """Mark succeeded each job of ``queue`` among ``job_ids`` that a holder whose id starts with
        ``holders`` holds, acting for that holder. Returns how many were acked; an id that is
        unknown, of another queue, not held (never claimed, expired, acked) or held by another
        holder counts 0 and changes nothing."""
        by_holder: dict[str, list[str]] = {}
        table = self.engine.table
        for job_id in dict.fromkeys(job_ids):  # an id named twice is acked once
            job = table.get(job_id)
            if (
                job is None
                or job.queue != queue
                or job.state not in LEASED_STATES
                or job.worker is None
                or not job.worker.startswith(holders)
            ):
                continue
            by_holder.setdefault(job.worker, []).append(job_id)
        now = self.clock()
        results = await asyncio.gather(
            *(self.engine.ack_many(ids, holder, now) for holder, ids in by_holder.items())
        )
        return sum(isinstance(item, Job) for items in results for item in items)

    # -- waiting ----------------------------------------------------------------------------------------

    async def wait_ready(self, queues: Iterable[str], timeout: float) -> None:
        """Wait until a job of one of ``queues`` may have become ready, ``timeout`` seconds pass, or
        `close` is called. (Another consumer or a worker may take the job first: look again.)"""
        if self._closed or timeout <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        names = list(dict.fromkeys(queues))
        for name in names:
            self._waiters.setdefault(name, set()).add(future)
        try:
            await asyncio.wait([future], timeout=None if math.isinf(timeout) else timeout)
        finally:
            future.cancel()
            for name in names:
                waiting = self._waiters.get(name)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiters[name]

    def close(self) -> None:
        """End every wait now and refuse new ones (shutdown): waiting pops and claims return []."""
        self._closed = True
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    @property
    def waiters(self) -> int:
        """Waits in progress (each wait counts once per queue it waits on)."""
        return sum(len(w) for w in self._waiters.values())

    # -- internals --------------------------------------------------------------------------------------

    def _wake(self, queue: str) -> None:
        for future in self._waiters.get(queue, ()):
            if not future.done():
                future.set_result(None)

    def _reserve(self, queues: Sequence[str], holder: str, now: float, limit: int) -> list[Job]:
        """`Engine.reserve` within `MAX_TAKE_BYTES` (job by job when ``limit`` jobs of the largest
        payload allowed could be more)."""
        engine = self.engine
        if limit * engine.config.max_payload <= MAX_TAKE_BYTES:
            return engine.reserve(queues, holder, now, limit)
        out: list[Job] = []
        size = 0
        while len(out) < limit and size < MAX_TAKE_BYTES:
            got = engine.reserve(queues, holder, now, 1)
            if not got:
                break
            out += got
            size += len(got[0].payload)
        return out

    def _check(self, queues: Sequence[str], limit: int, holder: str) -> None:
        config = self.engine.config
        if not queues:
            raise ValidationError("queue", "name at least one queue")
        for queue in queues:
            v.check_queue(queue, config)
        v.check_limit(limit, "count", MAX_TAKE)
        v.check_name("consumer", holder, config)

    async def _complete(self, jobs: list[Job], holder: str) -> list[Job]:
        """Ack the jobs just reserved for a pop; a job whose ack failed is handed back at once."""
        now = self.clock()
        results = await self.engine.ack_many([job.id for job in jobs], holder, now)
        done = [item for item in results if isinstance(item, Job)]
        failed = [job.id for job, item in zip(jobs, results, strict=True) if isinstance(item, Exception)]
        if failed:
            with contextlib.suppress(Exception):  # the server is failing: the leases expire instead
                await self.engine.release_many(failed, holder, now)
            if not done:
                first = next(item for item in results if isinstance(item, Exception))
                raise first
        return done
