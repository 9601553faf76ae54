"""Recovery of one queue's directory: pick a snapshot, validate and replay segments, cut a torn tail.

Read-only inspection (`inspect_segments`, `scan_segments`) is separate from the changes recovery
makes (deleting unused segments, zeroing a torn tail), so that `repair` can reuse the inspection.
The algorithm is specified in `wal/FORMAT.md` ("Recovery").
"""

from __future__ import annotations

import logging
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

from .api import CorruptLogError, LogRecord, Recovery, UnsupportedFormatError
from .constants import (
    BROKEN_SUFFIX,
    FORMAT_VERSION,
    RECORD_ALIGN,
    SEGMENT_HEADER_SIZE,
    SEGMENT_NAME_RE,
    SNAPSHOTS_DIR,
    TMP_SUFFIX,
    WAL_DIR,
)
from .format import HeaderError, data_end, decode_segment_header, find_valid_record, is_zero, scan_records
from .segment import fsync_dir
from .snapshot import SnapshotError, list_snapshots, read_snapshot

logger = logging.getLogger("spitfire.wal")


@dataclass(slots=True)
class SegmentInfo:
    """One used segment file found on disk."""

    number: int
    path: Path
    base_lsn: int
    size: int
    #: Valid records (set by `scan_segments`).
    count: int = 0
    #: Offset after the last valid record (set by `scan_segments`).
    end: int = SEGMENT_HEADER_SIZE

    @property
    def last_lsn(self) -> int:
        """LSN of the last valid record (base_lsn - 1 when empty)."""
        return self.base_lsn + self.count - 1


@dataclass(slots=True)
class TornTail:
    """A torn write at the end of the last segment: bytes [offset, end) are to be zeroed."""

    path: Path
    offset: int
    end: int
    reason: str


@dataclass(slots=True)
class RecoveredLog:
    """What `recover` found and fixed; `FileStorage` builds the `FileQueueLog` from it."""

    recovery: Recovery
    #: Used segments, oldest first (the last is the one to append to). Empty for a new log.
    segments: list[SegmentInfo] = field(default_factory=list)
    #: LSN of the last record (0 for an empty log; the snapshot LSN if all segments are gone).
    last_lsn: int = 0
    #: Number for a new segment if ``segments`` is empty.
    next_number: int = 0


def list_segment_files(wal_dir: Path) -> list[tuple[int, Path]]:
    """(number, path) of every segment file, in number order."""
    found = []
    for name in os.listdir(wal_dir):
        match = SEGMENT_NAME_RE.match(name)
        if match:
            found.append((int(match.group(1), 16), wal_dir / name))
    return sorted(found)


def _read_map(path: Path) -> tuple[int, mmap.mmap | None]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, None
        return size, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)


def _header_problem(path: Path) -> tuple[str, bool]:
    """Why ``path`` has no valid header ("" if it has one) and whether the file is otherwise empty."""
    size, mm = _read_map(path)
    if mm is None:
        return "empty file", True
    try:
        decode_segment_header(mm)
    except HeaderError as exc:
        if exc.version is not None:
            raise UnsupportedFormatError(str(path), exc.version, FORMAT_VERSION) from None
        return exc.reason, is_zero(mm, SEGMENT_HEADER_SIZE, size)
    finally:
        mm.close()
    return "", False


def inspect_segments(wal_dir: Path) -> tuple[list[SegmentInfo], list[Path]]:
    """Validate segment headers: returns (used segments, unused trailing files to delete).

    A file without a valid header after the last used segment is an unused prepared segment when
    the rest of it is zero; anywhere else, or with data in it, it is damage.

    :raises CorruptLogError: bad header, number gap, size mismatch.
    :raises UnsupportedFormatError: a segment of another format version.
    """
    files = list_segment_files(wal_dir)
    problems = [_header_problem(path) for _, path in files]
    unused: list[Path] = []
    while files and problems[-1][0]:
        (_, path), (reason, empty) = files.pop(), problems.pop()
        if not empty:
            raise CorruptLogError(str(path), 0, f"{reason} in a segment that holds data")
        unused.append(path)
    segments: list[SegmentInfo] = []
    for (number, path), (reason, _) in zip(files, problems, strict=True):
        if reason:
            raise CorruptLogError(str(path), 0, reason)
        with open(path, "rb") as f:
            header = decode_segment_header(f.read(SEGMENT_HEADER_SIZE))
            size = os.fstat(f.fileno()).st_size
        if header.number != number:
            raise CorruptLogError(str(path), 0, f"header names segment {header.number}, not {number}")
        if header.segment_size != size:
            raise CorruptLogError(str(path), 0, f"header says {header.segment_size} bytes, file has {size}")
        if segments and number != segments[-1].number + 1:
            raise CorruptLogError(str(path), 0, f"segment {segments[-1].number + 1} is missing before it")
        segments.append(SegmentInfo(number, path, header.base_lsn, size))
    return segments, unused


