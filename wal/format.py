"""Pure encoding and decoding of the on-disk format (`wal/FORMAT.md`): no files, no state.

Everything here works on any buffer (bytes, bytearray, mmap), so that recovery, repair, snapshots
and tests share one implementation of the framing.
"""

from __future__ import annotations

import gc
import mmap
import re
from dataclasses import dataclass
from typing import TypeAlias

from crc32c import crc32c

from .api import LogRecord
from .constants import (
    FORMAT_VERSION,
    MIN_RECORD_SIZE,
    RECORD_ALIGN,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    RECORD_LEN_TYPE,
    RECORD_TYPE_SKIP,
    SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    SEGMENT_PREFIX,
    SKIP_BODY,
    ZERO_CHUNK_SIZE,
)

#: Anything the framing functions read from or write to.
Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap

_ZEROS = bytes(ZERO_CHUNK_SIZE)
_NON_ZERO = re.compile(rb"[^\x00]")


def align(n: int) -> int:
    """Round ``n`` up to the record alignment (8 bytes)."""
    return (n + RECORD_ALIGN - 1) & -RECORD_ALIGN


def record_size(body_len: int) -> int:
    """Bytes a record with a body of ``body_len`` bytes occupies, padding included."""
    return align(RECORD_HEADER_SIZE + body_len)


def record_crc(rtype: int, body: Buffer) -> int:
    """The crc32c a record header carries: over length, type, the 3 pad bytes, then the body."""
    return crc32c(body, crc32c(RECORD_LEN_TYPE.pack(len(memoryview(body)), rtype)))


def encode_record(rtype: int, body: bytes) -> bytes:
    """One framed record, padded with zeros to a multiple of 8 bytes."""
    if not 0 < rtype < 256:
        raise ValueError(f"record type must be 1..255, got {rtype}")
    head = RECORD_HEADER.pack(record_crc(rtype, body), len(body), rtype)
    return head + body + bytes(record_size(len(body)) - RECORD_HEADER_SIZE - len(body))


def encode_skip(count: int, size: int) -> bytes:
    """A SKIP record standing for ``count`` lost LSNs that fills exactly ``size`` bytes.

    ``size`` is the damaged region it replaces: a multiple of 8, at least `MIN_RECORD_SIZE`. The
    body is the count followed by zeros, so the next record starts right after the region.
    """
    if size < MIN_RECORD_SIZE or size % RECORD_ALIGN:
        raise ValueError(
            f"a SKIP record needs a multiple of 8 of at least {MIN_RECORD_SIZE} bytes, not {size}"
        )
    if not 1 <= count < 1 << 32:
        raise ValueError(f"a SKIP record stands for 1 to 2**32 - 1 LSNs, not {count}")
    body = SKIP_BODY.pack(count) + bytes(size - RECORD_HEADER_SIZE - SKIP_BODY.size)
    return encode_record(RECORD_TYPE_SKIP, body)


