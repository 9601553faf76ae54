"""The storage interface the engine programs against.

Two implementations satisfy it: the file engine (`spitfire.wal.FileStorage`: mmap'd segments,
group commit, snapshots, recovery) and the in-memory backend (`spitfire.wal.MemoryStorage`) used by
unit tests of the engine. The same engine test suite runs against both.

The storage layer knows nothing of jobs: a log holds typed records (a record type byte and an opaque
body of bytes) numbered by a log sequence number (LSN), and a snapshot holds opaque chunks. What the
bodies mean is the engine's business (`spitfire.server.records`, documented in `wal/FORMAT.md`).

Time is never read here; the engine passes `now` where it matters.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec


class Durability(enum.Enum):
    """When an append counts as committed (README.md, "Durability")."""

    #: One fsync per write: each record is acknowledged after an fdatasync of its own.
    SYNC = "sync"
    #: Acknowledged after the fsync that covers the record; concurrent writes share one fsync.
    GROUP = "group"
    #: Acknowledged once in the mmap (survives a process crash, not a power loss); fsync on a timer.
    ASYNC = "async"


class StorageError(Exception):
    """Base class of every error raised by the storage layer."""


class NoSpaceError(StorageError):
    """The disk is full: a new segment could not be allocated.

    Raised for plain appends (new jobs) first; appends marked ``reserved=True`` (acks, failures,
    cancels) keep committing into the space held back for them until that runs out too.
    """


class LogClosedError(StorageError):
    """The log was closed; nothing more can be appended."""


class RecordTooLargeError(StorageError):
    """A record is larger than a segment can ever hold; split it or raise the segment size."""


#: What a `CorruptLogError` tells the operator to do unless the raiser knows better.
REPAIR_HINT = (
    "To drop only the damaged records and keep every record that checks out, run: "
    "spitfire-server repair --data-dir <DIR> (--dry-run shows the plan; it asks first; --yes skips "
    "the question)"
)


class CorruptLogError(StorageError):
    """A log or snapshot is damaged somewhere recovery must not guess.

    ``path`` and ``offset`` name the first bad byte; start-up stops and the message tells the
    operator what to do: by default, run ``spitfire-server repair --data-dir DIR`` (``hint``
    replaces that advice).
    """

    def __init__(self, path: str, offset: int, reason: str, hint: str = REPAIR_HINT) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path} is damaged at byte offset {offset}: {reason}. {hint}")


class UnsupportedFormatError(StorageError):
    """A file was written by a format version this build does not read."""

    def __init__(self, path: str, version: int, supported: int) -> None:
        self.path = path
        self.version = version
        super().__init__(
            f"{path} has format version {version}; this spitfire-server reads version {supported}. "
            "Run the spitfire-server release that wrote it, or a newer one."
        )


class LogRecord(msgspec.Struct, gc=False):
    """One record read back from a log during recovery.

    A msgspec Struct rather than a dataclass: recovery makes one per record, and a Struct is built
    in C (several times faster than a dataclass ``__init__``) and never tracked by the GC.
    """

    #: Log sequence number: 1 for the first record ever appended to the queue's log, then +1 each.
    lsn: int
    #: The record type byte (1..255; 0 is never a valid type).
    rtype: int
    #: The record body exactly as appended.
    body: bytes


def _nowhere(lsn: int) -> tuple[str, int] | None:
    """`Recovery.locate` of a storage that has no files."""
    return None


@dataclass(slots=True)
class Recovery:
    """What a queue's log held when it was opened: the newest usable snapshot and the records after it.

    Apply ``snapshot_chunks`` first (in order), then ``records`` (in LSN order). Records may
    overlap what the snapshot already reflects (snapshots are fuzzy), so applying them must be
    idempotent: the engine skips a record whose LSN is not newer than what it already applied.
    """

    #: LSN the snapshot was started at (0 when there is no snapshot): it reflects at least every
    #: record up to and including this LSN.
    snapshot_lsn: int = 0
    #: The snapshot's chunks in the order they were added (empty when there is no snapshot).
    snapshot_chunks: Iterable[bytes] = field(default_factory=list)
    #: The log's records with LSN greater than ``snapshot_lsn``, in order.
    records: Iterable[LogRecord] = field(default_factory=list)
    #: Human-readable notes about what recovery did (torn tail cut, snapshot skipped, ...).
    notes: list[str] = field(default_factory=list)
    #: Where the record with a given LSN is stored: (file path, byte offset of its header), or None
    #: when the storage has no files or no longer holds it. Only for error messages (the engine
    #: names the file and offset of a record it cannot decode): it may read the file again.
    locate: Callable[[int], tuple[str, int] | None] = _nowhere


class SnapshotWriter(Protocol):
    """Writes one snapshot of a queue without stalling the event loop."""

    @property
    def lsn(self) -> int:
        """The LSN this snapshot was started at."""
        ...

    def add(self, chunk: bytes) -> None:
        """Queue one chunk for writing; it is framed and checksummed like a log record."""
        ...

    async def finish(self) -> None:
        """Make the snapshot durable (fsync, rename, directory fsync), then drop what it covers.

        After this returns, recovery may use the snapshot. Compaction keeps the previous snapshot
        and every segment it still needs, so that recovery can fall back to it.
        """
        ...

    def abort(self) -> None:
        """Discard a snapshot that will not be finished; nothing it wrote is ever used."""
        ...


class QueueLog(Protocol):
    """One queue's durable, append-only record log.

    Appends are synchronous and never block the loop: they copy the record into memory (the mmap)
    and return its LSN. Durability is awaited separately with `commit`, so the engine can validate,
    append and apply a change in one step and then wait, and so many appends share one fsync.
    """

    @property
    def queue(self) -> str:
        """The queue this log belongs to."""
        ...

    @property
    def durability(self) -> Durability:
        """The queue's current durability mode."""
        ...

    def set_durability(self, mode: Durability) -> None:
        """Change the mode for appends from now on (the engine logs the change itself)."""
        ...

    @property
    def last_lsn(self) -> int:
        """LSN of the newest appended record (0 when the log is empty)."""
        ...

    @property
    def low_on_space(self) -> bool:
        """True while plain appends are refused with `NoSpaceError` (the disk is full)."""
        ...

    def append(self, rtype: int, body: bytes, *, reserved: bool = False) -> int:
        """Append one record and return its LSN; it is not yet durable.

        ``reserved=True`` marks a completion (ack, failure, cancel): it may use the space held
        back for completions, so it still succeeds after plain appends start failing.

        :raises NoSpaceError: the disk is full (plain appends first, reserved ones last).
        :raises RecordTooLargeError: the record can never fit in a segment.
        :raises LogClosedError: the log is closed.
        """
        ...

    def set_listener(
        self, on_durable: Callable[[int], None], on_failed: Callable[[StorageError], None]
    ) -> None:
        """Be told on the event loop how durability advances: ``on_durable(lsn)`` each time the
        records up to ``lsn`` became durable, before any commit future of those records completes
        (so that whoever applies committed records sees them before their writers are answered);
        ``on_failed(error)`` once, when the log can no longer make records durable (a failed
        fdatasync): no record after the last ``on_durable`` LSN ever will be. A log reports records
        in LSN order and never the same LSN twice.
        """
        ...

    def commit(self, lsn: int) -> asyncio.Future[None] | None:
        """A future that completes once the record at ``lsn`` is durable under the queue's mode.

        Returns None when there is nothing to wait for (the record is already durable, or the
        queue's mode is `Durability.ASYNC`). The future fails with `StorageError` if the fsync
        fails; the record must then be treated as not written.
        """
        ...

    def snapshot(self, lsn: int | None = None) -> SnapshotWriter:
        """Start a snapshot that will reflect every record up to ``lsn`` (default: `last_lsn`).

        The engine passes the LSN it has applied, which may be below `last_lsn` while appended
        records wait for their commit: the snapshot must not claim records it does not reflect.
        """
        ...

    async def flush(self) -> None:
        """Make everything appended so far durable, whatever the mode (used at shutdown)."""
        ...


