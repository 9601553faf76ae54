"""`FileQueueLog`: one queue's append-only log on mmap'd segments, with group commit.

Threads: everything here runs on the event loop thread except `_prepare_next` (preparer thread,
under ``_prep_lock``). The flusher only reads segment fds from sealed groups.

Commit protocol (see `flusher.py`): the first append of a loop tick opens a `Group` and schedules
`_seal` with ``call_soon`` (GROUP), with ``call_later(async_flush_ms)`` (ASYNC), or seals at once
(SYNC: one group per record). Every append of the tick joins the open group. `commit` returns the
future of the group holding the LSN, created lazily.

Why appends are synchronous rather than queued to a per-queue writer task (wal/FORMAT.md and
the storage issue describe a writer task): the loop is single-threaded, so appends to one log are
already serialised, and copying a record into the mmap never blocks. A writer task would add a
queue hop and a task switch per batch (several microseconds on the hot path) and would force the
engine to apply a change before knowing its LSN. What a writer task is for, batching many records
into one fsync and never stalling a producer on a segment roll, is done here by the per-tick group
and by the preparer thread that readies the next segment ahead of time.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from crc32c import crc32c

from .api import (
    Durability,
    LogClosedError,
    NoSpaceError,
    RecordTooLargeError,
    StorageError,
)
from .config import WalConfig
from .constants import RECORD_HEADER, RECORD_HEADER_SIZE, RECORD_LEN_TYPE, SEGMENT_HEADER_SIZE
from .flusher import Flusher, Group, GroupDone
from .format import align, record_size
from .preparer import Preparer, PrepareTask
from .segment import PreparedFile, Segment, prepare_file, segment_path
from .snapshot import FileSnapshotWriter, SnapshotHooks
from .stats import FlushStats

logger = logging.getLogger("spitfire.wal")

_pack_header = RECORD_HEADER.pack_into
_pack_len_type = RECORD_LEN_TYPE.pack
#: Most (length, type) pairs whose partial CRC is remembered (bodies of one kind are often one size).
_MAX_SEEDS = 4096
#: crc32c of the length/type part of a record header, by ``length << 8 | type``: the CRC of a record
#: continues from it over the body, so appends of equal-sized bodies skip a pack and a crc32c call.
_seeds: dict[int, int] = {}


def _seed(n: int, rtype: int) -> int:
    """crc32c of the header's length and type fields (``0 < rtype < 256``), remembered."""
    seed = crc32c(_pack_len_type(n, rtype))
    if len(_seeds) < _MAX_SEEDS:
        _seeds[n << 8 | rtype] = seed
    return seed


class Context:
    """What every log of one `FileStorage` shares: the loop, the threads and the configuration."""

    __slots__ = ("config", "flusher", "loop", "preparer")

    def __init__(self, loop: asyncio.AbstractEventLoop, config: WalConfig, stats: FlushStats) -> None:
        self.loop = loop
        self.config = config
        self.flusher = Flusher(loop, threads=config.flush_threads, fsync=config.fsync, stats=stats)
        self.preparer = Preparer(config.space_retry_ms / 1000)

    def stop(self) -> None:
        """Stop both threads (blocking: call from a worker thread or at shutdown)."""
        try:
            self.flusher.stop()
        finally:
            self.preparer.stop()  # joined even if the flusher failed: it must not outlive the storage


