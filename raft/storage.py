"""The engine's `Storage` on a cluster's leader: every queue's log lives in the Raft log.

`ReplicatedStorage` satisfies `spitfire.wal.api.Storage` (and its logs `QueueLog`), so the engine
runs unchanged: it appends records, awaits their commit and applies them in LSN order once durable
(commit, then apply). Here "durable" means *committed*: on disk on a majority of the members.
Appends made during one pass of the event loop travel together as one Raft entry (`Batch`), so one
fdatasync per member (the journal's group commit) covers all of them: the Raft log is the WAL, no
record is written twice.

A leader starts its engine over what was committed before it took over (each log's newest snapshot
and the records after it, `spitfire.raft.snapshot.ReplicatedState.recovered`; or every committed
batch, `from_batches`), and each queue's log then continues from the LSN it had reached.

The engine's snapshots of a log go into the Raft log too (`spitfire.raft.snapshot.PartWriter`):
every member then drops the records they reflect, and a new leader opens each log from its newest
snapshot and the records after it, as a single node does. What a file engine does and this one does
not: durability modes are all "committed on a majority" (``async`` does not answer earlier); the
space checks of a full disk (``low_on_space``) are the journal's WAL's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterable

from spitfire.wal.api import (
    Durability,
    LogClosedError,
    LogRecord,
    RecordTooLargeError,
    Recovery,
    StorageError,
)
from spitfire.wal.constants import SYSTEM_PREFIX

from .batch import DROPPED, Batch, LeaderInfo, SnapshotPart
from .node import Commit
from .snapshot import PartWriter

__all__ = ["MAX_BATCH_BYTES", "NotLeaderError", "ReplicatedLog", "ReplicatedStorage"]

#: Largest record body accepted (a Raft entry travels whole; pysyncobj chunks big ones itself).
MAX_RECORD = 16 * 2**20
#: A batch is proposed early once its bodies reach this many bytes (so one entry stays modest).
MAX_BATCH_BYTES = 4 * 2**20

#: Seconds `ReplicatedLog.flush` waits for a commit at most.
FLUSH_TIMEOUT = 2.0

#: Proposes one batch; the callback says when it committed (or that it never will).
Propose = Callable[[Batch, Commit], None]


class NotLeaderError(StorageError):
    """The records were not committed: this member lost the leadership (they may still commit
    under the new leader, or be discarded); the client should retry on the leader."""


class ReplicatedLog:
    """One queue's (or system) log whose records are committed through Raft."""

    def __init__(self, storage: ReplicatedStorage, name: str, durability: Durability, last_lsn: int) -> None:
        self._storage = storage
        self._name = name
        self._durability = durability
        self._last_lsn = last_lsn
        self._durable_lsn = last_lsn
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._listener: tuple[Callable[[int], None], Callable[[StorageError], None]] | None = None
        self._failed: StorageError | None = None
        self._closed = False

    @property
    def queue(self) -> str:
        return self._name

    @property
    def durability(self) -> Durability:
        return self._durability

    def set_durability(self, mode: Durability) -> None:
        self._durability = mode

    @property
    def last_lsn(self) -> int:
        return self._last_lsn

    @property
    def low_on_space(self) -> bool:
        return self._storage.low_on_space

    def append(self, rtype: int, body: bytes, *, reserved: bool = False) -> int:
        if self._closed or self._failed is not None:
            raise LogClosedError(f"log {self._name!r} is {'failed' if self._failed else 'closed'}")
        if not 1 <= rtype <= 254:
            raise ValueError(f"record type must be 1..254, got {rtype}")
        if len(body) > MAX_RECORD:
            raise RecordTooLargeError(f"record of {len(body)} bytes exceeds the largest ({MAX_RECORD})")
        self._last_lsn += 1
        self._storage._add(self, self._last_lsn, rtype, bytes(body))
        return self._last_lsn

    def set_listener(
        self, on_durable: Callable[[int], None], on_failed: Callable[[StorageError], None]
    ) -> None:
        self._listener = (on_durable, on_failed)

    def commit(self, lsn: int) -> asyncio.Future[None] | None:
        # Every mode waits for the commit: a record on the leader's disk alone is not safe.
        if lsn <= self._durable_lsn:
            return None
        if lsn > self._last_lsn:
            raise ValueError(f"LSN {lsn} was never appended (last is {self._last_lsn})")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._failed is not None:
            future.set_exception(StorageError(str(self._failed)))
            return future
        self._waiters.append((lsn, future))
        return future

    def snapshot(self, lsn: int | None = None) -> PartWriter:
        return PartWriter(self._storage._add_part, self._name, self._durable_lsn if lsn is None else lsn)

    async def flush(self) -> None:
        """Wait for the commit of everything appended, at most `FLUSH_TIMEOUT` seconds: at shutdown
        a member without a majority cannot commit, and what it never answered needs no wait."""
        future = self.commit(self._last_lsn)
        if future is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, FLUSH_TIMEOUT)

    def _committed(self, lsn: int) -> None:
        if lsn <= self._durable_lsn or self._failed is not None:
            return
        self._durable_lsn = lsn
        if self._listener is not None:  # apply first, then answer the writers
            self._listener[0](lsn)
        waiters = self._waiters
        while waiters and waiters[0][0] <= lsn:
            future = waiters.popleft()[1]
            if not future.done():
                future.set_result(None)

    def _fail(self, error: StorageError) -> None:
        if self._failed is not None:
            return
        self._failed = error
        if self._listener is not None:
            self._listener[1](error)
        while self._waiters:
            future = self._waiters.popleft()[1]
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        """Closed (shutdown, a dropped queue): writers still waiting fail with `LogClosedError`;
        not a storage failure, so the listener is not told."""
        self._closed = True
        error = LogClosedError(f"log {self._name!r} is closed")
        while self._waiters:
            future = self._waiters.popleft()[1]
            if not future.done():
                future.set_exception(error)


