"""Framing and encoding: golden bytes, alignment, scanning, resync."""

from __future__ import annotations

import pytest

from spitfire.wal.constants import FORMAT_VERSION, SEGMENT_HEADER_SIZE
from spitfire.wal.format import (
    HeaderError,
    align,
    decode_segment_header,
    encode_record,
    encode_segment_header,
    find_valid_record,
    is_zero,
    record_size,
    scan_records,
)

# Golden bytes: if these change, the on-disk format changed (bump FORMAT_VERSION, update FORMAT.md).
GOLDEN_HEADER = (
    "53504657414c0d0a"  # magic "SPFWAL\r\n"
    "0100"  # version 1
    "4000"  # header size 64
    "00000000"  # reserved
    "0700000000000000"  # segment number 7
    "e903000000000000"  # base LSN 1001
    "0000010000000000"  # segment size 65536
    + "00" * 20  # reserved
    + "63da8f5e"  # crc32c of the 60 bytes before
)
# crc32c | length 5 | type 1 + 3 pad | "abcde" | 7 zero bytes: 17 rounded up to 24
GOLDEN_RECORD_1 = "ff0add3a0500000001000000616263646500000000000000"
# crc32c | length 0 | type 2 + 3 pad | 4 zero bytes of padding
GOLDEN_RECORD_2 = "0b914f33000000000200000000000000"


def test_segment_header_golden_bytes() -> None:
    header = encode_segment_header(7, 1001, 65536)
    assert len(header) == SEGMENT_HEADER_SIZE == 64
    assert header.hex() == GOLDEN_HEADER
    decoded = decode_segment_header(header)
    assert (decoded.number, decoded.base_lsn, decoded.segment_size) == (7, 1001, 65536)


def test_record_golden_bytes() -> None:
    assert encode_record(1, b"abcde").hex() == GOLDEN_RECORD_1
    assert encode_record(2, b"").hex() == GOLDEN_RECORD_2


def test_records_are_8_byte_aligned() -> None:
    for n in range(0, 40):
        assert len(encode_record(3, b"x" * n)) == record_size(n) == align(12 + n)
        assert record_size(n) % 8 == 0


@pytest.mark.parametrize("rtype", [0, 256, -1])
def test_invalid_record_types(rtype: int) -> None:
    with pytest.raises(ValueError, match="record type"):
        encode_record(rtype, b"x")


def test_header_errors() -> None:
    header = bytearray(encode_segment_header(1, 1, 65536))
    with pytest.raises(HeaderError, match="shorter"):
        decode_segment_header(bytes(header[:10]))
    bad = bytearray(header)
    bad[40] ^= 1
    with pytest.raises(HeaderError, match="checksum"):
        decode_segment_header(bad)
    bad = bytearray(header)
    bad[0] = ord("X")
    with pytest.raises(HeaderError, match="magic"):
        decode_segment_header(bad)
    bad = bytearray(header)
    bad[8] = FORMAT_VERSION + 1
    with pytest.raises(HeaderError) as info:
        decode_segment_header(bad)
    assert info.value.version == FORMAT_VERSION + 1


def _segment(*records: bytes, size: int = 4096) -> bytearray:
    buf = bytearray(size)
    off = 64
    for rec in records:
        buf[off : off + len(rec)] = rec
        off += len(rec)
    return buf


def test_scan_reads_records_and_stops_at_zeros() -> None:
    from spitfire.wal import LogRecord

    buf = _segment(encode_record(1, b"a"), encode_record(2, b"bb"), encode_record(3, b""))
    sink: list[LogRecord] = []
    result = scan_records(buf, 64, len(buf), sink, base_lsn=10, min_lsn=10)
    assert result.count == 3 and result.bad_offset is None
    assert result.end == 64 + 16 + 16 + 16
    assert [(r.lsn, r.rtype, r.body) for r in sink] == [(11, 2, b"bb"), (12, 3, b"")]


def test_scan_reports_bad_spots() -> None:
    a, b = encode_record(1, b"hello"), encode_record(2, b"world")
    buf = _segment(a, b)
    buf[64 + len(a) + 13] ^= 0x40  # body of the second record
    result = scan_records(buf, 64, len(buf))
    assert (result.count, result.bad_offset, result.reason) == (1, 64 + len(a), "record checksum mismatch")
    buf = _segment(a)
    buf[64 + len(a) + 100] = 1  # garbage after the end marker
    result = scan_records(buf, 64, len(buf))
    assert result.bad_offset == 64 + len(a) and "non-zero" in result.reason
    buf = _segment(a)
    buf[64 + len(a) + 4] = 200  # a length with type 0
    assert "type 0" in scan_records(buf, 64, len(buf)).reason
    buf = _segment(a)
    buf[64 + len(a) : 64 + len(a) + 12] = bytes.fromhex("01000000ffff000007000000")
    assert "past the end" in scan_records(buf, 64, len(buf)).reason


def test_find_valid_record_skips_garbage() -> None:
    a = encode_record(5, b"payload")
    buf = _segment(b"\xff" * 24, a)
    assert find_valid_record(buf, 64, len(buf)) == 64 + 24
    assert find_valid_record(_segment(b"\xff" * 24), 64, 4096) is None
    assert find_valid_record(bytes(4096), 64, 4096) is None


def test_is_zero_large_buffers() -> None:
    buf = bytearray(3 * 2**20 + 5)
    assert is_zero(buf, 0, len(buf))
    buf[-1] = 1
    assert not is_zero(buf, 0, len(buf))
    assert is_zero(buf, 0, len(buf) - 1)
