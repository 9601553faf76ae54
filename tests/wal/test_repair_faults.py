"""Real damage on disk (flipped bytes, cut and extended files, garbage) below and above a snapshot:
recovery skips what the snapshot covers, repair drops exactly the damaged records and nothing else."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from walhelpers import SMALL, body_for, segment_files

from spitfire.wal import CorruptLogError, Durability, FileStorage, Recovery
from spitfire.wal.format import record_size
from spitfire.wal.repair import RepairError, repair

Run = Any
BODY = 300
#: Records of BODY bytes per SMALL segment (64 KiB, less the 1/8 reserve for plain appends).
STEP = record_size(BODY)


async def _append(data_dir: Path, start: int, n: int, snapshot: bool = False) -> int:
    """Append records start+1..start+n (bodies body_for(lsn)); optionally snapshot; returns its LSN."""
    storage = FileStorage(data_dir, SMALL)
    log, _ = storage.open_log("q", Durability.GROUP)
    assert log.last_lsn == start
    for lsn in range(start + 1, start + n + 1):
        log.append(1, body_for(lsn, BODY))
    lsn = 0
    if snapshot:
        writer = log.snapshot()
        lsn = writer.lsn
        writer.add(f"state@{lsn}".encode())
        await writer.finish()
    await storage.close()
    return lsn


async def _recover(data_dir: Path, then_append: int = 0) -> tuple[Recovery, int]:
    """Recover; optionally append ``then_append`` records; returns (recovery, LSN of the last append)."""
    storage = FileStorage(data_dir, SMALL)
    try:
        log, recovery = storage.open_log("q", Durability.GROUP)
        lsn = log.last_lsn
        for _ in range(then_append):
            lsn = log.append(1, body_for(log.last_lsn + 1, BODY))
        recovery.records = list(recovery.records)
        return recovery, lsn
    finally:
        await storage.close()


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _offset_of(lsn: int, base: int = 1) -> int:
    """Byte offset of the record ``lsn`` in the segment whose base is ``base`` (equal-sized records)."""
    return 64 + (lsn - base) * STEP


def _lsns(recovery: Recovery) -> list[int]:
    records = list(recovery.records)
    assert all(r.body == body_for(r.lsn, BODY) for r in records)
    return [r.lsn for r in records]


def test_damage_below_the_snapshot_is_harmless(tmp_path: Path, run: Run) -> None:
    """The issue's case: LSN 2 of 150 fails its CRC, a snapshot at 150 covers it: the log opens."""
    snap = run(_append(tmp_path, 0, 150, snapshot=True))
    assert snap == 150
    first = segment_files(tmp_path)[0]
    _flip(first, _offset_of(2) + 40)
    recovery, lsn = run(_recover(tmp_path, then_append=3))
    assert recovery.snapshot_lsn == 150 and _lsns(recovery) == []
    assert any(str(first) in n and f"offset {_offset_of(2)}" in n and "snapshot" in n for n in recovery.notes)
    assert lsn == 153  # numbering continues after the snapshot, never reusing what it covers
    recovery, _ = run(_recover(tmp_path))
    assert _lsns(recovery) == [151, 152, 153]
    assert repair(tmp_path, confirm=lambda _: pytest.fail("nothing to ask")).nothing_to_do


def test_damage_below_the_snapshot_in_the_last_segment_seals_it(tmp_path: Path, run: Run) -> None:
    """Damage in the segment still being appended to: new records go to a new segment."""
    run(_append(tmp_path, 0, 20, snapshot=True))
    (seg,) = segment_files(tmp_path)
    _flip(seg, _offset_of(5) + 100)
    recovery, lsn = run(_recover(tmp_path, then_append=2))
    assert lsn == 22 and len(segment_files(tmp_path)) == 2 and recovery.notes
    assert _lsns(run(_recover(tmp_path))[0]) == [21, 22]


def test_damage_of_unknown_size_is_harmless_only_if_the_snapshot_bounds_it(tmp_path: Path, run: Run) -> None:
    """Length and body both hit: the region may have held up to 19 records, so LSNs 5..23 may be
    lost; a snapshot at 20 does not cover that. Repair assumes the most (LSNs are never reused)."""
    run(_append(tmp_path, 0, 20, snapshot=True))
    (seg,) = segment_files(tmp_path)
    _flip(seg, _offset_of(5) + 4)
    _flip(seg, _offset_of(5) + 100)
    with pytest.raises(CorruptLogError, match="between 1 and 19 records"):
        run(_recover(tmp_path))
    done = repair(tmp_path, confirm=lambda _: True)
    assert not done.damage_left and "between 1 and 19 record(s) dropped" in done.lines[0]
    recovery, lsn = run(_recover(tmp_path, then_append=1))
    assert _lsns(recovery) == [] and lsn == 21  # one record assumed lost: LSNs 6..20 stay below the snapshot