def decode_skip(body: Buffer) -> int:
    """The number of LSNs a SKIP record's body stands for (0 when the body is too short: invalid)."""
    if len(memoryview(body)) < SKIP_BODY.size:
        return 0
    count: int = SKIP_BODY.unpack_from(body, 0)[0]
    return count


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The decoded 64-byte header of a segment file."""

    number: int
    base_lsn: int
    segment_size: int


def encode_segment_header(number: int, base_lsn: int, segment_size: int) -> bytes:
    """The 64 header bytes of a segment (the CRC covers the 60 bytes before it)."""
    fields = (SEGMENT_MAGIC, FORMAT_VERSION, SEGMENT_HEADER_SIZE, 0, number, base_lsn, segment_size)
    without_crc = SEGMENT_HEADER.pack(*fields, 0)[:-4]
    return SEGMENT_HEADER.pack(*fields, crc32c(without_crc))


class HeaderError(Exception):
    """A segment header is not valid; ``version`` is set when only the version is unknown."""

    def __init__(self, reason: str, version: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.version = version


def decode_segment_header(buf: Buffer) -> SegmentHeader:
    """Decode and check a segment header.

    :raises HeaderError: bad magic, unknown version (``version`` set), bad size or CRC.
    """
    view = bytes(memoryview(buf)[:SEGMENT_HEADER_SIZE])
    if len(view) < SEGMENT_HEADER_SIZE:
        raise HeaderError("file is shorter than a segment header")
    magic, version = SEGMENT_PREFIX.unpack_from(view, 0)
    if magic != SEGMENT_MAGIC:
        raise HeaderError("bad segment magic")
    if version != FORMAT_VERSION:
        raise HeaderError(f"unknown format version {version}", version=version)
    _, _, header_size, _, number, base_lsn, size, crc = SEGMENT_HEADER.unpack_from(view, 0)
    if crc32c(view[: SEGMENT_HEADER_SIZE - 4]) != crc:
        raise HeaderError("segment header checksum mismatch")
    if header_size != SEGMENT_HEADER_SIZE:
        raise HeaderError(f"unexpected segment header size {header_size}")
    if base_lsn < 1:
        raise HeaderError(f"invalid base LSN {base_lsn}")
    return SegmentHeader(number, base_lsn, size)


# --- zero checks ----------------------------------------------------------------------------------


def data_end(buf: Buffer, start: int, end: int) -> int:
    """Offset just past the last non-zero byte in ``buf[start:end]`` (``start`` if all zero).

    Compares 1 MiB chunks against zeros from the end (memcmp speed), never byte by byte in Python.
    """
    with memoryview(buf) as view:
        hi = end
        while hi > start:
            lo = max(start, hi - ZERO_CHUNK_SIZE)
            chunk = bytes(view[lo:hi])
            if chunk != _ZEROS[: hi - lo]:
                return lo + len(chunk.rstrip(b"\0"))
            hi = lo
        return start


def is_zero(buf: Buffer, start: int, end: int) -> bool:
    """True when ``buf[start:end]`` holds only zero bytes."""
    return data_end(buf, start, end) == start


# --- record scanning ------------------------------------------------------------------------------


@dataclass(slots=True)
class ScanResult:
    """What `scan_records` found in one segment."""

    #: Number of valid records, in order from the first.
    count: int
    #: Offset just past the last valid record (where the next record would go).
    end: int
    #: Offset of the first bad spot, or None when the segment ends cleanly.
    bad_offset: int | None = None
    #: Why the bad spot is bad.
    reason: str = ""
    #: The scan stopped at a valid SKIP record at ``end`` (the caller reads its count and resumes).
    skip: bool = False


def check_record(buf: Buffer, off: int, size: int) -> tuple[int, int, str]:
    """Check the record at ``off``: returns (type, body length, "") or (0, 0, reason) when invalid.

    Type 0 with length 0 and CRC 0 is the end of the log: returns (0, 0, "").
    """
    if off + RECORD_HEADER_SIZE > size:
        return 0, 0, "record header runs past the end of the segment"
    crc, length, rtype = RECORD_HEADER.unpack_from(buf, off)
    if rtype == 0:
        if length == 0 and crc == 0:
            return 0, 0, ""
        return 0, 0, "record type 0 with a non-zero length or checksum"
    end = off + RECORD_HEADER_SIZE + length
    if end > size:
        return 0, 0, f"record length {length} runs past the end of the segment"
    if crc32c(memoryview(buf)[off + 4 : end]) != crc:
        return 0, 0, "record checksum mismatch"
    return rtype, length, ""


def scan_records(
    buf: Buffer,
    start: int,
    size: int,
    sink: list[LogRecord] | None = None,
    base_lsn: int = 1,
    min_lsn: int = 0,
) -> ScanResult:
    """Walk the records of one segment from ``start`` and validate each.

    Stops at the end-of-log marker (a zero header followed only by zeros), at ``size``, or at the
    first bad spot (bad CRC, type 0 with a non-zero length, a length past the end, or a zero header
    followed by non-zero bytes). When ``sink`` is given, every valid record with an LSN above
    ``min_lsn`` is appended to it (the first record has LSN ``base_lsn``; bodies are copies).
    A valid SKIP record (`RECORD_TYPE_SKIP`) also stops the scan, with ``skip`` set and ``end`` at it:
    only the caller knows what LSN follows it.
    """
    data: bytes | mmap.mmap = buf if isinstance(buf, (bytes, mmap.mmap)) else bytes(buf)
    was_enabled = gc.isenabled()
    gc.disable()  # a million new LogRecords would trigger full collections again and again
    try:
        return _scan(data, start, size, sink, base_lsn, min_lsn)
    finally:
        if was_enabled:
            gc.enable()


def _scan(
    data: bytes | mmap.mmap, start: int, size: int, sink: list[LogRecord] | None, base_lsn: int, min_lsn: int
) -> ScanResult:
    # The hot loop of recovery (>= 500k records/s): one slice per record (mmap slicing returns
    # bytes), CRC over it, body sliced from it; no memoryview objects.
    unpack = RECORD_HEADER.unpack_from
    off = start
    count = 0
    limit = size - RECORD_HEADER_SIZE
    lsn = base_lsn
    while off <= limit:
        crc, length, rtype = unpack(data, off)
        end = off + RECORD_HEADER_SIZE + length
        if rtype == 0 or end > size:
            return _stop(data, off, size, count)
        covered = data[off + 4 : end]
        if crc32c(covered) != crc:
            return _stop(data, off, size, count)
        if rtype == RECORD_TYPE_SKIP:
            return ScanResult(count, off, skip=True)
        if sink is not None and lsn > min_lsn:
            sink.append(LogRecord(lsn, rtype, covered[8:]))
        lsn += 1
        count += 1
        off = (end + 7) & -8
    if off < size and not is_zero(data, off, size):
        return ScanResult(count, off, off, "record header runs past the end of the segment")
    return ScanResult(count, off)


def _stop(data: bytes | mmap.mmap, off: int, size: int, count: int) -> ScanResult:
    """The scan met a record that is not valid at ``off``: the end of the log or a bad spot."""
    crc, length, rtype = RECORD_HEADER.unpack_from(data, off)
    if rtype == 0 and length == 0 and crc == 0:
        if is_zero(data, off, size):
            return ScanResult(count, off)
        return ScanResult(count, off, off, "zero record header followed by non-zero bytes")
    _, _, reason = check_record(data, off, size)
    return ScanResult(count, off, off, reason)


def find_valid_record(buf: Buffer, start: int, size: int) -> int | None:
    """Offset of the first 8-aligned valid record at or after ``start``, or None.

    Used to tell a torn tail (nothing valid follows the bad spot) from damage in the middle of a log.
    Zero runs are skipped with a regex search (C speed); only offsets whose header could contain a
    non-zero byte are tried.
    """
    with memoryview(buf) as view:
        return _find_valid(view, start, size)


def _find_valid(view: memoryview, start: int, size: int) -> int | None:
    stop = data_end(view, start, size)
    off = align(start)
    while off < stop:
        match = _NON_ZERO.search(view, off, stop)
        if match is None:
            return None
        # The first header that can hold the non-zero byte at p starts at align(p - 11).
        off = max(off, align(match.start() - RECORD_HEADER_SIZE + 1))
        rtype, _, _ = check_record(view, off, size)
        if rtype:
            return off
        off += RECORD_ALIGN
    return None
