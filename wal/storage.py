"""`FileStorage`: every queue's log under ``<data-dir>/queues/<queue>/{wal,snapshots}/``."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .api import Durability, LogClosedError, NoSpaceError, Recovery, StorageError
from .config import WalConfig
from .constants import QUEUE_NAME_RE, QUEUE_NAME_RULE, QUEUES_DIR, SEGMENT_HEADER_SIZE, WAL_DIR
from .log import Context, FileQueueLog
from .recovery import RecoveredLog, recover
from .segment import Segment, fsync_dir, prepare_file
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


class FileStorage:
    """The file engine: satisfies `Storage` (mmap'd segments, group commit, snapshots, recovery).

    One flusher thread and one preparer thread serve all logs; they start with the first
    `open_log` (which must run on the event loop that will await commits) and stop in `close`.
    """

    def __init__(self, data_dir: str | Path, config: WalConfig | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.config = config if config is not None else WalConfig()
        self._logs: dict[str, FileQueueLog] = {}
        self._ctx: Context | None = None
        self._closed = False
        self._flush_stats = FlushStats()

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
        try:
            names = os.listdir(self.queues_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if QUEUE_NAME_RE.match(n) and (self.queues_dir / n / WAL_DIR).is_dir())

    def open_log(self, queue: str, durability: Durability) -> tuple[FileQueueLog, Recovery]:
        self._check_openable(queue)
        ctx = self._context()
        files = self._recover_files(queue)
        return self._install(ctx, queue, durability, files), files.found.recovery

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

    def _recover_files(self, queue: str) -> _LogFiles:
        """The blocking part of opening a log: touches only that queue's files (safe in a thread)."""
        queue_dir = self.queues_dir / queue
        created = not queue_dir.exists()
        found = recover(queue_dir, fsync=self.config.fsync)
        if created and self.config.fsync:
            fsync_dir(self.queues_dir)
            fsync_dir(self.data_dir)
        if found.segments and not found.sealed:
            info = found.segments[-1]
            fd = os.open(info.path, os.O_RDWR | os.O_CLOEXEC)
            seg = Segment(info.number, info.path, fd, info.size, info.base_lsn)
            return _LogFiles(queue_dir, found, seg, info.end)
        try:
            prepared = prepare_file(
                queue_dir / WAL_DIR, found.next_number, self.config.segment_size, fsync=self.config.fsync
            )
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise NoSpaceError(f"no space left to create the log of queue {queue!r}") from exc
            raise
        seg = Segment.activate(prepared, self.config.segment_size, found.last_lsn + 1)
        return _LogFiles(queue_dir, found, seg, SEGMENT_HEADER_SIZE)

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

    def drop_log(self, queue: str) -> None:
        check_queue_name(queue)
        log = self._logs.pop(queue, None)
        if log is not None:
            log.close()
        queue_dir = self.queues_dir / queue
        if queue_dir.exists():
            shutil.rmtree(queue_dir)
            if self.config.fsync:
                fsync_dir(self.queues_dir)

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
