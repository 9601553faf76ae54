"""The preparer thread: creates each log's next segment ahead of time, and retries on a full disk.

A roll then only maps a ready file and writes its header, so the writer never waits on
`posix_fallocate`. When allocation fails with ENOSPC the storage is "low on space": plain appends
stop at the reserve line (`NoSpaceError`), reserved appends continue, and the preparer retries every
``space_retry_ms`` until an allocation succeeds again.

The preparer runs *tasks*: callables that try to allocate something and return the `OSError` that
stopped them (None on success). A log's task prepares its next segment; the storage's probe task
(after a queue creation failed for lack of space) allocates and deletes a small file. The preparer
knows nothing else of logs, so it imports no module that imports it back.
"""

from __future__ import annotations

import collections
import errno
import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("spitfire.wal")

#: errno values that mean "the disk (or the quota) is full".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

#: An allocation to try on the preparer thread: returns the error that stopped it, None once done.
#: Requesting the same callable object again while it is queued or failing runs it once.
PrepareTask = Callable[[], OSError | None]


class Preparer:
    """One thread per `FileStorage` that prepares next segments for all logs."""

    def __init__(self, retry_seconds: float) -> None:
        self._retry = retry_seconds
        #: (task, what it prepares: for log messages), in request order.
        self._queue: collections.deque[tuple[PrepareTask, str]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        #: Set when an allocation failed for lack of space, cleared when one succeeds again.
        #: Written by the preparer (and by a synchronous preparation on the loop); a bool is atomic.
        self.low_on_space = False
        self._thread = threading.Thread(target=self._run, name="spitfire-wal-preparer", daemon=True)
        self._thread.start()

    def request(self, task: PrepareTask, what: str) -> None:
        """Run ``task`` on the preparer thread, and again every retry interval while it fails (any
        thread). ``what`` names what it prepares in log messages, e.g. "the next segment of queue 'a'"."""
        self._queue.append((task, what))
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
        failed: dict[PrepareTask, str] = {}
        while True:
            self._wake.wait(self._retry if failed else None)
            self._wake.clear()
            if self._stopping:
                return
            work = failed  # each task once, in order (a dict keeps the first insertion's place)
            failed = {}
            while self._queue:
                task, what = self._queue.popleft()
                work.setdefault(task, what)
            was_low = self.low_on_space
            no_space = False
            errors: list[tuple[str, OSError]] = []
            for task, what in work.items():
                if self._stop_requested():
                    return
                error = task()
                if error is not None:
                    failed[task] = what
                    errors.append((what, error))
                    if error.errno in NO_SPACE_ERRNOS:
                        # Raise the flag before anything else (logging included): a writer that
                        # reaches its roll in the meantime must see it and refuse plain appends.
                        self.low_on_space = no_space = True
            # Cleared only when nothing failed and nothing new is queued (a synchronous preparation on
            # the loop may have failed and raised the flag during this round; its retry is queued).
            low = no_space or (self.low_on_space and bool(failed or self._queue))
            self.low_on_space = low
            for what, error in errors:
                logger.warning("cannot prepare %s: %s", what, error)
            if no_space and not was_low:
                logger.error(
                    "disk full: cannot allocate new WAL segments; new jobs are refused until disk space "
                    "is freed (acks and failures still use the reserved space)"
                )
            elif was_low and not low:
                logger.warning("disk space is available again; new jobs are accepted")
