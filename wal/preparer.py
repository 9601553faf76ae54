"""The preparer thread: creates each log's next segment ahead of time, and retries on a full disk.

A roll then only maps a ready file and writes its header, so the writer never waits on
`posix_fallocate`. When allocation fails with ENOSPC the storage is "low on space": plain appends
stop at the reserve line (`NoSpaceError`), reserved appends continue, and the preparer retries every
``space_retry_ms`` until an allocation succeeds again.
"""

from __future__ import annotations

import collections
import errno
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .log import FileQueueLog

logger = logging.getLogger("spitfire.wal")

#: errno values that mean "the disk (or the quota) is full".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class Preparer:
    """One thread per `FileStorage` that prepares next segments for all logs."""

    def __init__(self, retry_seconds: float) -> None:
        self._retry = retry_seconds
        self._queue: collections.deque[FileQueueLog] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        #: Set when an allocation failed for lack of space, cleared when one succeeds again.
        #: Written by the preparer (and by a synchronous preparation on the loop); a bool is atomic.
        self.low_on_space = False
        self._thread = threading.Thread(target=self._run, name="spitfire-wal-preparer", daemon=True)
        self._thread.start()

    def request(self, log: FileQueueLog) -> None:
        """Ask for ``log``'s next segment (loop thread)."""
        self._queue.append(log)
        self._wake.set()

    def kick(self) -> None:
        """Retry failed allocations now instead of at the next retry tick (tests, operators)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread (blocks until it exits)."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _stop_requested(self) -> bool:
        return self._stopping

    def _run(self) -> None:
        failed: list[FileQueueLog] = []
        while True:
            self._wake.wait(self._retry if failed else None)
            self._wake.clear()
            if self._stopping:
                return
            work = failed
            failed = []
            while self._queue:
                work.append(self._queue.popleft())
            was_low = self.low_on_space
            no_space = False
            errors: list[tuple[FileQueueLog, OSError]] = []
            for log in dict.fromkeys(work):  # each log once, in order
                if self._stop_requested():
                    return
                error = log._prepare_next()
                if error is not None:
                    failed.append(log)
                    errors.append((log, error))
                    if error.errno in NO_SPACE_ERRNOS:
                        # Raise the flag before anything else (logging included): a writer that
                        # reaches its roll in the meantime must see it and refuse plain appends.
                        self.low_on_space = no_space = True
            # Cleared only when nothing failed and nothing new is queued (a synchronous preparation on
            # the loop may have failed and raised the flag during this round; its retry is queued).
            low = no_space or (self.low_on_space and bool(failed or self._queue))
            self.low_on_space = low
            for log, error in errors:
                logger.warning("cannot prepare the next segment of queue %r: %s", log.queue, error)
            if no_space and not was_low:
                logger.error(
                    "disk full: cannot allocate new WAL segments; new jobs are refused until disk space "
                    "is freed (acks and failures still use the reserved space)"
                )
            elif was_low and not low:
                logger.warning("disk space is available again; new jobs are accepted")
