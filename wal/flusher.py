"""Group commit: one flusher thread fdatasyncs the segments of every dirty log (wal/FORMAT.md).

Hand-off without locks on the hot path: the loop seals a log's open group at the end of a tick
(`FileQueueLog._seal`) and `submit`s it here: one `queue.SimpleQueue.put`, written in C. (A
`threading.Event` cost the loop 4 us per wake-up on an idle machine and 13 to 90 us on a busy one:
its Python-level condition variable makes the woken flusher contend for the Event's lock and the
GIL while the loop still holds both, a context-switch ping-pong per group.) The flusher thread
takes every queued group, runs one fdatasync per distinct segment file involved (many files in
parallel on a small thread pool: fdatasync releases the GIL), then makes ONE
``call_soon_threadsafe`` per round that calls each group's ``done`` callback on the loop. Futures
and durable-LSN bookkeeping live with the log, on the loop thread only: this module knows nothing of
logs (a group carries its callback), so it imports no module that imports it back.

Groups of a SYNC log are never merged: per round the flusher takes at most one group of a log that
has a SYNC group pending, so every SYNC record gets an fdatasync of its own, in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .segment import Segment
from .stats import FlushStats

logger = logging.getLogger("spitfire.wal")

#: An fdatasync slower than this is logged (etcd's warnSyncDuration, scaled to our latency target).
WARN_SYNC_SECONDS = 1.0


class Group:
    """Records of one log appended since the last seal, made durable by one round of the flusher."""

    __slots__ = ("done", "first_lsn", "future", "last_lsn", "nbytes", "opened", "segments", "start", "sync")

    def __init__(
        self, done: GroupDone, segment: Segment, first_lsn: int, sync: bool, start: int, opened: float
    ) -> None:
        #: Called on the loop thread once the group's fdatasyncs ran (with the first error, if any).
        #: Every group of one log carries the same callable object: the flusher tells logs apart by
        #: its identity (groups of one log resolve in order, SYNC groups never share a round).
        self.done = done
        #: Segments holding the group's records (two when it spans a roll).
        self.segments = [segment]
        self.first_lsn = first_lsn
        #: Set when sealed.
        self.last_lsn = first_lsn
        #: Created lazily by `commit` / `flush` (nobody may wait).
        self.future: asyncio.Future[None] | None = None
        #: A SYNC record: never shares an fdatasync with another group of its log.
        self.sync = sync
        #: Offset of the group's first record in its newest segment (the log moves it on a roll).
        self.start = start
        #: Bytes of the group's records (aligned frames), complete once sealed.
        self.nbytes = 0
        #: ``time.perf_counter()`` at the group's first append (for the commit latency).
        self.opened = opened


#: What a group calls when its round is over: ``done(group, error)``, on the loop thread.
GroupDone = Callable[[Group, OSError | None], None]
Outcome = tuple[Group, OSError | None]


class Flusher:
    """The flusher thread shared by all logs of a `FileStorage`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, threads: int, fsync: bool, stats: FlushStats | None = None
    ) -> None:
        self._loop = loop
        #: Monitoring figures, written by the flusher thread only (see `FlushStats`).
        self.stats = stats if stats is not None else FlushStats()
        self._threads = threads
        self._fsync = fsync
        #: Sealed groups from the loop; None asks the thread to stop once everything before it is done.
        self._queue: queue.SimpleQueue[Group | None] = queue.SimpleQueue()
        self._stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._thread = threading.Thread(target=self._run, name="spitfire-wal-flusher", daemon=True)
        #: Rounds run so far and the duration / file count of the last one (for benchmarks, tests).
        self.rounds = 0
        self.last_round_seconds = 0.0
        self.last_round_files = 0
        self._thread.start()

    def submit(self, group: Group) -> None:
        """Queue a sealed group (loop thread)."""
        self._queue.put(group)

    def stop(self) -> None:
        """Finish every queued group, then stop the thread (blocks until it exits)."""
        if not self._stopping:
            self._stopping = True
            self._queue.put(None)
        self._thread.join()
        if self._pool is not None:
            self._pool.shutdown()

    # --- flusher thread -----------------------------------------------------------------------

    def _run(self) -> None:
        pending: list[Group] = []
        inbox = self._queue
        stopping = False
        while True:
            if not pending:
                if stopping:
                    return
                item = inbox.get()  # blocks without the GIL until the loop submits
                if item is None:
                    stopping = True
                else:
                    pending.append(item)
            while True:  # take everything submitted meanwhile: it shares this round
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    pending.append(item)
            if not pending:
                continue
            batch, pending = _pick(pending)
            started = time.perf_counter()
            outcomes = self._sync(batch)
            finished = time.perf_counter()
            self.last_round_seconds = finished - started
            self.rounds += 1
            self._count(batch, started, finished)
            try:
                self._loop.call_soon_threadsafe(_resolve, outcomes, finished, self.stats)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                logger.warning("event loop closed before %d commit groups were resolved", len(outcomes))

    def _count(self, batch: list[Group], started: float, finished: float) -> None:
        """Add one round to the stats: a few additions per group, on this thread (never the loop's)."""
        stats = self.stats
        commit = stats.commit_seconds
        wait = stats.wait_seconds
        records = nbytes = 0
        for group in batch:
            records += group.last_lsn - group.first_lsn + 1
            nbytes += group.nbytes
            commit.observe(finished - group.opened)
            wait.observe(started - group.opened)
        stats.round_records.observe(records)
        stats.round_bytes.observe(nbytes)
        stats.round_seconds.observe(finished - started)

    def _sync(self, batch: list[Group]) -> list[Outcome]:
        files: dict[int, Segment] = {}
        for group in batch:
            for seg in group.segments:
                files[id(seg)] = seg
        self.last_round_files = len(files)
        segs = list(files.values())
        errors: dict[int, OSError] = {}
        if self._fsync:
            if len(segs) > 1 and self._threads > 1:
                self._sync_parallel(segs, errors)
            else:
                _sync_all(segs, errors)
        return [(g, next((errors[id(s)] for s in g.segments if id(s) in errors), None)) for g in batch]

    def _sync_parallel(self, segs: list[Segment], errors: dict[int, OSError]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads - 1, thread_name_prefix="spitfire-wal-fsync")
        n = min(self._threads, len(segs))
        parts = [segs[i::n] for i in range(n)]
        futures = [self._pool.submit(_sync_all, part, errors) for part in parts[1:]]
        _sync_all(parts[0], errors)
        for future in futures:
            future.result()


