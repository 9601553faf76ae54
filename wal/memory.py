"""The in-memory storage backend: `Storage`, `QueueLog` and `SnapshotWriter` without files.

For unit tests of the engine only (never a stand-in for the product). It keeps
the semantics of the file engine that the engine relies on:

- LSNs start at 1 per queue log and grow by one per append;
- a snapshot is taken at the log's ``last_lsn`` when `QueueLog.snapshot` is called, becomes usable
  only when `SnapshotWriter.finish` returns, and an aborted snapshot is never used;
- recovery returns the newest finished snapshot plus every record after its LSN;
- ``low_on_space`` (plain appends refused) and ``out_of_space`` (reserved appends refused too) are
  switches a test flips on the shared `MemoryState` to simulate a full disk.

Everything lives in a `MemoryState`, so a test "restarts" by closing the storage and building a new
``MemoryStorage(state)`` over the same state. Records are durable as soon as they are committed
(`MemoryLog.commit` returns None), unless a test sets ``hold_commits`` to look at the engine while
records wait for their commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from .api import (
    Durability,
    LogClosedError,
    LogRecord,
    NoSpaceError,
    RecordTooLargeError,
    Recovery,
    StorageError,
)
from .constants import SYSTEM_PREFIX

#: Largest record body accepted, like a file engine with 64 MiB segments (minus framing).
DEFAULT_MAX_RECORD_SIZE = 64 * 2**20 - 64


@dataclass(slots=True)
class MemoryLogState:
    """Everything one queue's log holds; survives the `MemoryStorage` that wrote it."""

    #: Records after the newest finished snapshot as (lsn, type, body), oldest first. Plain tuples:
    #: the garbage collector stops tracking them, so a million records cost no collector passes.
    records: list[tuple[int, int, bytes]] = field(default_factory=list)
    #: LSN of the newest appended record.
    last_lsn: int = 0
    #: The newest finished snapshot: (lsn, chunks); None before the first one.
    snapshot: tuple[int, list[bytes]] | None = None
    #: Snapshots finished so far (tests assert on it).
    snapshots_finished: int = 0
    #: Snapshots aborted so far.
    snapshots_aborted: int = 0


@dataclass(slots=True)
class MemoryState:
    """The "disk" of the in-memory backend, shared by every `MemoryStorage` built over it."""

    logs: dict[str, MemoryLogState] = field(default_factory=dict)
    #: Simulates a full disk: plain appends raise `NoSpaceError`, reserved appends still succeed.
    low_on_space: bool = False
    #: Simulates the reserve running out too: every append raises `NoSpaceError`.
    out_of_space: bool = False
    #: Largest record body accepted; larger ones raise `RecordTooLargeError`.
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE
    #: False drops records after numbering them (memory benchmarks of the engine; no recovery).
    keep_records: bool = True
    #: True holds commits back: `QueueLog.commit` returns a future that completes only when a test
    #: calls `release_commits` (or fails in `fail_commits`), so that tests can look at the engine
    #: while records are appended but not yet durable.
    hold_commits: bool = False
    #: Held commits, oldest first: (log, lsn, future).
    held: list[tuple[MemoryLog, int, asyncio.Future[None]]] = field(default_factory=list)

    def release_commits(self, count: int | None = None) -> int:
        """Make the oldest ``count`` held commits (all when None) durable, in order: each log's
        listener hears of its records first, then their futures complete. Returns how many."""
        n = len(self.held) if count is None else min(count, len(self.held))
        batch, self.held = self.held[:n], self.held[n:]
        for log, lsn, future in batch:
            log._durable(lsn)
            if not future.done():
                future.set_result(None)
        return n

    def fail_commits(self, error: StorageError) -> int:
        """Fail every held commit as a failed fdatasync would: each log's listener is told once, and
        every future fails with ``error``. Returns how many commits failed."""
        batch, self.held = self.held, []
        for log, _lsn, future in batch:
            log._fail(error)
            if not future.done():
                future.set_exception(error)
        return len(batch)


class MemorySnapshotWriter:
    """Collects chunks; `finish` publishes them as the log's newest snapshot."""

    __slots__ = ("_chunks", "_done", "_log", "_lsn")

    def __init__(self, log: MemoryLog, lsn: int) -> None:
        self._log = log
        self._lsn = lsn
        self._chunks: list[bytes] = []
        self._done = False

    @property
    def lsn(self) -> int:
        return self._lsn

    def add(self, chunk: bytes) -> None:
        if self._done:
            raise StorageError("snapshot already finished or aborted")
        self._chunks.append(bytes(chunk))

    async def finish(self) -> None:
        if self._done:
            raise StorageError("snapshot already finished or aborted")
        self._done = True
        state = self._log._state
        current = state.snapshot
        if current is not None and current[0] > self._lsn:
            return  # a newer snapshot finished first; this one is never needed
        state.snapshot = (self._lsn, self._chunks)
        state.snapshots_finished += 1
        # Drop the records the snapshot covers (the file engine compacts segments the same way).
        keep = [r for r in state.records if r[0] > self._lsn]
        state.records = keep

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._log._state.snapshots_aborted += 1
            self._chunks = []


