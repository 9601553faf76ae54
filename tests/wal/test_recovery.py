"""Recovery: torn tails at every byte, damage in the middle, repair, unsupported versions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from walhelpers import SMALL, body_for, segment_files

from spitfire.wal import CorruptLogError, Durability, FileStorage, UnsupportedFormatError, repair
from spitfire.wal.format import record_size

Run = Any
N = 20


async def _append(data_dir: Path, bodies: list[bytes], mode: Durability = Durability.GROUP) -> None:
    storage = FileStorage(data_dir, SMALL)
    log, _ = storage.open_log("q", mode)
    for body in bodies:
        log.append(3, body)
    await storage.close()


async def _recover(data_dir: Path) -> tuple[list[bytes], list[str]]:
    storage = FileStorage(data_dir, SMALL)
    try:
        _, recovery = storage.open_log("q", Durability.GROUP)
        return [r.body for r in recovery.records], recovery.notes
    finally:
        await storage.close()


def _template(tmp_path: Path, run: Run) -> tuple[Path, list[bytes], int]:
    """A log of N records in one segment; returns (dir, bodies, offset of the last record)."""
    bodies = [body_for(i, 40 + i) for i in range(N)]
    base = tmp_path / "template"
    run(_append(base, bodies))
    last_offset = 64 + sum(record_size(len(b)) for b in bodies[:-1])
    return base, bodies, last_offset


def _corrupt(base: Path, target: Path, offset: int, how: str) -> Path:
    shutil.copytree(base, target)
    (seg,) = segment_files(target)
    data = bytearray(seg.read_bytes())
    if how == "zero":
        data[offset:] = bytes(len(data) - offset)
    else:
        data[offset] ^= 0xFF
    seg.write_bytes(data)
    return target


@pytest.mark.parametrize("how", ["zero", "flip"])
def test_torn_last_record_at_every_byte(tmp_path: Path, run: Run, how: str) -> None:
    base, bodies, last = _template(tmp_path, run)
    body_end = last + 12 + len(bodies[-1])

    async def check_all() -> None:
        for offset in range(last, last + record_size(len(bodies[-1]))):
            target = _corrupt(base, tmp_path / f"{how}-{offset}", offset, how)
            records, notes = await _recover(target)
            intact = offset >= body_end or (how == "zero" and offset == last)
            expected = bodies if offset >= body_end else bodies[:-1]
            assert records == expected, offset
            assert bool(notes) == (not intact), (offset, notes)
            # Appending after the cut works and survives another recovery.
            await _append(target, [b"after the cut"])
            records, notes = await _recover(target)
            assert records == [*expected, b"after the cut"] and not notes
            shutil.rmtree(target)

    run(check_all())


def test_damage_before_a_valid_record_is_corruption_then_repair(tmp_path: Path, run: Run) -> None:
    base, bodies, last = _template(tmp_path, run)
    prev = last - record_size(len(bodies[-2]))
    # A flip in the CRC field or the body loses that record; a flip in the length or type byte only
    # damages the header, which repair restores (the stored CRC still matches the body).
    cases = [(prev, False), (prev + 4, True), (prev + 8, True), (prev + 12, False), (prev + 30, False)]
    for i, (offset, restored) in enumerate(cases):
        target = _corrupt(base, tmp_path / f"d{i}", offset, "flip")
        with pytest.raises(CorruptLogError) as info:
            run(_recover(target))
        assert info.value.offset == prev
        assert info.value.path.endswith(".seg")
        assert "repair" in str(info.value) and str(prev) in str(info.value)
        questions: list[str] = []

        def confirm(question: str, asked: list[str] = questions) -> bool:
            asked.append(question)
            return True

        done = repair(target, confirm=confirm)
        assert len(questions) == 1, questions
        if restored:
            assert "restore it" in questions[0] and "0 record(s) dropped" in questions[0], questions
        else:
            assert "1 record(s) dropped" in questions[0] and f"(LSN {N - 1})" in questions[0], questions
        assert f"the {N - 1 if not restored else N} valid record(s) are all kept" in questions[0]
        assert not done.damage_left and "done" in done.lines[0]
        records, notes = run(_recover(target))
        # Only the damaged record is gone (or none at all), and nothing is left to warn about.
        assert records == (bodies if restored else [*bodies[:-2], bodies[-1]]) and not notes
        assert repair(target, confirm=lambda _: True).nothing_to_do


def test_repair_can_be_declined(tmp_path: Path, run: Run) -> None:
    base, _, _ = _template(tmp_path, run)
    target = _corrupt(base, tmp_path / "d", 70, "flip")
    done = repair(target, confirm=lambda _: False)
    assert "unchanged" in done.lines[0] and done.damage_left
    with pytest.raises(CorruptLogError):
        run(_recover(target))


def test_damage_in_an_earlier_segment(tmp_path: Path, run: Run) -> None:
    bodies = [body_for(i, 200) for i in range(1000)]
    run(_append(tmp_path, bodies))
    segs = segment_files(tmp_path)
    assert len(segs) >= 3
    data = bytearray(segs[0].read_bytes())
    data[64 + 5000] ^= 1
    segs[0].write_bytes(data)
    with pytest.raises(CorruptLogError) as info:
        run(_recover(tmp_path))
    assert info.value.path == str(segs[0]) and info.value.offset == 64 + 23 * 216
    segments_before = len(segment_files(tmp_path))
    assert not repair(tmp_path, confirm=lambda _: True).damage_left
    records, _ = run(_recover(tmp_path))
    assert records == bodies[:23] + bodies[24:]  # one record dropped, later segments kept
    assert len(segment_files(tmp_path)) == segments_before
    run(_append(tmp_path, [b"more"]))
    assert run(_recover(tmp_path))[0][-1] == b"more"


def test_base_lsn_gap_between_segments_is_corruption(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, [body_for(i, 300) for i in range(600)]))
    segs = segment_files(tmp_path)
    segs[1].unlink()
    with pytest.raises(CorruptLogError, match="missing"):
        run(_recover(tmp_path))


def test_unsupported_format_version(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, [b"x"]))
    (seg,) = segment_files(tmp_path)
    data = bytearray(seg.read_bytes())
    data[8] = 2
    seg.write_bytes(data)
    with pytest.raises(UnsupportedFormatError, match="format version 2") as info:
        run(_recover(tmp_path))
    assert info.value.path == str(seg)


def test_unused_prepared_segment_is_removed(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, [b"x", b"y"]))
    (seg,) = segment_files(tmp_path)
    spare = seg.with_name(f"{1:016x}.seg")
    spare.write_bytes(bytes(SMALL.segment_size))
    torn_header = seg.with_name(f"{2:016x}.seg")
    torn_header.write_bytes(b"SPFW" + bytes(SMALL.segment_size - 4))
    records, _ = run(_recover(tmp_path))
    assert records == [b"x", b"y"]
    assert segment_files(tmp_path) == [seg]
    run(_append(tmp_path, [body_for(i, 500) for i in range(300)]))  # rolls into a new segment 1
    records, _ = run(_recover(tmp_path))
    assert len(records) == 302


def test_segment_header_damage_with_data_is_corruption(tmp_path: Path, run: Run) -> None:
    run(_append(tmp_path, [b"x", b"y"]))
    (seg,) = segment_files(tmp_path)
    data = bytearray(seg.read_bytes())
    data[30] ^= 1
    seg.write_bytes(data)
    with pytest.raises(CorruptLogError, match="checksum"):
        run(_recover(tmp_path))
