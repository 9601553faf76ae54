"""Recovery of one queue's directory: pick a snapshot, validate and replay segments, cut a torn tail.

`analyse` reads a queue's files and says everything about them (the records to replay, the damage
found, whether each piece of damage is harmless, where appending continues) without writing
anything but recovery's own housekeeping (and with ``dry=True`` nothing at all), so that `repair`
plans from exactly what recovery sees. `recover` raises for the first damage that matters and
otherwise makes the few changes recovery is allowed to (zeroing a torn tail).
The rules are specified in `wal/FORMAT.md` ("Recovery").
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .api import CorruptLogError, LogRecord, Recovery, UnsupportedFormatError
from .constants import (
    BROKEN_SUFFIX,
    FORMAT_VERSION,
    MIN_RECORD_SIZE,
    RECORD_ALIGN,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SEGMENT_NAME_RE,
    SNAPSHOTS_DIR,
    TMP_SUFFIX,
    WAL_DIR,
)
from .format import (
    HeaderError,
    align,
    data_end,
    decode_segment_header,
    decode_skip,
    find_valid_record,
    is_zero,
    record_crc,
    scan_records,
)
from .segment import fsync_dir
from .snapshot import SnapshotError, list_snapshots, read_snapshot

logger = logging.getLogger("spitfire.wal")


@dataclass(slots=True)
class Run:
    """Consecutive valid records of one segment, between damaged spots and SKIP records."""

    offset: int
    count: int
    #: Lowest LSN the first record can have; it may be up to ``slack`` higher (0: exact).
    lsn: int
    slack: int
    #: Records of the run that may lie above the snapshot, held back while ``slack`` is not 0
    #: (records of exact runs go straight to the recovery's list).
    held: list[LogRecord] = field(default_factory=list)


@dataclass(slots=True)
class Spot:
    """A damaged region of a segment: bytes [offset, end) hold no valid record."""

    path: Path
    offset: int
    end: int
    reason: str
    #: Lowest LSN the first record lost here can have; it may be up to ``slack`` higher.
    lsn: int
    slack: int
    #: How many records the region may have held (a record takes at least 16 bytes).
    lost_min: int
    lost_max: int
    #: No valid record follows the region in its segment.
    tail: bool = False
    #: A corrected 12-byte record header under which the region is one valid record again (only
    #: the header was damaged: see `restore_header`); repair writes it, recovery never does.
    restore: bytes | None = None

    @property
    def highest_lsn(self) -> int:
        """The highest LSN a record lost here can have had."""
        return self.lsn + self.slack + self.lost_max - 1

    def describe_loss(self) -> str:
        """'1 record (LSN 25)', 'between 1 and 7 records (LSNs 25 to 31)', 'no record'."""
        if self.lost_max == 0:
            return "no record"
        if self.lost_min == self.lost_max and not self.slack:
            if self.lost_max == 1:
                return f"1 record (LSN {self.lsn})"
            return f"{self.lost_max} records (LSNs {self.lsn} to {self.highest_lsn})"
        return (
            f"between {self.lost_min} and {self.lost_max} records (LSNs from {self.lsn} to at most "
            f"{self.highest_lsn}; the exact number cannot be known)"
        )


@dataclass(slots=True)
class SegmentInfo:
    """One used segment file found on disk, and what scanning it found."""

    number: int
    path: Path
    base_lsn: int
    #: Segment size from the header: what the writer maps (the file should be exactly this big).
    size: int
    #: Size of the file on disk.
    file_size: int = 0
    #: Why the header is unreadable ("" when it is fine); ``base_lsn`` is then a stand-in.
    header_problem: str = ""
    #: Valid records (SKIP records not counted).
    count: int = 0
    #: Offset after the last valid record (where the next record would go).
    end: int = SEGMENT_HEADER_SIZE
    #: Lowest LSN the record after the last one can have; it may be up to ``slack`` higher.
    end_lsn: int = 0
    slack: int = 0
    runs: list[Run] = field(default_factory=list)
    spots: list[Spot] = field(default_factory=list)

    @property
    def last_lsn(self) -> int:
        """LSN of the last valid record (base_lsn - 1 when empty; the lowest possible if uncertain)."""
        return self.end_lsn - 1

    @property
    def short(self) -> bool:
        """The file is smaller than its header says (cut short)."""
        return self.file_size < self.size


@dataclass(slots=True)
class TornTail:
    """A torn write at the end of the last segment: bytes [offset, end) are to be zeroed."""

    path: Path
    offset: int
    end: int
    reason: str


@dataclass(slots=True)
class Problem:
    """Damage that stops start-up (``error`` is what recovery raises for it)."""

    error: CorruptLogError
    #: Where it is: the segment, and the spot when the damage is a region of records.
    segment: SegmentInfo | None = None
    spot: Spot | None = None
    #: "spot", "header", "boundary", "start", "short", "uncertain"
    kind: str = "spot"


@dataclass(slots=True)
class Analysis:
    """Everything `analyse` found in one queue's directory."""

    queue_dir: Path
    snapshot_lsn: int = 0
    chunks: list[bytes] = field(default_factory=list)
    #: Used segments, oldest first (the last may be the one to append to).
    segments: list[SegmentInfo] = field(default_factory=list)
    #: Unused prepared segment files after the last used one (deleted unless ``dry``).
    unused: list[Path] = field(default_factory=list)
    #: Records above the snapshot, in LSN order.
    records: list[LogRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: Damage found that does not matter (already in ``notes``): covered by the snapshot.
    harmless: list[str] = field(default_factory=list)
    torn: TornTail | None = None
    #: The last segment must not be appended to: appending continues in a new segment.
    sealed: bool = False
    #: LSN of the last record (new records continue after it; never below the snapshot's).
    last_lsn: int = 0


@dataclass(slots=True)
class RecoveredLog:
    """What `recover` found and fixed; `FileStorage` builds the `FileQueueLog` from it."""

    recovery: Recovery
    #: Used segments, oldest first (the last is the one to append to unless ``sealed``). Empty for
    #: a new log.
    segments: list[SegmentInfo] = field(default_factory=list)
    #: LSN of the last record (0 for an empty log; the snapshot LSN if all segments are gone).
    last_lsn: int = 0
    #: Number for a new segment if ``segments`` is empty or ``sealed``.
    next_number: int = 0
    #: Appending must continue in a new segment (number ``next_number``, base LSN ``last_lsn + 1``):
    #: the last one holds damage, is cut short, or ends below the snapshot's LSN.
    sealed: bool = False


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


def _read_header(path: Path, number: int) -> tuple[SegmentInfo | None, str, bool]:
    """(info, problem, rest is zero): info is None when the header is not valid."""
    size, mm = _read_map(path)
    if mm is None:
        return None, "empty file", True
    try:
        try:
            header = decode_segment_header(mm)
        except HeaderError as exc:
            if exc.version is not None:
                raise UnsupportedFormatError(str(path), exc.version, FORMAT_VERSION) from None
            return None, exc.reason, is_zero(mm, SEGMENT_HEADER_SIZE, size)
        if header.number != number:
            return None, f"header names segment {header.number}, not {number}", False
        if header.segment_size < SEGMENT_HEADER_SIZE + MIN_RECORD_SIZE:
            return None, f"header gives an impossible segment size {header.segment_size}", False
        info = SegmentInfo(number, path, header.base_lsn, header.segment_size, size)
        return info, "", False
    finally:
        mm.close()


def inspect_segments(wal_dir: Path) -> tuple[list[SegmentInfo], list[Path]]:
    """Read segment headers: returns (used segments, unused trailing files to delete).

    A file without a valid header after the last used segment is an unused prepared segment when
    the rest of it is zero. A used segment whose header is not valid is returned with
    ``header_problem`` set (whether that matters depends on the snapshot: see `analyse`).

    :raises CorruptLogError: a trailing file without a valid header that holds data.
    :raises UnsupportedFormatError: a segment of another format version.
    """
    files = list_segment_files(wal_dir)
    found = [(number, path, *_read_header(path, number)) for number, path in files]
    unused: list[Path] = []
    while found and found[-1][2] is None:
        _, path, _, reason, empty = found.pop()
        if not empty:
            raise CorruptLogError(str(path), 0, f"{reason} in a segment that holds data")
        unused.append(path)
    segments: list[SegmentInfo] = []
    next_base = 0
    for number, path, info, reason, _ in reversed(found):
        if info is None:  # stand-in values: the next segment's base keeps compaction's order
            size = os.stat(path).st_size
            info = SegmentInfo(number, path, next_base, size, size, header_problem=reason)
            info.end_lsn = next_base
        next_base = info.base_lsn
        segments.append(info)
    segments.reverse()
    return segments, unused


def _scan_segment(seg: SegmentInfo, sink: list[LogRecord], min_lsn: int) -> None:
    """Scan one segment with a valid header, resynchronising after damage (fills ``seg``).

    Records whose LSN is exact and above ``min_lsn`` go to ``sink``; after damage whose size in
    records is unknown, records are held in their `Run` (resolved by `_resolve`).
    """
    limit = min(seg.size, seg.file_size)
    lsn, slack = seg.base_lsn, 0
    off = SEGMENT_HEADER_SIZE
    fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        mm = mmap.mmap(fd, limit, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        while True:
            run = Run(off, 0, lsn, slack)
            # Held records: keep every one whose highest possible LSN may be above min_lsn.
            target, floor = (sink, min_lsn) if not slack else (run.held, min_lsn - slack)
            result = scan_records(mm, off, limit, target, lsn, floor)
            if result.count:
                run.count = result.count
                seg.runs.append(run)
                seg.count += result.count
                lsn += result.count
            off = result.end
            if result.skip:
                _, length, _ = RECORD_HEADER.unpack_from(mm, off)
                lost = decode_skip(mm[off + RECORD_HEADER_SIZE : off + RECORD_HEADER_SIZE + length])
                if lost:
                    lsn += lost
                    off = align(off + RECORD_HEADER_SIZE + length)
                    continue
                result.bad_offset, result.reason = off, "SKIP record without a count"
            if result.bad_offset is None:
                if off >= limit and seg.short:  # the file ends where records could have continued
                    room = (seg.size - limit) // MIN_RECORD_SIZE
                    seg.spots.append(
                        Spot(seg.path, limit, limit, f"the file ends at byte {limit} but its header says "
                             f"{seg.size} bytes: it was cut short", lsn, slack, 0, room, tail=True)
                    )  # fmt: skip
                    slack += room
                break
            bad = result.bad_offset
            follow = find_valid_record(mm, bad + RECORD_ALIGN, limit)
            if follow is None:  # nothing valid after it: a torn tail, or garbage after the end
                room = (seg.size - bad) // MIN_RECORD_SIZE
                end = align(data_end(mm, bad, limit))
                reason = result.reason
                if seg.short:
                    reason += (
                        f"; the file ends at byte {limit}, its header says {seg.size} bytes: it was cut short"
                    )
                spot = Spot(seg.path, bad, end, reason, lsn, slack, 0, room, tail=True)
                seg.spots.append(spot)
                slack += room
                off = bad
                break
            _, length, _ = RECORD_HEADER.unpack_from(mm, bad)
            restore = restore_header(mm, bad, follow)
            if restore is not None or (
                bad + RECORD_HEADER_SIZE + length <= limit
                and align(bad + RECORD_HEADER_SIZE + length) == follow
            ):
                most = 1  # its length field (or its restored header) leads exactly to the next record
            else:
                most = (follow - bad) // MIN_RECORD_SIZE
            reason = f"{result.reason}; a valid record follows at byte offset {follow}"
            seg.spots.append(Spot(seg.path, bad, follow, reason, lsn, slack, 1, most, restore=restore))
            lsn += 1
            slack += most - 1
            off = follow
        seg.end = off
        seg.end_lsn, seg.slack = lsn, slack
    finally:
        mm.close()


#: Largest body whose type byte `restore_header` tries all 255 values for (each try is a crc32c).
_RESTORE_TYPE_MAX_BODY = 1 << 16


def restore_header(buf: mmap.mmap, off: int, follow: int) -> bytes | None:
    """A corrected header for the bad record at ``off`` whose successor is at ``follow``, or None.

    When only the header's length, type or padding bytes were damaged, the stored CRC still
    matches the body under the right header: try every length that ends the record at ``follow``,
    every type with the stored length, and zeroed padding. Exactly one match is a restoration (a
    wrong match has a chance of about 2**-32 per try); none or several is None.
    """
    crc, stored_len, stored_type = RECORD_HEADER.unpack_from(buf, off)
    room = follow - off - RECORD_HEADER_SIZE
    candidates: set[tuple[int, int]] = set()
    for length in range(max(0, room - RECORD_ALIGN + 1), room + 1):
        if stored_type:
            candidates.add((length, stored_type))
    if align(off + RECORD_HEADER_SIZE + stored_len) == follow and stored_len <= _RESTORE_TYPE_MAX_BODY:
        candidates.update((stored_len, t) for t in range(1, 256))
    matches = [
        (length, rtype)
        for length, rtype in candidates
        if record_crc(rtype, buf[off + RECORD_HEADER_SIZE : off + RECORD_HEADER_SIZE + length]) == crc
    ]
    if len(matches) != 1:
        return None
    length, rtype = matches[0]
    return RECORD_HEADER.pack(crc, length, rtype)


def _resolve(seg: SegmentInfo, next_base: int) -> None:
    """Use the next segment's base LSN to settle how many records the damage in ``seg`` lost.

    Possible when exactly one spot's size in records is uncertain: it lost whatever makes the
    segment end where the next one begins; every run and spot after it becomes exact.
    """
    if not seg.slack or not seg.end_lsn <= next_base <= seg.end_lsn + seg.slack:
        return
    vague = [s for s in seg.spots if s.lost_min != s.lost_max]
    if len(vague) != 1:
        return
    spot, extra = vague[0], next_base - seg.end_lsn
    # Only the vague spot adds slack, so everything after it is exact once its size is known.
    spot.lost_min = spot.lost_max = spot.lost_min + extra
    for later in seg.spots[seg.spots.index(spot) + 1 :]:
        later.lsn += extra
        later.slack = 0
    for run in seg.runs:
        if run.offset >= spot.end and run.slack:
            run.lsn += extra
            run.slack = 0
            for record in run.held:
                record.lsn += extra
    seg.end_lsn, seg.slack = next_base, 0


def _note(notes: list[str], text: str, *, quiet: bool = False) -> None:
    if not quiet:
        logger.warning("%s", text)
    notes.append(text)


def choose_snapshot(
    snapshots_dir: Path, first_base: int | None, notes: list[str], *, dry: bool = False, quiet: bool = False
) -> tuple[int, list[bytes]]:
    """The newest complete, valid snapshot the log can continue from: (LSN, chunks), or (0, []).

    Leftover ``.tmp`` files are removed; a damaged or partial snapshot is renamed ``*.broken`` (kept
    for inspection, never used or counted by compaction again). ``dry`` changes nothing.
    """
    if not snapshots_dir.is_dir():
        return 0, []
    for name in os.listdir(snapshots_dir):
        if name.endswith(TMP_SUFFIX) and not dry:
            os.unlink(snapshots_dir / name)
            _note(notes, f"removed unfinished snapshot {snapshots_dir / name}", quiet=quiet)
    for lsn, path in reversed(list_snapshots(snapshots_dir)):
        if first_base is not None and lsn < first_base - 1:
            _note(
                notes,
                f"skipped snapshot {path}: the log no longer holds the records after LSN {lsn}",
                quiet=quiet,
            )
            continue
        try:
            chunks = read_snapshot(path, lsn)
        except SnapshotError as exc:
            broken = path.with_name(path.name + BROKEN_SUFFIX)
            if not dry:
                os.rename(path, broken)
            _note(
                notes,
                f"skipped damaged or partial snapshot {path} ({exc}); kept it as {broken.name}",
                quiet=quiet,
            )
            continue
        return lsn, chunks
    return 0, []


def _problem(
    found: Analysis,
    kind: str,
    path: Path,
    offset: int,
    reason: str,
    segment: SegmentInfo | None = None,
    spot: Spot | None = None,
) -> None:
    found.problems.append(Problem(CorruptLogError(str(path), offset, reason), segment, spot, kind))


def _harmless(found: Analysis, text: str, quiet: bool) -> None:
    found.harmless.append(text)
    _note(found.notes, text, quiet=quiet)


def _judge_spots(found: Analysis, seg: SegmentInfo, last: bool, quiet: bool) -> None:
    """Sort the damaged spots of ``seg``: torn tail, harmless, or a problem."""
    s = found.snapshot_lsn
    for spot in seg.spots:
        where = f"{spot.path} at byte offset {spot.offset} ({spot.reason})"
        if last and spot.tail and not seg.short:
            # A torn write: its records were never acknowledged, so they count for nothing.
            found.torn = TornTail(seg.path, spot.offset, spot.end, spot.reason)
            seg.slack -= spot.lost_max - spot.lost_min
            spot.lost_max = spot.lost_min
        elif spot.lost_max == 0:
            _harmless(found, f"{where}: no record was lost there; ignored", quiet)
        elif spot.highest_lsn <= s:
            _harmless(
                found, f"{where}: damage at or below the snapshot's LSN {s} (it lost {spot.describe_loss()}, "
                "which the snapshot reflects); skipped, compaction will delete the segment", quiet,
            )  # fmt: skip
        else:
            _problem(
                found, "short" if seg.short and spot.tail else "spot", spot.path, spot.offset,
                f"{spot.reason}; {spot.describe_loss()} lost there", segment=seg, spot=spot,
            )  # fmt: skip


def _judge_runs(found: Analysis, seg: SegmentInfo) -> None:
    """Hand over held runs whose LSNs are now exact; a run of unknown LSNs above the snapshot is a
    problem (of the spot that made them unknown)."""
    s = found.snapshot_lsn
    for run in seg.runs:
        if not run.slack:
            found.records.extend(r for r in run.held if r.lsn > s)
        elif run.lsn + run.slack + run.count - 1 > s:
            spot = next(x for x in reversed(seg.spots) if x.offset < run.offset and x.lost_max > x.lost_min)
            _problem(
                found, "uncertain", spot.path, spot.offset, f"{spot.reason}; {spot.describe_loss()} lost "
                f"there, so the LSNs of the {run.count} records after it cannot be known",
                segment=seg, spot=spot,
            )  # fmt: skip


def _judge_boundary(found: Analysis, seg: SegmentInfo, nxt: SegmentInfo, quiet: bool) -> None:
    """The next segment must start where ``seg`` ends, unless the snapshot covers the difference."""
    s = found.snapshot_lsn
    low, high = seg.end_lsn, seg.end_lsn + seg.slack
    if low <= nxt.base_lsn <= high:
        return
    text = f"base LSN {nxt.base_lsn} does not follow LSN {seg.last_lsn} of {seg.path.name}"
    if nxt.base_lsn > high:
        text += f": records {high} to {nxt.base_lsn - 1} are missing"
    if nxt.base_lsn - 1 <= s and high - 1 <= s:
        _harmless(found, f"{nxt.path}: {text}; the snapshot at LSN {s} covers the records in between", quiet)
    else:
        _problem(found, "boundary", nxt.path, 0, text, segment=nxt)


def _judge_tail(found: Analysis, tail: SegmentInfo, quiet: bool) -> None:
    """Where appending continues: after the last record, never at or below the snapshot's LSN, and
    in a new segment when the last one holds damage, is cut short or ends below the snapshot."""
    s = found.snapshot_lsn
    found.last_lsn = max(s, tail.end_lsn + tail.slack - 1)
    torn_at = found.torn.offset if found.torn is not None else -1
    found.sealed = bool(
        tail.short or tail.slack or any(spot.offset != torn_at for spot in tail.spots) or tail.end_lsn - 1 < s
    )
    if tail.short and not tail.spots:
        _harmless(
            found, f"{tail.path} is shorter than its header says, after the end of its records; new "
            "records go to a new segment", quiet,
        )  # fmt: skip
    if tail.end_lsn - 1 < s:
        _note(
            found.notes, f"the log ends at LSN {tail.end_lsn - 1}, below the snapshot's LSN {s}: the records "
            f"in between are reflected by the snapshot; new records continue at LSN {s + 1} in a new "
            "segment", quiet=quiet,
        )  # fmt: skip


def analyse(queue_dir: Path, *, dry: bool = False, quiet: bool = False) -> Analysis:
    """Read one queue's directory the way recovery does; see `wal/FORMAT.md` "Recovery".

    Damage is sorted into harmless (every record it can have held is at or below the chosen
    snapshot's LSN, or it provably lost no record: noted and skipped) and ``problems`` (anything
    else except a torn tail, which `recover` cuts). Without ``dry`` it removes unfinished snapshots,
    renames damaged ones and deletes unused prepared segments, as recovery always did; with ``dry``
    it writes nothing (for ``repair --dry-run``). ``quiet`` keeps the notes out of the log.

    :raises CorruptLogError: a trailing segment without a header that holds data.
    :raises UnsupportedFormatError: a file of another format version.
    """
    found = Analysis(queue_dir)
    wal_dir, snapshots_dir = queue_dir / WAL_DIR, queue_dir / SNAPSHOTS_DIR
    notes = found.notes
    if not wal_dir.is_dir():
        found.snapshot_lsn, found.chunks = choose_snapshot(snapshots_dir, None, notes, dry=dry, quiet=quiet)
        found.last_lsn = found.snapshot_lsn
        return found
    segments, found.unused = inspect_segments(wal_dir)
    if not dry:
        for path in found.unused:
            os.unlink(path)
            logger.info("removed unused prepared segment %s", path)
    found.segments = segments
    readable = [seg for seg in segments if not seg.header_problem]
    first_base = readable[0].base_lsn if readable else None
    s, found.chunks = choose_snapshot(snapshots_dir, first_base, notes, dry=dry, quiet=quiet)
    found.snapshot_lsn = s

    if readable and readable[0].base_lsn > s + 1:
        _problem(
            found, "start", readable[0].path, 0, f"the log starts at LSN {readable[0].base_lsn} but no "
            f"usable snapshot covers the records before it (see {snapshots_dir})", segment=readable[0],
        )  # fmt: skip
    for i, seg in enumerate(segments):
        nxt = segments[i + 1] if i + 1 < len(segments) else None
        if seg.header_problem:
            later = next((x for x in segments[i + 1 :] if not x.header_problem), None)
            if later is not None and later.base_lsn - 1 <= s:
                _harmless(
                    found, f"{seg.path} has a damaged header ({seg.header_problem}); every record it can "
                    f"hold is at or below the snapshot's LSN {s}: skipped, compaction will delete it", quiet,
                )  # fmt: skip
            else:
                _problem(found, "header", seg.path, 0, seg.header_problem, segment=seg)
            continue
        if seg.file_size > seg.size and not is_zero_file(seg.path, seg.size, seg.file_size):
            _harmless(
                found, f"{seg.path} has bytes after the {seg.size} its header gives; they are ignored", quiet
            )
        _scan_segment(seg, found.records, s)
        if nxt is not None and not nxt.header_problem:
            _resolve(seg, nxt.base_lsn)
        _judge_spots(found, seg, nxt is None, quiet)
        _judge_runs(found, seg)
        if nxt is not None and not nxt.header_problem:
            _judge_boundary(found, seg, nxt, quiet)
    found.problems.sort(key=lambda p: (segments.index(p.segment) if p.segment else -1, p.error.offset))
    if readable:
        _judge_tail(found, segments[-1], quiet)
    else:
        found.last_lsn = s
    return found


def is_zero_file(path: Path, start: int, end: int) -> bool:
    """True when bytes [start, end) of the file are all zero."""
    size, mm = _read_map(path)
    if mm is None:
        return True
    try:
        return is_zero(mm, start, min(end, size))
    finally:
        mm.close()


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


def locator(segments: list[SegmentInfo]) -> Callable[[int], tuple[str, int] | None]:
    """`Recovery.locate` for these scanned segments: the (file, byte offset) of the record at an LSN.

    Keeps only the runs (a few numbers per segment); the offset is found by walking record headers
    from the start of the run, which is only done for an error message.
    """
    runs = [
        (seg.path, run.offset, run.lsn, run.count) for seg in segments for run in seg.runs if not run.slack
    ]

    def locate(lsn: int) -> tuple[str, int] | None:
        for path, offset, first, count in runs:
            if first <= lsn < first + count:
                _, mm = _read_map(path)
                if mm is None:
                    return None
                try:
                    for _ in range(lsn - first):
                        _, length, _ = RECORD_HEADER.unpack_from(mm, offset)
                        offset = align(offset + RECORD_HEADER_SIZE + length)
                finally:
                    mm.close()
                return str(path), offset
        return None

    return locate


def recover(queue_dir: Path, *, fsync: bool = True) -> RecoveredLog:
    """Recover one queue directory (creating it if needed); see `wal/FORMAT.md` "Recovery".

    Damage that only touches records at or below the chosen snapshot's LSN is logged as a warning
    (file and byte offset) and skipped; a torn tail in the last segment is zeroed.

    :raises CorruptLogError: damage recovery must not guess about (the first one, by file and offset).
    :raises UnsupportedFormatError: a file of another format version.
    """
    wal_dir = queue_dir / WAL_DIR
    snapshots_dir = queue_dir / SNAPSHOTS_DIR
    wal_dir.mkdir(parents=True, exist_ok=True)
    snapshots_dir.mkdir(exist_ok=True)
    numbers = [number for number, _ in list_segment_files(wal_dir)]
    found = analyse(queue_dir)
    if found.unused and fsync:
        fsync_dir(wal_dir)
    if found.problems:
        raise found.problems[0].error
    torn = found.torn
    if torn is not None:
        zero_range(torn.path, torn.offset, torn.end, fsync=fsync)
        _note(
            found.notes,
            f"cut a torn write at the end of {torn.path} at byte offset {torn.offset} ({torn.reason})",
        )
    if fsync:  # what recovery returns is durable, even if the crashed process never fsynced it
        for seg in found.segments:
            fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
    recovery = Recovery(
        found.snapshot_lsn, found.chunks, found.records, found.notes, locate=locator(found.segments)
    )
    next_number = max(numbers, default=-1) + 1
    return RecoveredLog(recovery, found.segments, found.last_lsn, next_number, found.sealed)
