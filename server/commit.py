"""Commit, then apply: how a record appended to a queue's log reaches memory.

The one rule of the engine (see `server/engine.py`): a change is applied to memory only once its
record is durable. `Commits.push` takes a record just appended: it is applied at once when the log
says it is already durable (async mode, or the in-memory backend), else queued on its `Queue` and
applied by `Commits.durable`, which the log calls, in LSN order, each time records become durable
and before their writers' commit futures complete. So a writer that goes away (a cancelled
request) cannot leave a durable record unapplied, and nothing is answered before it is applied.

While a record waits, `inflight` names the job it is about and `inflight_keys` the idempotency keys
of the new jobs it adds; the engine waits on them (`settle`, `settle_key`) before it validates a
command against that job or key. A failed commit is fail-stop (`fail_stop`): the records that
waited for it are never applied and every later write is refused (`writable`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from spitfire.index.job import Job
from spitfire.wal.api import StorageError

from .errors import StorageFailed
from .records import RecordType
from .state import Queue, StateMachine

log = logging.getLogger("spitfire.server.engine")

_JOB_ENQUEUED = int(RecordType.JOB_ENQUEUED)
_JOBS_ENQUEUED = int(RecordType.JOBS_ENQUEUED)

#: What an enqueue record adds: (new jobs, their payload bytes, whether any has an idempotency key).
NewJobs = tuple[int, int, bool]


class Commits:
    """Records waiting for their commit, and their application once durable (one per engine)."""

    def __init__(self, state: StateMachine) -> None:
        self.state = state
        #: job id -> LSN of the newest record about the job that waits for its commit.
        self.inflight: dict[str, int] = {}
        #: (queue, idempotency key) -> LSN of the new job's record that waits for its commit.
        self.inflight_keys: dict[tuple[str, str], int] = {}
        #: Set once a log failed (fail-stop): every write is refused with `StorageFailed`.
        self.failure: StorageError | None = None
        #: Called once, with the reason, when the engine fails-stop (the server stops on it).
        self.on_failure: Callable[[str], None] | None = None
        #: Told of each fsync's records per queue log: (queue, last durable LSN, records applied);
        #: tracing's hook (None: off).
        self.on_durable: Callable[[str, int, int], None] | None = None

    def listen(self, q: Queue) -> None:
        """Hear from ``q``'s log when its records become durable, or when it fails."""
        q.history.parent = self.state.history  # a live queue feeds the total (server/history.py)
        q.log.set_listener(lambda lsn: self.durable(q, lsn), lambda error: self.fail_stop(q, error))

    def durable(self, q: Queue, upto: int) -> None:
        """The log made every record up to ``upto`` durable: apply the pending ones, in order (before
        their writers are answered: the log calls this before resolving their commit futures)."""
        pending = q.pending
        waiting = len(pending)
        inflight = self.inflight
        state = self.state
        apply = state.apply
        while pending and pending[0][0] <= upto:
            lsn, rtype, body, box, new = pending.popleft()
            try:
                result = apply(q, lsn, rtype, body)
            except Exception as exc:  # a bug: memory would no longer match the log
                log.exception("applying record %d of queue %r failed", lsn, q.name)
                self.fail_stop(q, StorageError(f"applying record {lsn} of queue {q.name!r} failed: {exc!r}"))
                return
            if box is not None:
                box.append(result)
            if new is not None:  # `_landed` inlined for the counts (every enqueue passes here)
                count, nbytes, keyed = new
                q.inflight_jobs -= count
                q.inflight_bytes -= nbytes
                state.inflight_jobs -= count
                state.inflight_bytes -= nbytes
                if keyed:
                    self._forget_keys(q, lsn, body.jobs if rtype == _JOBS_ENQUEUED else (body,))
            elif inflight:
                job_id = getattr(body, "id", None)  # queue records (pause, deletion...) have none
                if job_id is not None and inflight.get(job_id) == lsn:
                    del inflight[job_id]
        if self.on_durable is not None:
            self.on_durable(q.name, upto, waiting - len(pending))

    def _in_flight(self, q: Queue, lsn: int, jobs: Sequence[Job], new: NewJobs) -> None:
        """New jobs appended at ``lsn`` wait for their commit: count them, hold their keys."""
        count, nbytes, keyed = new
        state = self.state
        q.inflight_jobs += count
        q.inflight_bytes += nbytes
        state.inflight_jobs += count
        state.inflight_bytes += nbytes
        if keyed:
            keys = self.inflight_keys
            for job in jobs:
                if job.idempotency_key is not None:
                    keys[(q.name, job.idempotency_key)] = lsn

    def _forget_keys(self, q: Queue, lsn: int, jobs: Sequence[Job]) -> None:
        """The keys of new jobs applied at ``lsn`` stop being in flight (they are indexed now)."""
        keys = self.inflight_keys
        for job in jobs:
            if job.idempotency_key is not None and keys.get((q.name, job.idempotency_key)) == lsn:
                del keys[(q.name, job.idempotency_key)]

    def fail_stop(self, q: Queue, error: StorageError) -> None:
        """A log can no longer make records durable: refuse every write from now on, never apply the
        records that waited for the failed commit, and tell the server (it stops)."""
        q.pending.clear()
        self.state.inflight_jobs -= q.inflight_jobs
        self.state.inflight_bytes -= q.inflight_bytes
        q.inflight_jobs = q.inflight_bytes = 0
        self.stop(error)

    def stop(self, error: StorageError) -> None:
        """Fail-stop for ``error`` (idempotent): refuse every write from now on, tell the server."""
        if self.failure is not None:
            return
        self.failure = error
        self.inflight.clear()
        self.inflight_keys.clear()
        log.critical("storage failed, taking no more writes: %s", error)
        if self.on_failure is not None:
            self.on_failure(str(error))

    def writable(self) -> None:
        if self.failure is not None:
            raise StorageFailed(str(self.failure))

    def push(
        self,
        q: Queue,
        lsn: int,
        rtype: int,
        body: Any,
        *,
        job_id: str | None = None,
        new: NewJobs | None = None,
        box: list[Any] | None = None,
    ) -> asyncio.Future[Any] | None:
        """After appending record ``lsn``: apply it at once when it is already durable (or in async
        mode), else once its commit completes. Returns the future to await before answering (None
        when applied); what the application returned goes into ``box``. ``job_id`` names the job
        the record is about; ``new`` describes the new jobs of an enqueue record."""
        fut = q.log.commit(lsn)
        if fut is None and not q.pending:
            result = self.state.apply(q, lsn, rtype, body)
            if box is not None:
                box.append(result)
            return None
        q.pending.append((lsn, rtype, body, box, new))
        if job_id is not None:
            self.inflight[job_id] = lsn
        elif new is not None:
            self._in_flight(q, lsn, body.jobs if rtype == _JOBS_ENQUEUED else (body,), new)
        # An async-mode record behind records still committing is applied after them.
        return fut if fut is not None else asyncio.ensure_future(q.log.flush())

    async def submit(
        self, q: Queue, lsn: int, rtype: int, body: Any, job_id: str | None = None, new: NewJobs | None = None
    ) -> Any:
        """`_push` one record and wait until it is applied; returns what its application returned.

        :raises StorageFailed: its commit failed (the engine failed-stop).
        """
        box: list[Any] = []
        wait = self.push(q, lsn, rtype, body, job_id=job_id, new=new, box=box)
        if wait is not None:
            await self.committed(wait)
        if not box:  # the commit failed and the engine failed-stop meanwhile
            raise StorageFailed(str(self.failure or "the record was not applied"))
        return box[0]

    async def committed(self, fut: Awaitable[None]) -> None:
        try:
            await fut
        except StorageError as exc:
            raise StorageFailed(str(exc)) from None

    async def settle(self, job_id: str) -> None:
        """Wait until no record about ``job_id`` waits for its commit (validate against its outcome)."""
        while (lsn := self.inflight.get(job_id)) is not None:
            job = self.state.table.get(job_id)
            if job is None:
                self.inflight.pop(job_id, None)
                return
            log_ = self.state.queues[job.queue].log
            await self.committed(log_.commit(lsn) or log_.flush())

    async def settle_key(self, q: Queue, key: str) -> None:
        while (lsn := self.inflight_keys.get((q.name, key))) is not None:
            await self.committed(q.log.commit(lsn) or q.log.flush())