def test_damage_above_the_snapshot_stops_start_up_and_repair_drops_only_that_record(
    tmp_path: Path, run: Run
) -> None:
    run(_append(tmp_path, 0, 100, snapshot=True))
    run(_append(tmp_path, 100, 200))
    segs = segment_files(tmp_path)
    recovery, _ = run(_recover(tmp_path))
    victim = 250
    # Find the segment and offset of LSN 250 from the storage itself.
    path, offset = recovery.locate(victim) or ("", 0)
    assert path in map(str, segs)
    _flip(Path(path), offset + 50)
    with pytest.raises(CorruptLogError) as info:
        run(_recover(tmp_path))
    assert info.value.path == path and info.value.offset == offset
    before = {p: p.read_bytes() for p in segs}
    plan = repair(tmp_path, confirm=lambda _: True, dry_run=True)
    assert plan.damage_left and "(LSN 250)" in plan.lines[0] and "1 record(s) dropped" in plan.lines[0]
    assert {p: p.read_bytes() for p in segs} == before  # the dry run changed nothing
    done = repair(tmp_path, confirm=lambda _: True)
    assert not done.damage_left
    recovery, lsn = run(_recover(tmp_path, then_append=1))
    assert _lsns(recovery) == [n for n in range(101, 301) if n != victim] and lsn == 301


def test_a_declined_repair_leaves_the_damage_and_says_so(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, 0, 50))
    (seg,) = segment_files(tmp_path)
    _flip(seg, _offset_of(25) + 20)
    before = seg.read_bytes()
    done = repair(tmp_path, confirm=lambda _: False)
    assert done.damage_left and seg.read_bytes() == before


def test_log_ending_below_the_snapshot_continues_after_it(tmp_path: Path, run: Run) -> None:
    """Records lost below the snapshot (e.g. an old cut): the log continues at snapshot + 1."""
    run(_append(tmp_path, 0, 120, snapshot=True))
    segs = segment_files(tmp_path)
    for seg in segs[1:]:
        seg.unlink()
    data = bytearray(segs[0].read_bytes())
    data[_offset_of(49) :] = bytes(len(data) - _offset_of(49))  # keep LSNs 1..48
    segs[0].write_bytes(bytes(data))
    recovery, lsn = run(_recover(tmp_path, then_append=1))
    assert recovery.snapshot_lsn == 120 and lsn == 121
    assert any("below the snapshot" in n for n in recovery.notes)
    assert _lsns(run(_recover(tmp_path))[0]) == [121]


def test_segment_cut_short_is_extended_not_zeroed(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, 0, 400))
    segs = segment_files(tmp_path)
    assert len(segs) >= 3
    recovery, _ = run(_recover(tmp_path))
    path, offset = recovery.locate(300) or ("", 0)
    middle = Path(path)
    assert middle != segs[-1]
    with open(middle, "r+b") as f:  # cut in the middle of a record: it and the rest of the file are gone
        f.truncate(offset + 100)
    with pytest.raises(CorruptLogError, match="cut short"):
        run(_recover(tmp_path))
    lost_from = 300
    done = repair(tmp_path, confirm=lambda _: True)
    assert not done.damage_left, done.lines
    assert middle.stat().st_size == SMALL.segment_size
    recovery, _ = run(_recover(tmp_path))
    lsns = _lsns(recovery)
    next_base = next(n for n in lsns if n > lost_from)
    assert lsns == [n for n in range(1, 401) if not lost_from <= n < next_base]
    assert f"{next_base - lost_from} record(s) dropped" in done.lines[0]


def test_last_segment_cut_short_is_extended(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, 0, 30))
    (seg,) = segment_files(tmp_path)
    with open(seg, "r+b") as f:
        f.truncate(_offset_of(21) + 30)
    with pytest.raises(CorruptLogError, match="cut short"):
        run(_recover(tmp_path))
    done = repair(tmp_path, confirm=lambda _: True)
    assert not done.damage_left and "LSN 21" in done.lines[0] and "cannot be counted" in done.lines[0]
    assert seg.stat().st_size == SMALL.segment_size
    recovery, lsn = run(_recover(tmp_path, then_append=1))
    assert _lsns(recovery) == list(range(1, 21)) and lsn == 21


def test_extended_segment_is_read_up_to_its_header_size(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, 0, 10))
    (seg,) = segment_files(tmp_path)
    with open(seg, "ab") as f:
        f.write(b"\xffgarbage" * 100)
    recovery, lsn = run(_recover(tmp_path, then_append=1))
    assert _lsns(recovery) == list(range(1, 11)) and lsn == 11
    assert any("ignored" in n for n in recovery.notes)


def test_garbage_after_the_valid_tail_of_an_earlier_segment_loses_nothing(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, 0, 400))
    segs = segment_files(tmp_path)
    data = bytearray(segs[0].read_bytes())
    end = len(data.rstrip(b"\0"))
    end += -end % 8
    data[end + 8 : end + 40] = b"\xab" * 32
    segs[0].write_bytes(bytes(data))
    recovery, _ = run(_recover(tmp_path))
    assert _lsns(recovery) == list(range(1, 401))
    assert any("no record was lost" in n for n in recovery.notes)


def test_garbage_after_the_valid_tail_of_the_last_segment_is_cut(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, 0, 10))
    (seg,) = segment_files(tmp_path)
    data = bytearray(seg.read_bytes())
    data[_offset_of(11) + 16 : _offset_of(11) + 64] = os.urandom(48)
    seg.write_bytes(bytes(data))
    recovery, lsn = run(_recover(tmp_path, then_append=1))
    assert _lsns(recovery) == list(range(1, 11)) and lsn == 11
    assert any("torn write" in n for n in recovery.notes)


def test_repair_refuses_a_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(RepairError, match="not a directory"):
        repair(tmp_path / "nope", confirm=lambda _: True)
    assert not (tmp_path / "nope").exists()
