"""`FileStorage`: every queue's log under ``<data-dir>/queues/<queue>/{wal,snapshots}/``."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from .api import Durability, LogClosedError, Recovery, StorageError
from .config import WalConfig
from .constants import QUEUE_NAME_RE, QUEUES_DIR, SEGMENT_HEADER_SIZE, WAL_DIR
from .log import Context, FileQueueLog
from .recovery import recover
from .segment import Segment, fsync_dir, prepare_file
from .stats import FlushStats

logger = logging.getLogger("spitfire.wal")


def check_queue_name(queue: str) -> None:
    """Raise ValueError unless ``queue`` is a valid queue name (it is also a directory name)."""
    if not isinstance(queue, str) or not QUEUE_NAME_RE.match(queue):
        raise ValueError(
            f"invalid queue name {queue!r}: use 1 to 128 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )


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
        check_queue_name(queue)
        if self._closed:
            raise LogClosedError("storage is closed")
        if queue in self._logs:
            raise StorageError(f"log of queue {queue!r} is already open")
        ctx = self._context()
        queue_dir = self.queues_dir / queue
        created = not queue_dir.exists()
        found = recover(queue_dir, fsync=self.config.fsync)
        if created and self.config.fsync:
            fsync_dir(self.queues_dir)
            fsync_dir(self.data_dir)
        if found.segments:
            info = found.segments[-1]
            fd = os.open(info.path, os.O_RDWR | os.O_CLOEXEC)
            seg = Segment(info.number, info.path, fd, info.size, info.base_lsn)
            offset = info.end
        else:
            prepared = prepare_file(
                queue_dir / WAL_DIR, found.next_number, self.config.segment_size, fsync=self.config.fsync
            )
            seg = Segment.activate(prepared, self.config.segment_size, found.last_lsn + 1)
            offset = SEGMENT_HEADER_SIZE
        segments = [(s.number, s.base_lsn) for s in found.segments] or [(seg.number, seg.base_lsn)]
        log = FileQueueLog(ctx, queue, queue_dir, durability, seg, offset, found.last_lsn, segments)
        self._logs[queue] = log
        return log, found.recovery

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
