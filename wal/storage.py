"""`FileStorage`: every queue's log under ``<data-dir>/queues/<queue>/{wal,snapshots}/``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .api import Durability, LogClosedError, NoSpaceError, Recovery, StorageError
from .config import WalConfig
from .constants import (
    QUEUE_NAME_RE,
    QUEUE_NAME_RULE,
    QUEUES_DIR,
    SEGMENT_HEADER_SIZE,
    SEGMENT_NAME_RE,
    SNAPSHOT_NAME_RE,
    SNAPSHOTS_DIR,
    SYSTEM_DIR,
    SYSTEM_PREFIX,
    TOMBSTONE_PREFIX,
    WAL_DIR,
)
from .format import HeaderError, decode_segment_header, is_zero
from .log import Context, FileQueueLog
from .preparer import NO_SPACE_ERRNOS, PrepareTask
from .recovery import RecoveredLog, recover
from .segment import PreparedFile, Segment, fsync_dir, prepare_file
from .stats import FlushStats

logger = logging.getLogger("spitfire.wal")


@dataclass(frozen=True)
class _LogFiles:
    """What opening a queue's log found and prepared on disk, before the log object exists."""

    queue_dir: Path
    found: RecoveredLog
    segment: Segment
    #: Where the next record goes in ``segment``.
    offset: int

    def discard(self) -> None:
        """Release the segment's file (the open was abandoned). The file stays: another open of the
        queue may be using it, and recovery treats an unused segment as empty."""
        self.segment.close()


def check_queue_name(queue: str) -> None:
    """Raise ValueError unless ``queue`` is a valid queue name (it is also a directory name)."""
    if not isinstance(queue, str) or not QUEUE_NAME_RE.match(queue):
        raise ValueError(f"invalid queue name {queue!r}: {QUEUE_NAME_RULE}")


#: Scratch file in the data directory that the space probe allocates and deletes (beside
#: ``queues/``, on the same file system, where nothing that lists the queues sees it).
_PROBE_NAME = ".space-probe"


def _holds_log(queue_dir: Path) -> bool:
    """Whether a queue directory holds a log: a snapshot, or a segment file that is not an unused one
    (a file with a valid header, an unknown version, or any non-zero byte: damage is for recovery to
    report, never to hide). Usually one 64-byte read."""
    try:
        snapshots = os.listdir(queue_dir / SNAPSHOTS_DIR)
    except (FileNotFoundError, NotADirectoryError):
        snapshots = []
    if any(SNAPSHOT_NAME_RE.match(name) for name in snapshots):
        return True
    try:
        names = sorted(os.listdir(queue_dir / WAL_DIR))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(_segment_holds_data(queue_dir / WAL_DIR / n) for n in names if SEGMENT_NAME_RE.match(n))


def _segment_holds_data(path: Path) -> bool:
    with open(path, "rb") as f:
        try:
            decode_segment_header(f.read(SEGMENT_HEADER_SIZE))
        except HeaderError as exc:
            if exc.version is not None:
                return True
        else:
            return True
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return False
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:
            return not is_zero(mm, 0, size)