class FileQueueLog:
    """One queue's log: satisfies `QueueLog`. Built by `FileStorage.open_log` after recovery."""

    __slots__ = (
        "_closed",
        "_ctx",
        "_done_cb",
        "_durability",
        "_durable_lsn",
        "_failed",
        "_fast_limit",
        "_inflight",
        "_last_lsn",
        "_last_writer",
        "_mm",
        "_offset",
        "_on_durable",
        "_on_failed",
        "_open",
        "_plain_limit",
        "_prep_lock",
        "_prep_requested",
        "_prep_task",
        "_prepare_at",
        "_prepared",
        "_queue",
        "_seg",
        "_segments",
        "_snap_hooks",
        "_snapshot",
        "_sync",
        "_timer",
        "_want",
        "_want_size",
        "queue_dir",
        "snapshots_dir",
        "wal_dir",
    )

    def __init__(
        self,
        ctx: Context,
        queue: str,
        queue_dir: Path,
        durability: Durability,
        segment: Segment,
        offset: int,
        last_lsn: int,
        segments: list[tuple[int, int]],
    ) -> None:
        self._ctx = ctx
        self._queue = queue
        self.queue_dir = queue_dir
        self.wal_dir = queue_dir / "wal"
        self.snapshots_dir = queue_dir / "snapshots"
        self._durability = durability
        self._sync = durability is Durability.SYNC
        self._last_lsn = last_lsn
        #: Every record up to here is on disk (recovered records are: recovery fsyncs what it keeps).
        self._durable_lsn = last_lsn
        self._open: Group | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Sealed groups handed to the flusher and not yet resolved, oldest first.
        self._inflight: collections.deque[Group] = collections.deque()
        self._closed = False
        self._failed: StorageError | None = None
        self._on_durable: Callable[[int], None] | None = None
        self._on_failed: Callable[[StorageError], None] | None = None
        #: (segment number, base LSN) of every segment file on disk, oldest first (for compaction).
        self._segments = segments
        self._snapshot: FileSnapshotWriter | None = None
        self._last_writer: FileSnapshotWriter | None = None
        # The flusher, preparer and snapshot writers call back through these (made once: the flusher
        # and the preparer tell logs apart by the callable's identity).
        self._done_cb: GroupDone = self._group_done
        self._prep_task: PrepareTask = self._prepare_next
        self._snap_hooks = SnapshotHooks(
            queue,
            self.snapshots_dir,
            self.wal_dir,
            ctx.config.fsync,
            self.wait_durable,
            self._snapshot_done,
            self.compactable,
        )
        self._prep_lock = threading.Lock()
        self._prepared: PreparedFile | None = None
        #: Number and size of the next segment the preparer is to create (None: nothing wanted).
        self._want: int | None = None
        self._want_size = 0
        self._seg = segment
        self._mm = segment.mm
        self._offset = offset
        self._plain_limit = 0
        self._prepare_at = 0
        self._prep_requested = False
        self._fast_limit = 0
        self._enter_segment(segment, offset, plain=True)

    # --- QueueLog -----------------------------------------------------------------------------

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def durability(self) -> Durability:
        return self._durability

    def set_durability(self, mode: Durability) -> None:
        if mode is not self._durability:
            self._seal()  # groups never mix modes
            self._durability = mode
            self._sync = mode is Durability.SYNC

    @property
    def last_lsn(self) -> int:
        return self._last_lsn

    @property
    def durable_lsn(self) -> int:
        """Every record up to this LSN is known to be on disk."""
        return self._durable_lsn

    @property
    def low_on_space(self) -> bool:
        return self._ctx.preparer.low_on_space

    def append(self, rtype: int, body: bytes, *, reserved: bool = False) -> int:
        off = self._offset
        n = len(body)
        end = off + RECORD_HEADER_SIZE + n
        next_off = (end + 7) & -8
        # One comparison guards the fast path: the limit is below the record when the segment is
        # (plain-)full, when the next segment must be requested, or when the log is closed (-1).
        if next_off > self._fast_limit or not 0 < rtype < 256:
            return self._append_slow(rtype, body, reserved)
        seed = _seeds.get(n << 8 | rtype)
        if seed is None:
            seed = _seed(n, rtype)
        mm = self._mm
        _pack_header(mm, off, crc32c(body, seed), n, rtype)
        mm[off + RECORD_HEADER_SIZE : end] = body
        self._offset = next_off
        self._last_lsn = lsn = self._last_lsn + 1
        if self._open is None:
            self._begin_group(lsn, off)
        return lsn

    def set_listener(
        self, on_durable: Callable[[int], None], on_failed: Callable[[StorageError], None]
    ) -> None:
        self._on_durable = on_durable
        self._on_failed = on_failed

    def commit(self, lsn: int) -> asyncio.Future[None] | None:
        if lsn <= self._durable_lsn or self._durability is Durability.ASYNC:
            return None
        if lsn > self._last_lsn:
            raise ValueError(f"LSN {lsn} was never appended (last is {self._last_lsn})")
        return self._future_for(lsn)

    def snapshot(self, lsn: int | None = None) -> FileSnapshotWriter:
        self._check_open()
        if self._snapshot is not None:
            raise StorageError(f"a snapshot of queue {self._queue!r} is already being written")
        at = self._last_lsn if lsn is None else lsn
        if not 0 <= at <= self._last_lsn:
            raise ValueError(f"snapshot LSN {at} was never appended (last is {self._last_lsn})")
        self._snapshot = FileSnapshotWriter(self._snap_hooks, at, self._last_writer)
        self._last_writer = self._snapshot
        return self._snapshot

    async def flush(self) -> None:
        await self.wait_durable(self._last_lsn)

    # --- durability ---------------------------------------------------------------------------

    async def wait_durable(self, lsn: int) -> None:
        """Wait until every record up to ``lsn`` is on disk, whatever the mode."""
        if lsn <= self._durable_lsn:
            return
        future = self._future_for(lsn)
        if future is not None:
            await future

    def _future_for(self, lsn: int) -> asyncio.Future[None] | None:
        group = self._open
        if group is not None and lsn >= group.first_lsn:
            if self._durability is not Durability.GROUP:
                self._seal()  # ASYNC flush: do not wait for the timer
        else:
            group = self._find_sealed(lsn)
            if group is None:
                if self._failed is not None:
                    failed: asyncio.Future[None] = self._ctx.loop.create_future()
                    failed.set_exception(StorageError(str(self._failed)))
                    return failed
                return None
        future = group.future
        if future is None:
            future = group.future = self._ctx.loop.create_future()
        return future

    def _find_sealed(self, lsn: int) -> Group | None:
        for group in reversed(self._inflight):  # the newest is the usual answer
            if group.first_lsn <= lsn:
                return group if lsn <= group.last_lsn else None
        return None

    def _begin_group(self, lsn: int, offset: int) -> None:
        """Open a group at the record just written at ``offset`` (one clock read per group)."""
        self._open = Group(self._done_cb, self._seg, lsn, self._sync, offset, time.perf_counter())
        self._seg.inflight += 1  # pinned from now on: the segment stays open until the group is done
        if self._sync:
            self._seal()
        elif self._durability is Durability.ASYNC:
            self._timer = self._ctx.loop.call_later(self._ctx.config.async_flush_ms / 1000, self._seal)
        else:
            self._ctx.loop.call_soon(self._seal)

    def _seal(self) -> None:
        """Hand the open group to the flusher (loop thread; runs at the end of the tick)."""
        group = self._open
        if group is None:
            return
        self._open = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group.last_lsn = self._last_lsn
        group.nbytes += self._offset - group.start
        self._inflight.append(group)
        self._ctx.flusher.submit(group)

    def _group_done(self, group: Group, error: OSError | None) -> None:
        """Loop thread: the flusher finished ``group`` (``error`` when its fdatasync failed)."""
        if self._inflight and self._inflight[0] is group:
            self._inflight.popleft()
        elif group in self._inflight:
            self._inflight.remove(group)
        for seg in group.segments:
            seg.inflight -= 1
            seg.release_if_done()
        if error is not None and self._failed is None:
            # fsyncgate: after a failed fdatasync the page cache may have dropped the data, and a
            # later fdatasync may "succeed" anyway. Nothing after the last durable LSN is trusted.
            path = next((str(seg.path) for seg in group.segments), self.wal_dir)
            self._failed = StorageError(
                f"fdatasync of {path} (queue {self._queue!r}) failed: {error}; records after LSN "
                f"{self._durable_lsn} are not durable. Restart the server to recover the log"
            )
            self._fast_limit = -1
            logger.error("%s", self._failed)
            if self._on_failed is not None:
                self._on_failed(self._failed)
        future = group.future
        if self._failed is None:
            if group.last_lsn > self._durable_lsn:
                self._durable_lsn = group.last_lsn
                if self._on_durable is not None:
                    self._on_durable(group.last_lsn)  # before the writers are answered
            if future is not None and not future.done():
                future.set_result(None)
        elif future is not None and not future.done():
            future.set_exception(StorageError(str(self._failed)))

    # --- the slow path: limits, rolls, disk full ----------------------------------------------

    def _check_open(self) -> None:
        if self._failed is not None:
            raise LogClosedError(str(self._failed))
        if self._closed:
            raise LogClosedError(f"log of queue {self._queue!r} is closed")

    def _append_slow(self, rtype: int, body: bytes, reserved: bool) -> int:
        self._check_open()
        if not 0 < rtype < 256:
            raise ValueError(f"record type must be 1..255, got {rtype}")
        size = record_size(len(body))
        max_body = self._ctx.config.max_body_size
        if len(body) > max_body:
            raise RecordTooLargeError(
                f"record of {len(body)} bytes does not fit in a WAL segment (at most {max_body} bytes); "
                "raise segment_size or split it"
            )
        if not self._prep_requested and self._offset + size > self._prepare_at:
            self._request_prepare()
        limit = self._seg.size if reserved else self._plain_limit
        if self._offset + size > limit:
            self._roll(reserved, size)
        self._fast_limit = (
            self._plain_limit if self._prep_requested else min(self._plain_limit, self._prepare_at)
        )
        return self._write(rtype, body)

    def _write(self, rtype: int, body: bytes) -> int:
        off = self._offset
        n = len(body)
        end = off + RECORD_HEADER_SIZE + n
        mm = self._mm
        _pack_header(mm, off, crc32c(body, crc32c(_pack_len_type(n, rtype))), n, rtype)
        mm[off + RECORD_HEADER_SIZE : end] = body
        self._offset = align(end)
        self._last_lsn = lsn = self._last_lsn + 1
        if self._open is None:
            self._begin_group(lsn, off)
        return lsn

    def _enter_segment(self, seg: Segment, offset: int, *, plain: bool) -> None:
        """Make ``seg`` current; ``plain=False`` keeps plain appends out (a spare used while low)."""
        self._seg = seg
        self._mm = seg.mm
        self._offset = offset
        self._plain_limit = (
            seg.size - self._ctx.config.reserve_for(seg.size) if plain else SEGMENT_HEADER_SIZE
        )
        usable = seg.size - SEGMENT_HEADER_SIZE
        self._prepare_at = SEGMENT_HEADER_SIZE + int(usable * self._ctx.config.prepare_ahead)
        self._prep_requested = False
        self._fast_limit = min(self._plain_limit, self._prepare_at)

    @property
    def _prep_what(self) -> str:
        return f"the next segment of queue {self._queue!r}"

    def _request_prepare(self) -> None:
        self._prep_requested = True
        with self._prep_lock:
            self._want = self._seg.number + 1
            # Sized like the segment it follows, doubled: a small queue's spare stays small.
            self._want_size = self._ctx.config.next_segment_size(self._seg.size)
        self._ctx.preparer.request(self._prep_task, self._prep_what)

    def _prepare_next(self) -> OSError | None:
        """Preparer thread: create the wanted next segment if still wanted; the error if it failed."""
        with self._prep_lock:
            want = self._want
            if self._closed or want is None or self._prepared is not None:
                return None
            try:
                self._prepared = prepare_file(
                    self.wal_dir, want, self._want_size, fsync=self._ctx.config.fsync
                )
            except OSError as exc:
                return exc  # the preparer logs it (after raising its low-on-space flag)
            self._want = None
            return None

    def _take_prepared(self, number: int, size: int, low: bool) -> PreparedFile:
        """The prepared segment ``number`` if it holds at least ``size`` bytes, else one made now."""
        with self._prep_lock:
            prepared, self._prepared = self._prepared, None
            if prepared is not None and prepared.number == number and prepared.size >= size:
                self._want = None
                return prepared
            too_small = prepared is not None and prepared.number == number
            if low:
                if too_small:
                    self._prepared = prepared  # kept: it may not be possible to allocate it again
                else:
                    if prepared is not None:
                        prepared.discard()
                    self._want, self._want_size = number, size  # the preparer retries it
                    self._ctx.preparer.request(self._prep_task, self._prep_what)
                raise NoSpaceError(
                    f"disk full: queue {self._queue!r} has used its reserved WAL space; free disk space "
                    f"under {self.wal_dir.parent.parent.parent} so that the server can continue"
                )
            if prepared is not None:
                prepared.discard()
            self._want, self._want_size = number, size
            if too_small:  # a record larger than the doubled size: rare, and bounded by max_body_size
                logger.info(
                    "segment %d of queue %r is too small for the next record: preparing one of %d bytes "
                    "on the event loop",
                    number,
                    self._queue,
                    size,
                )
            else:
                logger.warning(
                    "segment %d of queue %r was not prepared in time: preparing it on the event loop "
                    "(this stalls every queue; consider a lower prepare_ahead)",
                    number,
                    self._queue,
                )
            try:
                ready = prepare_file(self.wal_dir, number, size, fsync=self._ctx.config.fsync)
            except OSError as exc:
                self._ctx.preparer.low_on_space = True
                self._ctx.preparer.request(self._prep_task, self._prep_what)
                raise NoSpaceError(
                    f"cannot allocate a new WAL segment for queue {self._queue!r} ({exc}); free disk space "
                    "so that new jobs are accepted again"
                ) from exc
            self._want = None
            return ready

    def _roll(self, reserved: bool, record: int) -> None:
        """Move to the next segment (the prepared one if ready and large enough for the ``record``-byte
        frame that does not fit here). Old segments close once durable."""
        low = self._ctx.preparer.low_on_space
        if low and not reserved:
            raise NoSpaceError(
                f"disk full: new records for queue {self._queue!r} are refused; free disk space so that "
                "new jobs are accepted again (acks and failures still use the reserved space)"
            )
        old = self._seg
        size = self._ctx.config.segment_size_for(old.size, record, reserved=reserved)
        prepared = self._take_prepared(old.number + 1, size, low)
        seg = Segment.activate(prepared, self._last_lsn + 1)
        old.retired = True
        old.release_if_done()
        group = self._open
        if group is not None:
            group.segments.append(seg)  # the open group spans both: it fsyncs both
            seg.inflight += 1
            group.nbytes += self._offset - group.start  # its bytes in the old segment
            group.start = SEGMENT_HEADER_SIZE
        self._segments.append((seg.number, seg.base_lsn))
        self._enter_segment(seg, SEGMENT_HEADER_SIZE, plain=not low)
        if self._ctx.config.prepare_ahead == 0:
            self._request_prepare()

    # --- snapshots and compaction -------------------------------------------------------------

    def _snapshot_done(self, writer: FileSnapshotWriter) -> None:
        if self._snapshot is writer:
            self._snapshot = None

    def compactable(self, keep_after_lsn: int) -> list[Path]:
        """Drop (from the bookkeeping) and return the segments whose records all have LSN <= the
        given one; the current segment is never returned."""
        doomed: list[Path] = []
        while len(self._segments) > 1 and self._segments[1][1] - 1 <= keep_after_lsn:
            number, _ = self._segments.pop(0)
            doomed.append(segment_path(self.wal_dir, number))
        return doomed

    # --- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop appends, fail waiters of unsealed records, release files once the flusher is done."""
        if self._closed:
            return
        self._closed = True
        self._fast_limit = -1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group, self._open = self._open, None
        self._seg.retired = True
        self._seg.release_if_done()
        if group is not None:  # never sealed: its records are dropped with the log
            for seg in group.segments:
                seg.inflight -= 1
                seg.release_if_done()
            if group.future is not None and not group.future.done():
                group.future.set_exception(LogClosedError(f"log of queue {self._queue!r} was closed"))
        with self._prep_lock:
            prepared, self._prepared = self._prepared, None
            self._want = None
        if prepared is not None:
            prepared.discard()
        if self._snapshot is not None:
            self._snapshot.abort()

    def __repr__(self) -> str:
        return f"<FileQueueLog {self._queue!r} last_lsn={self._last_lsn} durable={self._durable_lsn}>"