class ReplicatedStorage:
    """Every log of the leader's engine, replicated through ``propose`` (`RaftNode.propose`)."""

    def __init__(
        self,
        propose: Propose,
        recovered: dict[str, Recovery] | None = None,
        *,
        space: Callable[[], bool] | None = None,
    ) -> None:
        self._propose_batch = propose
        self._recovered = recovered or {}
        self._space = space
        self._logs: dict[str, ReplicatedLog] = {}
        self._records: list[tuple[str, int, int, bytes]] = []
        self._marks: dict[ReplicatedLog, int] = {}
        self._parts: list[SnapshotPart] = []
        self._part_futures: list[asyncio.Future[None]] = []
        self._bytes = 0
        self._scheduled = False
        self._leader: LeaderInfo | None = None
        self._closed = False

    @classmethod
    def from_batches(
        cls, batches: Iterable[Batch], propose: Propose, *, space: Callable[[], bool] | None = None
    ) -> ReplicatedStorage:
        """A storage holding what ``batches`` (every committed entry, in order) wrote."""
        logs: dict[str, list[LogRecord]] = {}
        for batch in batches:
            for name, lsn, rtype, body in batch.records:
                if rtype == DROPPED:
                    logs.pop(name, None)
                else:
                    logs.setdefault(name, []).append(LogRecord(lsn, rtype, body))
        return cls(propose, {name: Recovery(0, [], records) for name, records in logs.items()}, space=space)

    @property
    def low_on_space(self) -> bool:
        return self._space() if self._space is not None else False

    def announce(self, leader: LeaderInfo) -> None:
        """Put where this leader serves into the next entry (followers point clients there)."""
        self._leader = leader
        self._schedule()

    # -- Storage --------------------------------------------------------------------------------------

    def queues(self) -> list[str]:
        return sorted(n for n in self._recovered if not n.startswith(SYSTEM_PREFIX))

    def open_system_log(self, name: str, durability: Durability) -> tuple[ReplicatedLog, Recovery]:
        return self.open_log(SYSTEM_PREFIX + name, durability)

    def open_log(self, queue: str, durability: Durability) -> tuple[ReplicatedLog, Recovery]:
        if self._closed:
            raise LogClosedError("storage is closed")
        if queue in self._logs:
            raise StorageError(f"log {queue!r} is already open")
        recovery = self._recovered.pop(queue, None) or Recovery()
        records = recovery.records
        if not isinstance(records, list):
            records = list(records)
            recovery = dataclasses.replace(recovery, records=records)
        last = max(recovery.snapshot_lsn, records[-1].lsn if records else 0)
        log_ = ReplicatedLog(self, queue, durability, last)
        self._logs[queue] = log_
        return log_, recovery

    async def create_log(self, queue: str, durability: Durability) -> ReplicatedLog:
        return self.open_log(queue, durability)[0]

    async def drop_log(self, queue: str) -> None:
        log_ = self._logs.pop(queue, None)
        if log_ is None:
            return
        self._records.append((queue, 0, DROPPED, b""))
        self._schedule()
        await log_.flush()  # the drop travels with (after) the log's last records
        log_.close()

    async def close(self) -> None:
        self._closed = True
        for log_ in self._logs.values():
            log_.close()
        self._logs.clear()

    # -- batching --------------------------------------------------------------------------------------

    def _add(self, log_: ReplicatedLog, lsn: int, rtype: int, body: bytes) -> None:
        self._records.append((log_.queue, lsn, rtype, body))
        self._marks[log_] = lsn
        self._bytes += len(body)
        if self._bytes >= MAX_BATCH_BYTES:
            self._propose()
        else:
            self._schedule()

    def _add_part(self, part: SnapshotPart) -> asyncio.Future[None]:
        """Put a piece of an engine snapshot into the current batch; the future is done once the
        batch is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parts.append(part)
        self._part_futures.append(future)
        self._bytes += len(part.data)
        if self._bytes >= MAX_BATCH_BYTES:
            self._propose()
        else:
            self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._propose)

    def _propose(self) -> None:
        """Propose what this loop pass appended as one entry."""
        self._scheduled = False
        if not self._records and self._leader is None and not self._parts:
            return
        batch = Batch(self._records, self._leader, self._parts)
        marks, futures = self._marks, self._part_futures
        self._records, self._marks, self._bytes, self._leader = [], {}, 0, None
        self._parts, self._part_futures = [], []

        def done(committed: bool, why: str | None) -> None:
            if committed:
                for log_, lsn in marks.items():
                    log_._committed(lsn)
                for future in futures:
                    if not future.done():
                        future.set_result(None)
            else:
                error = NotLeaderError(f"not committed: {why}")
                for log_ in marks:
                    log_._fail(error)
                for future in futures:
                    if not future.done():
                        future.set_exception(error)

        self._propose_batch(batch, done)