def _sync_all(segs: list[Segment], errors: dict[int, OSError]) -> None:
    for seg in segs:
        started = time.perf_counter()
        try:
            os.fdatasync(seg.fd)
        except OSError as exc:
            logger.error("fdatasync of %s failed: %s; its records are not durable", seg.path, exc)
            errors[id(seg)] = exc
        took = time.perf_counter() - started
        if took > WARN_SYNC_SECONDS:
            logger.warning("slow fdatasync of %s: %.3f s", seg.path, took)


def _pick(pending: list[Group]) -> tuple[list[Group], list[Group]]:
    """Split pending groups into this round's batch and the rest (SYNC groups never merge).

    A SYNC group is taken only if no other group of its log is in the batch; once a group of a log
    is held back, every later group of that log is held back too, so groups resolve in LSN order.
    """
    batch: list[Group] = []
    later: list[Group] = []
    in_batch: set[int] = set()
    sync_in_batch: set[int] = set()
    held: set[int] = set()
    for group in pending:
        key = id(group.done)
        if key in held or key in sync_in_batch or (group.sync and key in in_batch):
            held.add(key)
            later.append(group)
            continue
        batch.append(group)
        in_batch.add(key)
        if group.sync:
            sync_in_batch.add(key)
    return batch, later


def _resolve(outcomes: list[Outcome], synced: float, stats: FlushStats) -> None:
    """Loop thread: hand each group back to its log (which settles its future and durable LSN)."""
    stats.resolve_seconds.observe(time.perf_counter() - synced)
    for group, error in outcomes:
        group.done(group, error)
