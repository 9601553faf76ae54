"""The dashboard's history graph: per-minute counts of enqueued, succeeded and failed jobs, durable.

What is counted: every committed record, at the record's own time, when `StateMachine.apply`
applies it (live and at recovery alike): JOB_ENQUEUED and JOBS_ENQUEUED count their jobs as
enqueued, JOB_SUCCEEDED as succeeded, JOB_FAILED (retrying or dead) as failed. A record appended but
not committed is never counted (commit, then apply), and a committed one always is.

How it survives restarts, with no new record and no extra fsync on the hot path:

- the log tail: recovery replays the records above the snapshot through the same `apply`, so it
  counts them again, exactly (they carry their time);
- the snapshot: it carries the queue's counters as of its LSN (`records.HistoryChunk`, chunk 1,
  encoded in the same loop step as the meta, before any job: exact even though job chunks are fuzzy),
  so compaction may delete the segments it covers, and pruning or deleting jobs changes no count;
- deleted queues: a queue's deletion removes its log, so its counters are first appended, with
  one fsync (deletions are rare), to ``<data-dir>/meta/history-retired`` (`RetiredHistoryFile`),
  which keeps them in the total. A crash between that append and the removal of the files is
  recognised by the deletion's identity (queue, LSN and time of its QUEUE_DELETED record): counted
  once, never twice.

The total is every live queue's counters plus the retired ones: a queue's counters feed it as
each minute is flushed (the hot path counts once, in the queue's), it is read after flushing the
queues (`total_counters`), and rebuilt once after recovery (`rebuild_total`). Bytes: wal/FORMAT.md "History".
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from spitfire.index.minutes import KEEP_DAYS, MAX_MINUTES, MinuteCounters
from spitfire.wal.constants import RECORD_ALIGN, RECORD_HEADER_SIZE
from spitfire.wal.format import check_record, encode_record
from spitfire.wal.segment import fsync_dir

from . import records as rec
from .errors import ValidationError
from .state import Queue, StateMachine

log = logging.getLogger("spitfire.server.history")

#: Default and bounds of a history query (GET /api/stats/history).
DEFAULT_MINUTES = 60
DEFAULT_STEP = 60
MAX_QUERY_MINUTES = MAX_MINUTES
MAX_STEP = MAX_MINUTES * 60
#: Record type of a `records.RetiredHistory` record in ``meta/history-retired`` (its own file, its
#: own type space).
RETIRED_RECORD = 1
#: Name of the retired queues' file under ``<data-dir>/meta/``.
RETIRED_FILE = "history-retired"
#: Records the file may hold before it is rewritten as one (at the next deletion or start).
COMPACT_RECORDS = 32

#: One deletion: (queue, LSN of its QUEUE_DELETED record, that record's time).
Deletion = tuple[str, int, float]


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One bucket of `history_points`: its start (epoch seconds) and its counts."""

    at: float
    enqueued: int
    succeeded: int
    failed: int


def total_counters(state: StateMachine) -> MinuteCounters:
    """The total's counters, up to date: every live queue's current minute flushed into it."""
    for q in state.queues.values():
        q.history.flush()
    return state.history


def check_query(minutes: int, step: int) -> None:
    """Validate a history query. :raises ValidationError: naming ``minutes`` or ``step``."""
    if not 1 <= minutes <= MAX_QUERY_MINUTES:
        raise ValidationError("minutes", f"must be an integer from 1 to {MAX_QUERY_MINUTES} (30 days)")
    if not 60 <= step <= MAX_STEP or step % 60:
        raise ValidationError("step", f"must be a multiple of 60 seconds, from 60 to {MAX_STEP}")


def history_points(counters: MinuteCounters, now: float, minutes: int, step: int) -> list[HistoryPoint]:
    """`MinuteCounters.points` as `HistoryPoint`s, after `check_query`."""
    check_query(minutes, step)
    return [HistoryPoint(*p) for p in counters.points(now, minutes, step)]


# -- snapshots ------------------------------------------------------------------------------------------


def _blocks(counters: MinuteCounters) -> list[rec.HistoryBlock]:
    return [rec.HistoryBlock(hour, data) for hour, data in counters.blocks()]


def encode_history_chunk(q: Queue) -> bytes:
    """The queue's counters as a snapshot's chunk 1 (call in the loop step that encodes the meta)."""
    return rec.encode(rec.HistoryChunk([], rec.HISTORY_VERSION, _blocks(q.history)))