def scan_segments(
    segments: list[SegmentInfo], sink: list[LogRecord] | None = None, min_lsn: int = 0
) -> TornTail | None:
    """Validate every record (filling ``count``/``end``); returns the torn tail to cut, if any.

    :raises CorruptLogError: a bad record in a segment other than the last, a bad record followed by
        a valid one, or a base LSN that does not continue the previous segment.
    """
    torn = None
    for i, seg in enumerate(segments):
        if i and seg.base_lsn != segments[i - 1].last_lsn + 1:
            raise CorruptLogError(
                str(seg.path), 0, f"base LSN {seg.base_lsn} does not follow LSN {segments[i - 1].last_lsn}"
            )
        size, mm = _read_map(seg.path)
        assert mm is not None
        try:
            result = scan_records(mm, SEGMENT_HEADER_SIZE, size, sink, seg.base_lsn, min_lsn)
            seg.count, seg.end = result.count, result.end
            bad = result.bad_offset
            if bad is None:
                continue
            if i != len(segments) - 1:
                raise CorruptLogError(str(seg.path), bad, result.reason)
            follow = find_valid_record(mm, bad + RECORD_ALIGN, size)
            if follow is not None:
                raise CorruptLogError(
                    str(seg.path), bad, f"{result.reason}; a valid record follows at {follow}"
                )
            torn = TornTail(seg.path, bad, data_end(mm, bad, size), result.reason)
        finally:
            mm.close()
    return torn


def zero_range(path: Path, start: int, end: int, *, fsync: bool) -> None:
    """Zero bytes [start, end) of a segment through a shared mapping, then fdatasync."""
    if end <= start:
        return
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mm:
            mm[start:end] = bytes(end - start)
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def _note(notes: list[str], text: str) -> None:
    logger.warning("%s", text)
    notes.append(text)


def choose_snapshot(snapshots_dir: Path, first_base: int | None, notes: list[str]) -> tuple[int, list[bytes]]:
    """The newest complete, valid snapshot the log can continue from: (LSN, chunks), or (0, []).

    Leftover ``.tmp`` files are removed; a damaged or partial snapshot is renamed ``*.broken`` (kept
    for inspection, never used or counted by compaction again).
    """
    for name in os.listdir(snapshots_dir):
        if name.endswith(TMP_SUFFIX):
            os.unlink(snapshots_dir / name)
            _note(notes, f"removed unfinished snapshot {snapshots_dir / name}")
    for lsn, path in reversed(list_snapshots(snapshots_dir)):
        if first_base is not None and lsn < first_base - 1:
            _note(notes, f"skipped snapshot {path}: the log no longer holds the records after LSN {lsn}")
            continue
        try:
            chunks = read_snapshot(path, lsn)
        except SnapshotError as exc:
            broken = path.with_name(path.name + BROKEN_SUFFIX)
            os.rename(path, broken)
            _note(notes, f"skipped damaged or partial snapshot {path} ({exc}); kept it as {broken.name}")
            continue
        return lsn, chunks
    return 0, []


def recover(queue_dir: Path, *, fsync: bool = True) -> RecoveredLog:
    """Recover one queue directory (creating it if needed); see `wal/FORMAT.md` "Recovery".

    :raises CorruptLogError: damage recovery must not guess about.
    :raises UnsupportedFormatError: a file of another format version.
    """
    wal_dir = queue_dir / WAL_DIR
    snapshots_dir = queue_dir / SNAPSHOTS_DIR
    wal_dir.mkdir(parents=True, exist_ok=True)
    snapshots_dir.mkdir(exist_ok=True)
    notes: list[str] = []
    numbers = [number for number, _ in list_segment_files(wal_dir)]
    segments, unused = inspect_segments(wal_dir)
    for path in unused:
        os.unlink(path)
        logger.info("removed unused prepared segment %s", path)
    if unused and fsync:
        fsync_dir(wal_dir)
    first_base = segments[0].base_lsn if segments else None
    snapshot_lsn, chunks = choose_snapshot(snapshots_dir, first_base, notes)
    if first_base is not None and first_base > snapshot_lsn + 1:
        raise CorruptLogError(
            str(segments[0].path), 0, f"the log starts at LSN {first_base} but no usable snapshot covers the "
            f"records before it (see {snapshots_dir})"
        )  # fmt: skip
    records: list[LogRecord] = []
    torn = scan_segments(segments, records, snapshot_lsn)
    if torn is not None:
        zero_range(torn.path, torn.offset, torn.end, fsync=fsync)
        _note(
            notes, f"cut a torn write at the end of {torn.path} at byte offset {torn.offset} ({torn.reason})"
        )
    if fsync:  # what recovery returns is durable, even if the crashed process never fsynced it
        for seg in segments:
            fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
    last_lsn = segments[-1].last_lsn if segments else snapshot_lsn
    if snapshot_lsn > last_lsn:
        raise CorruptLogError(
            str(segments[-1].path), segments[-1].end, f"the log ends at LSN {last_lsn} but a snapshot was "
            f"taken at LSN {snapshot_lsn}: records that were durable are missing"
        )  # fmt: skip
    recovery = Recovery(snapshot_lsn, chunks, records, notes)
    return RecoveredLog(recovery, segments, last_lsn, max(numbers, default=-1) + 1)