class MemoryLog:
    """One queue's log in memory."""

    __slots__ = (
        "_closed",
        "_durability",
        "_durable_lsn",
        "_failed",
        "_listener",
        "_queue",
        "_shared",
        "_state",
    )

    def __init__(
        self, queue: str, state: MemoryLogState, shared: MemoryState, durability: Durability
    ) -> None:
        self._queue = queue
        self._state = state
        self._shared = shared
        self._durability = durability
        self._closed = False
        self._durable_lsn = state.last_lsn
        self._failed: StorageError | None = None
        self._listener: tuple[Callable[[int], None], Callable[[StorageError], None]] | None = None

    def set_listener(
        self, on_durable: Callable[[int], None], on_failed: Callable[[StorageError], None]
    ) -> None:
        self._listener = (on_durable, on_failed)

    def _durable(self, lsn: int) -> None:
        if lsn > self._durable_lsn and self._failed is None:
            self._durable_lsn = lsn
            if self._listener is not None:
                self._listener[0](lsn)

    def _fail(self, error: StorageError) -> None:
        if self._failed is None:
            self._failed = error
            if self._listener is not None:
                self._listener[1](error)

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def durability(self) -> Durability:
        return self._durability

    def set_durability(self, mode: Durability) -> None:
        self._durability = mode

    @property
    def last_lsn(self) -> int:
        return self._state.last_lsn

    @property
    def low_on_space(self) -> bool:
        return self._shared.low_on_space or self._shared.out_of_space

    def append(self, rtype: int, body: bytes, *, reserved: bool = False) -> int:
        if self._closed or self._failed is not None:
            raise LogClosedError(f"log of queue {self._queue!r} is {'failed' if self._failed else 'closed'}")
        if not 1 <= rtype <= 255:
            raise ValueError(f"record type must be 1..255, got {rtype}")
        if len(body) > self._shared.max_record_size:
            raise RecordTooLargeError(
                f"record of {len(body)} bytes exceeds the largest possible ({self._shared.max_record_size})"
            )
        if self._shared.out_of_space or (self._shared.low_on_space and not reserved):
            raise NoSpaceError(f"no space left for queue {self._queue!r}")
        state = self._state
        lsn = state.last_lsn + 1
        if self._shared.keep_records:
            state.records.append((lsn, rtype, bytes(body)))
        state.last_lsn = lsn
        return lsn

    def commit(self, lsn: int) -> asyncio.Future[None] | None:
        if lsn <= self._durable_lsn or self._durability is Durability.ASYNC:
            return None
        if not self._shared.hold_commits:
            self._durable(lsn)
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._shared.held.append((self, lsn, future))
        return future

    def snapshot(self, lsn: int | None = None) -> MemorySnapshotWriter:
        if self._closed:
            raise LogClosedError(f"log of queue {self._queue!r} is closed")
        return MemorySnapshotWriter(self, self._state.last_lsn if lsn is None else lsn)

    async def flush(self) -> None:
        self._durable(self._state.last_lsn)
        held = self._shared.held
        mine = [entry for entry in held if entry[0] is self]
        self._shared.held = [entry for entry in held if entry[0] is not self]
        for _log, _lsn, future in mine:  # durable now: their writers may go on
            if not future.done():
                future.set_result(None)

    def close(self) -> None:
        self._closed = True


class MemoryStorage:
    """All queues' logs in a `MemoryState`; build a new one over the same state to "restart"."""

    def __init__(self, state: MemoryState | None = None) -> None:
        self.state = state if state is not None else MemoryState()
        self._logs: dict[str, MemoryLog] = {}
        self._closed = False

    def queues(self) -> list[str]:
        return sorted(n for n in self.state.logs if not n.startswith(SYSTEM_PREFIX))

    def open_system_log(self, name: str, durability: Durability) -> tuple[MemoryLog, Recovery]:
        """`Storage.open_system_log`: kept as log ``meta/<name>``, which `queues` never lists."""
        return self.open_log(SYSTEM_PREFIX + name, durability)

    def open_log(self, queue: str, durability: Durability) -> tuple[MemoryLog, Recovery]:
        if self._closed:
            raise LogClosedError("storage is closed")
        if queue in self._logs:
            raise StorageError(f"log of queue {queue!r} is already open")
        state = self.state.logs.get(queue)
        if state is None:
            state = self.state.logs[queue] = MemoryLogState()
        log = MemoryLog(queue, state, self.state, durability)
        self._logs[queue] = log
        lsn, chunks = state.snapshot if state.snapshot is not None else (0, [])
        records = (LogRecord(*r) for r in state.records if r[0] > lsn)
        recovery = Recovery(lsn, list(chunks), records)
        return log, recovery

    async def create_log(self, queue: str, durability: Durability) -> MemoryLog:
        return self.open_log(queue, durability)[0]

    async def drop_log(self, queue: str) -> None:
        log = self._logs.pop(queue, None)
        if log is not None:
            log.close()
        self.state.logs.pop(queue, None)

    async def close(self) -> None:
        self._closed = True
        for log in self._logs.values():
            log.close()
        self._logs.clear()