def load_history_chunk(q: Queue, chunk: bytes) -> None:
    """Add a snapshot's history chunk to the queue's counters (the total is rebuilt from the
    queues once recovery is done: `rebuild_total`).

    A chunk this build cannot read (a newer layout; its checksum was valid) costs only the history
    before the snapshot, never the snapshot: it is logged and skipped.
    """
    try:
        body = rec.history_decoder.decode(chunk)
        if body.version != rec.HISTORY_VERSION:
            raise ValueError(f"history version {body.version}, this build reads {rec.HISTORY_VERSION}")
        blocks = [(b.hour, b.counts) for b in body.blocks]
        probe = MinuteCounters()
        probe.load(blocks)  # validates every block before anything is counted
    except (msgspec.DecodeError, ValueError) as exc:
        log.warning(
            "the history in the snapshot of queue %r cannot be read (%s): the history graph of the "
            "time before that snapshot is lost; the jobs are not affected",
            q.name,
            exc,
        )
        return
    q.history.merge(probe)


# -- deleted queues -------------------------------------------------------------------------------------


class RetiredHistoryFile:
    """The counters of deleted queues, in ``<data-dir>/meta/history-retired`` (None: memory only).

    The file is a sequence of records framed as in the log (crc32c, length, type, 8-byte alignment;
    wal/FORMAT.md "History"). A damaged record costs only itself: reading resynchronises on the next
    valid record. Appends are fsynced (a deletion is rare); a torn last record was never
    acknowledged as written, so the deletion it belongs to is retired again on the next start.
    """

    def __init__(self, path: Path | None, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        #: Every deleted queue's counts together.
        self.total = MinuteCounters()
        #: Deletions whose counts ``total`` holds.
        self.deletions: set[Deletion] = set()
        self._records = 0
        #: Serialises appends and rewrites of the file (loop side).
        self.lock = asyncio.Lock()

    def set_records(self, count: int) -> None:
        """The file now holds ``count`` records (after a rewrite)."""
        self._records = count

    def load(self) -> None:
        """Read the file (blocking; at start-up). Rewrites it as one record when it holds many, or
        damage (so that damage is reported once)."""
        if self.path is None or not self.path.exists():
            return
        data = self.path.read_bytes()
        damaged = False
        off, size = 0, len(data)
        while off + RECORD_HEADER_SIZE <= size:
            rtype, length, reason = check_record(data, off, size)
            if rtype == 0 and not reason:
                break  # zero padding: the end
            if rtype != RETIRED_RECORD:
                damaged = True
                log.warning(
                    "%s: damaged record at byte offset %d (%s): the counts of the deleted queues it "
                    "held are lost from the history graph's total",
                    self.path,
                    off,
                    reason or f"unknown record type {rtype}",
                )
                off = self._resync(data, off + 1, size)
                continue
            body = data[off + RECORD_HEADER_SIZE : off + RECORD_HEADER_SIZE + length]
            try:
                retired = rec.retired_decoder.decode(body)
                counters = MinuteCounters()
                counters.load((b.hour, b.counts) for b in retired.blocks)
            except (msgspec.DecodeError, ValueError) as exc:
                damaged = True
                log.warning("%s: record at byte offset %d does not decode (%s): skipped", self.path, off, exc)
            else:
                self._add(retired.deletions, counters)
            off += (RECORD_HEADER_SIZE + length + RECORD_ALIGN - 1) & -RECORD_ALIGN
        if damaged or self._records > 1:
            self.compact()

    @staticmethod
    def _resync(data: bytes, off: int, size: int) -> int:
        """The offset of the next valid record at or after ``off`` (``size`` when none), byte by
        byte: a torn append leaves a partial record, so the next one may start at any offset."""
        while off + RECORD_HEADER_SIZE <= size:
            rtype, _, reason = check_record(data, off, size)
            if rtype == RETIRED_RECORD and not reason:
                return off
            off += 1
        return size

    def _add(self, deletions: list[Deletion], counters: MinuteCounters) -> None:
        self.total.merge(counters)
        self.deletions.update((str(q), int(lsn), float(at)) for q, lsn, at in deletions)
        self._records += 1

    def holds(self, deletion: Deletion) -> bool:
        """The counts of this deletion are already in the file (a crash came before its files went)."""
        return deletion in self.deletions

    def encode(self, deletion: Deletion, counters: MinuteCounters) -> bytes:
        """The record that retires one deleted queue (loop thread: reads ``counters``)."""
        body = rec.encode(rec.RetiredHistory([deletion], _blocks(counters)))
        return encode_record(RETIRED_RECORD, body)

    def append(self, record: bytes) -> None:
        """Append ``record`` durably (blocking: run it in a worker thread)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, record)
            if self.fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if new and self.fsync:
            fsync_dir(self.path.parent)

    def retired(self, deletion: Deletion, counters: MinuteCounters) -> None:
        """After `append`: the deletion's counts are in the file (loop thread)."""
        if deletion not in self.deletions:
            self._add([deletion], counters)

    def compacted(self) -> tuple[bytes, set[Deletion]]:
        """The one record `compact` writes (loop thread: reads the counters), and the deletions it
        keeps: those of the last `KEEP_DAYS` days (older ones cannot be met again at a start: their
        files are long gone)."""
        newest = max((at for _, _, at in self.deletions), default=0.0)
        keep = sorted(d for d in self.deletions if d[2] >= newest - KEEP_DAYS * 86400.0)
        body = rec.encode(rec.RetiredHistory(keep, _blocks(self.total)))
        return encode_record(RETIRED_RECORD, body), set(keep)

    def write_compacted(self, record: bytes) -> None:
        """Replace the file by ``record`` atomically (blocking: temp file, fsync, rename, fsync)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(record)
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())
        os.rename(tmp, self.path)
        if self.fsync:
            fsync_dir(self.path.parent)

    def compact(self) -> None:
        """Rewrite the file as one record (blocking; at start-up)."""
        record, keep = self.compacted()
        self.write_compacted(record)
        self.deletions = keep
        self._records = 1

    @property
    def needs_compaction(self) -> bool:
        return self._records > COMPACT_RECORDS


async def retire(retired: RetiredHistoryFile, q: Queue) -> None:
    """Make a deleted queue's counters durable in ``retired`` before its files go (its
    QUEUE_DELETED record is applied: ``q.deleted_lsn`` is set). Nothing is done when they already
    are (a crash between this and the removal of the files). A failure to write is logged: the
    deletion goes on (the total keeps the counts until a restart)."""
    deletion = deletion_of(q)
    async with retired.lock:
        if retired.holds(deletion):
            return
        try:
            await asyncio.to_thread(retired.append, retired.encode(deletion, q.history))
        except OSError as exc:
            log.error(
                "could not keep the history of deleted queue %r in %s (%s): the history graph's total "
                "loses its counts at the next restart",
                q.name,
                retired.path,
                exc,
            )
            return
        retired.retired(deletion, q.history)
        if retired.needs_compaction:
            record, keep = retired.compacted()
            try:
                await asyncio.to_thread(retired.write_compacted, record)
            except OSError as exc:  # the records appended so far stay valid
                log.warning("could not rewrite %s (%s); retried at the next deletion", retired.path, exc)
            else:
                retired.deletions = keep
                retired.set_records(1)


def retired_history_file(storage: object) -> RetiredHistoryFile:
    """The retired-history file of a storage: under its data directory when it has one (a
    `FileStorage`), in memory only otherwise."""
    data_dir = getattr(storage, "data_dir", None)
    config = getattr(storage, "config", None)
    fsync = bool(getattr(config, "fsync", True))
    path = Path(data_dir) / "meta" / RETIRED_FILE if data_dir is not None else None
    return RetiredHistoryFile(path, fsync=fsync)


def rebuild_total(state: StateMachine, retired: RetiredHistoryFile) -> None:
    """Set the total to the retired counts plus every live queue's (after recovery, which counted
    the replayed records of queues deleted before the restart too)."""
    total = state.history
    for q in state.queues.values():
        q.history.flush()  # what it would push into the total later is in its blocks now
    total.clear()
    total.merge(retired.total)
    for q in state.queues.values():
        total.merge(q.history)


def deletion_of(q: Queue) -> Deletion:
    """The identity of a queue's deletion: its name, and the LSN and time of its QUEUE_DELETED."""
    return (q.name, q.deleted_lsn, q.deleted_at)