def _remove_quietly(directory: Path, *, fsync: bool) -> None:
    """Remove a directory tree being created, and make the removal durable (errors are logged)."""
    try:
        shutil.rmtree(directory)
        if fsync:
            fsync_dir(directory.parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.error("could not remove %s after a failed queue creation: %s", directory, exc)


def _remove_tombstone(tomb: Path) -> None:
    """Remove what a queue deletion left (its directory, renamed); errors are logged, not raised:
    a tombstone that stays is harmless and removed at the next start."""
    try:
        shutil.rmtree(tomb)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.error("could not remove %s (a deleted queue's files): %s; retried at next start", tomb, exc)


class FileStorage:
    """The file engine: satisfies `Storage` (mmap'd segments, group commit, snapshots, recovery).

    One flusher thread and one preparer thread serve all logs; they start with the first
    `open_log` (which must run on the event loop that will await commits) and stop in `close`.
    """

    def __init__(self, data_dir: str | Path, config: WalConfig | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.config = config if config is not None else WalConfig()
        self._logs: dict[str, FileQueueLog] = {}
        #: Queues whose files `drop_log` is removing (or failed to remove): not openable meanwhile.
        self._dropping: set[str] = set()
        self._ctx: Context | None = None
        self._closed = False
        self._flush_stats = FlushStats()
        #: Retried by the preparer after a queue creation failed for lack of space (one object:
        #: the preparer runs a task requested many times once).
        self._probe_task: PrepareTask = self._probe_space

    @property
    def flush_stats(self) -> FlushStats:
        """Group-commit figures since this storage was created: flush rounds (records, bytes and
        fdatasync seconds of each) and the commit latency of each group. Written by the flusher
        thread; read them from any thread (`FlushStats` says how torn a read can be)."""
        return self._flush_stats

    @property
    def queues_dir(self) -> Path:
        """``<data-dir>/queues``."""
        return self.data_dir / QUEUES_DIR

    def queues(self) -> list[str]:
        """`Storage.queues`: the queue directories that hold a log. A directory that holds neither a
        segment nor a snapshot (left by an interrupted queue creation, or by an older build after a
        creation refused for lack of space) is no queue: it is skipped, and replaced if the queue is
        created again, so that it can never stop start-up. Tombstones (``.deleted-*``: what a queue
        deletion interrupted by a crash left) are removed here, before anything is opened."""
        try:
            names = os.listdir(self.queues_dir)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(TOMBSTONE_PREFIX):
                logger.info("removing %s: the files of a queue deleted before the restart", name)
                _remove_tombstone(self.queues_dir / name)
        return sorted(n for n in names if QUEUE_NAME_RE.match(n) and _holds_log(self.queues_dir / n))

    @property
    def low_on_space(self) -> bool:
        """True while new jobs may be refused for lack of disk space (`NoSpaceError`): a segment or a
        new queue's files could not be allocated, and no retry has succeeded since. Cheap (one
        attribute read, any thread): meant for readiness checks."""
        return self._ctx is not None and self._ctx.preparer.low_on_space

    def open_log(self, queue: str, durability: Durability) -> tuple[FileQueueLog, Recovery]:
        self._check_openable(queue)
        ctx = self._context()
        files = self._recover_files(queue)
        return self._install(ctx, queue, durability, files), files.found.recovery

    def open_system_log(self, name: str, durability: Durability) -> tuple[FileQueueLog, Recovery]:
        """`Storage.open_system_log`: ``<data-dir>/meta/<name>/``, recovered like a queue's log."""
        check_queue_name(name)
        key = SYSTEM_PREFIX + name
        if self._closed:
            raise LogClosedError("storage is closed")
        if key in self._logs:
            raise StorageError(f"log {key!r} is already open")
        ctx = self._context()
        files = self._recover_files(key, self.data_dir / SYSTEM_DIR / name)
        return self._install(ctx, key, durability, files), files.found.recovery

    async def create_log(self, queue: str, durability: Durability) -> FileQueueLog:
        """`Storage.create_log`: recovery's scan, the first segment's preallocation and the fsyncs of
        a new queue's files run in a worker thread (about 4 fsyncs: 5-20 ms on the loop otherwise)."""
        self._check_openable(queue)
        ctx = self._context()
        files = await asyncio.to_thread(self._recover_files, queue)
        if self._closed or queue in self._logs:
            files.discard()
            self._check_openable(queue)
        return self._install(ctx, queue, durability, files)

    def _check_openable(self, queue: str) -> None:
        check_queue_name(queue)
        if self._closed:
            raise LogClosedError("storage is closed")
        if queue in self._logs:
            raise StorageError(f"log of queue {queue!r} is already open")
        if queue in self._dropping:
            raise StorageError(
                f"the files of deleted queue {queue!r} are being removed or could not be removed (see "
                "the log); the queue can be created again once they are gone (at the latest after a restart)"
            )

    def _recover_files(self, queue: str, queue_dir: Path | None = None) -> _LogFiles:
        """The blocking part of opening a log: touches only that queue's files (safe in a thread).
        ``queue_dir``: where the log lives (default ``queues/<queue>``)."""
        queue_dir = self.queues_dir / queue if queue_dir is None else queue_dir
        if not _holds_log(queue_dir):
            return self._create_files(queue, queue_dir)
        found = recover(queue_dir, fsync=self.config.fsync)
        if found.segments and not found.sealed:
            info = found.segments[-1]
            fd = os.open(info.path, os.O_RDWR | os.O_CLOEXEC)
            seg = Segment(info.number, info.path, fd, info.size, info.base_lsn)
            return _LogFiles(queue_dir, found, seg, info.end)
        # Only a snapshot is left (every segment was lost): the log continues after it. Its files are
        # kept whatever happens: they hold the queue's jobs.
        try:
            prepared = self._first_segment(queue_dir / WAL_DIR, found.next_number, found.last_lsn + 1)
        except OSError as exc:
            self._refused(queue, exc)
            raise
        return _LogFiles(
            queue_dir, found, Segment.activate(prepared, found.last_lsn + 1), SEGMENT_HEADER_SIZE
        )

    def _create_files(self, queue: str, queue_dir: Path) -> _LogFiles:
        """Make a new queue's directory and first segment, durably, or leave nothing behind.

        Order: ``queues/<q>/`` (then its parent is fsynced), ``wal/`` and ``snapshots/`` in it (then
        it is fsynced), then the first segment with its header (file and ``wal/`` fsynced). A crash
        part way leaves a directory without a segment, which `queues` skips and this replaces.
        """
        fsync = self.config.fsync
        if queue_dir.exists():
            logger.info("replacing %s: it holds no log (left by an interrupted queue creation)", queue_dir)
            shutil.rmtree(queue_dir)
        parent = queue_dir.parent
        new_parent = not parent.is_dir()
        parent.mkdir(parents=True, exist_ok=True)
        if new_parent and fsync:
            fsync_dir(self.data_dir)
        try:
            queue_dir.mkdir()
            if fsync:
                fsync_dir(parent)
            (queue_dir / WAL_DIR).mkdir()
            (queue_dir / SNAPSHOTS_DIR).mkdir()
            if fsync:
                fsync_dir(queue_dir)
            prepared = self._first_segment(queue_dir / WAL_DIR, 0, 1)
        except OSError as exc:
            _remove_quietly(queue_dir, fsync=fsync)
            self._refused(queue, exc)
            raise
        found = RecoveredLog(Recovery(), [], 0, 1)
        return _LogFiles(queue_dir, found, Segment.activate(prepared, 1), SEGMENT_HEADER_SIZE)

    def _first_segment(self, wal_dir: Path, number: int, base_lsn: int) -> PreparedFile:
        """A log's first segment, small (`WalConfig.initial_segment_size`), with a durable header."""
        size = self.config.initial_segment_size
        return prepare_file(wal_dir, number, size, fsync=self.config.fsync, base_lsn=base_lsn)

    def _refused(self, queue: str, exc: OSError) -> None:
        """A log's first segment could not be allocated: if for lack of space, the storage is low on
        space until a probe allocation succeeds (retried by the preparer), and NoSpaceError is raised."""
        if exc.errno not in NO_SPACE_ERRNOS:
            return
        if self._ctx is not None:
            self._ctx.preparer.low_on_space = True
            self._ctx.preparer.request(self._probe_task, "a new queue's first segment")
        raise NoSpaceError(
            f"disk full: cannot create the log of queue {queue!r} ({exc.strerror}); free disk space "
            f"under {self.data_dir} so that new queues can be created"
        ) from exc

    def _probe_space(self) -> OSError | None:
        """Preparer thread: allocate (then delete) a file the size of a new queue's first segment."""
        probe = self.data_dir / _PROBE_NAME
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            return exc
        try:
            os.posix_fallocate(fd, 0, self.config.initial_segment_size)
        except OSError as exc:
            return exc
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)
        return None

    def _install(self, ctx: Context, queue: str, durability: Durability, files: _LogFiles) -> FileQueueLog:
        found, seg = files.found, files.segment
        segments = [(s.number, s.base_lsn) for s in found.segments]
        if not segments or segments[-1][0] != seg.number:  # a new segment (new log, or the last sealed)
            segments.append((seg.number, seg.base_lsn))
        log = FileQueueLog(
            ctx, queue, files.queue_dir, durability, seg, files.offset, found.last_lsn, segments
        )
        self._logs[queue] = log
        return log

    async def drop_log(self, queue: str) -> None:
        """`Storage.drop_log`: close the log, then, in a worker thread, rename ``queues/<queue>`` to a
        tombstone (``queues/.deleted-<queue>-<n>``, never a queue name), fsync ``queues/``, and remove
        the tombstone. After the rename's fsync the queue is gone for good (a crash later leaves a
        tombstone, which `queues` removes at start); before it, the directory is the queue's, whole.

        :raises StorageError: the rename failed (the files stay; the queue cannot be created again
            until a restart, and the engine treats a log ending in its deletion record as deleted).
        """
        check_queue_name(queue)
        if queue in self._dropping:
            raise StorageError(f"the files of queue {queue!r} are already being removed")
        self._dropping.add(queue)
        log = self._logs.pop(queue, None)
        if log is not None:
            log.close()  # waiters of unsealed records fail; sealed groups finish on their own
        try:
            await asyncio.to_thread(self._bury, queue)
        except OSError as exc:
            raise StorageError(
                f"could not remove the files of deleted queue {queue!r} under {self.queues_dir}: {exc}"
            ) from exc
        self._dropping.discard(queue)

    def _bury(self, queue: str) -> None:
        """Worker thread: rename the queue's directory to a tombstone, make that durable, remove it."""
        queue_dir = self.queues_dir / queue
        if not queue_dir.exists():
            return
        tomb = self.queues_dir / f"{TOMBSTONE_PREFIX}{queue}-{time.time_ns()}"
        os.rename(queue_dir, tomb)
        if self.config.fsync:
            fsync_dir(self.queues_dir)  # the commit point: from here on the queue is gone
        _remove_tombstone(tomb)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        logs = list(self._logs.values())
        self._logs.clear()
        results = await asyncio.gather(*(log.flush() for log in logs), return_exceptions=True)
        for log, result in zip(logs, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("could not flush the log of queue %r at shutdown: %s", log.queue, result)
        for log in logs:
            log.close()
        if self._ctx is not None:
            await asyncio.to_thread(self._ctx.stop)
            await asyncio.sleep(0)  # let the flusher's last resolve callback run

    def _context(self) -> Context:
        loop = asyncio.get_running_loop()
        if self._ctx is None:
            self._ctx = Context(loop, self.config, self._flush_stats)
        elif self._ctx.loop is not loop:
            raise StorageError("FileStorage is bound to another event loop")
        return self._ctx

    def get_log(self, queue: str) -> FileQueueLog | None:
        """The open log of ``queue``, if any."""
        return self._logs.get(queue)