class Storage(Protocol):
    """All queues' logs under one data directory (or in memory)."""

    def queues(self) -> list[str]:
        """Names of the queues that have a log, in sorted order."""
        ...

    def open_log(self, queue: str, durability: Durability) -> tuple[QueueLog, Recovery]:
        """Open (creating if needed) the queue's log and return it with what recovery found.

        Must be called from the running event loop (the log resolves commit futures on it).

        :raises CorruptLogError: damage that recovery must not guess about.
        :raises UnsupportedFormatError: a file from a format version this build cannot read.
        """
        ...

    def open_system_log(self, name: str, durability: Durability) -> tuple[QueueLog, Recovery]:
        """`open_log` for a log of the server's own (e.g. ``schedules``), kept apart from the queues:
        under ``<data-dir>/meta/<name>/`` with the same layout, never listed by `queues`, so no
        queue name can collide with it. Its `QueueLog.queue` is ``meta/<name>``.
        """
        ...

    async def create_log(self, queue: str, durability: Durability) -> QueueLog:
        """`open_log` for a queue created while the server runs: its files are created and made
        durable without blocking the event loop. One call per queue at a time (the caller dedupes).

        :raises NoSpaceError: the disk has no room for the queue's first segment.
        :raises LogClosedError: the storage was closed meanwhile.
        """
        ...

    async def drop_log(self, queue: str) -> None:
        """Close the queue's log and delete its files durably, without blocking the event loop (the
        queue was deleted). Crash-safe: after a crash at any point the queue's files are either all
        there, or gone (what is left of them is removed at the next start, never opened). Waiters
        of records not yet committed fail with `LogClosedError`. Afterwards the storage has
        forgotten the queue: `queues` does not list it, and `create_log` makes a new, empty log.

        :raises StorageError: the files could not be removed (they are retried at the next start).
        """
        ...

    async def close(self) -> None:
        """Stop accepting appends, make everything durable, release files and threads."""
        ...
