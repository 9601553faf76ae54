"""`repair`: cut a damaged log at its first bad byte so the server can start (operator's choice).

``spitfire-server repair --data-dir D [--yes]`` calls `repair`; ``confirm`` asks the operator (or
says yes). Records after the cut are lost, which is why recovery never does this on its own.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from .api import CorruptLogError
from .constants import QUEUE_NAME_RE, QUEUES_DIR, RECORD_ALIGN, SEGMENT_HEADER_SIZE, WAL_DIR
from .format import data_end, find_valid_record, scan_records
from .recovery import inspect_segments, list_segment_files, scan_segments, zero_range
from .segment import fsync_dir

logger = logging.getLogger("spitfire.wal")


def find_damage(wal_dir: Path) -> CorruptLogError | None:
    """The first `CorruptLogError` recovery would raise for this log (read-only), or None."""
    try:
        segments, _ = inspect_segments(wal_dir)
        scan_segments(segments)
    except CorruptLogError as exc:
        return exc
    return None


def _count_records(path: Path, start: int) -> int:
    """Valid records in a segment file from ``start`` on, resynchronising past bad spots."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= SEGMENT_HEADER_SIZE:
            return 0
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:
            count = 0
            off: int | None = max(start, SEGMENT_HEADER_SIZE)
            while off is not None:
                off = find_valid_record(mm, off, size)
                if off is None:
                    break
                result = scan_records(mm, off, size)
                count += result.count
                off = None if result.bad_offset is None else result.bad_offset + RECORD_ALIGN
            return count


def repair(data_dir: str | Path, *, confirm: Callable[[str], bool]) -> list[str]:
    """Find the first damage in each queue's log, describe the cut, ask ``confirm``, and cut.

    Cutting zeroes the damaged segment from the bad byte on and deletes every later segment, with
    fsyncs. Returns one line per damaged queue saying what was done (empty when nothing is damaged).
    """
    queues_dir = Path(data_dir) / QUEUES_DIR
    done: list[str] = []
    if not queues_dir.is_dir():
        return done
    for queue in sorted(os.listdir(queues_dir)):
        wal_dir = queues_dir / queue / WAL_DIR
        if not QUEUE_NAME_RE.match(queue) or not wal_dir.is_dir():
            continue
        damage = find_damage(wal_dir)
        if damage is None:
            continue
        path = Path(damage.path)
        number = next(n for n, p in list_segment_files(wal_dir) if p == path)
        later = [p for n, p in list_segment_files(wal_dir) if n > number]
        lost_here = _count_records(path, damage.offset + (RECORD_ALIGN if damage.offset else 0))
        lost_later = sum(_count_records(p, SEGMENT_HEADER_SIZE) for p in later)
        question = (
            f"queue {queue!r}: {path} is damaged at byte offset {damage.offset} ({damage.reason}). "
            f"Cutting the log there loses about {lost_here + lost_later} record(s): {lost_here} readable "
            f"after the damage in that file and {lost_later} in {len(later)} later segment file(s). Cut it?"
        )
        if not confirm(question):
            done.append(f"queue {queue!r}: left unchanged ({path} at byte offset {damage.offset})")
            continue
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:
                end = data_end(mm, damage.offset, size)
        zero_range(path, damage.offset, end, fsync=True)
        for p in later:
            os.unlink(p)
        fsync_dir(wal_dir)
        message = (
            f"queue {queue!r}: cut {path.name} at byte offset {damage.offset} and removed {len(later)} "
            f"later segment file(s); about {lost_here + lost_later} record(s) dropped"
        )
        logger.warning("%s", message)
        done.append(message)
    return done
