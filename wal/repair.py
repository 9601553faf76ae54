"""`repair`: make a damaged log startable again while dropping only the records that are damaged.

``spitfire-server repair --data-dir D [--yes] [--dry-run]`` calls `repair`. It plans from exactly
what recovery sees (`wal.recovery.analyse`), so it fixes precisely the damage that stops start-up:

- a damaged region above the snapshot is overwritten with one SKIP record (`wal/FORMAT.md`) that
  stands for the records lost there, so that every valid record after it keeps its LSN;
- records missing between two segments are accounted for by a SKIP record at the end of the first;
- a segment file cut short is extended back to the size its header gives (never zeroed).

Damage at or below the snapshot's LSN is harmless (recovery skips it, compaction deletes it) and is
left alone, so repair never touches what a usable snapshot needs. Every plan is described with the
exact number of records it drops (or their possible range, when the damage destroyed the length
fields that would tell) before ``confirm`` is asked. Nothing is written with ``dry_run``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .api import CorruptLogError, StorageError, UnsupportedFormatError
from .constants import (
    MIN_RECORD_SIZE,
    QUEUE_NAME_RE,
    QUEUES_DIR,
    RECORD_HEADER,
    SYSTEM_DIR,
    SYSTEM_PREFIX,
    WAL_DIR,
)
from .format import align, encode_skip
from .recovery import Analysis, Problem, SegmentInfo, Spot, analyse, is_zero_file

logger = logging.getLogger("spitfire.wal")

#: Appended to every plan that drops records: the engine's rule for what refers to them.
ORPHAN_NOTE = (
    "Records that refer to a job whose enqueue record is among the dropped ones are ignored when the "
    "server starts (the job is unknown)."
)


class RepairError(StorageError):
    """`repair` cannot run on this path (for example: the data directory does not exist)."""


@dataclass(slots=True)
class Step:
    """One change to one file, described before it is made."""

    description: str
    apply: Callable[[], None]
    #: Records this step drops: at least ``dropped_min``, at most ``dropped_max`` (equal when exact).
    dropped_min: int = 0
    dropped_max: int = 0
    #: Unknown further records may be lost (a file cut short at its end): they cannot be counted.
    uncounted: bool = False


@dataclass(slots=True)
class QueuePlan:
    """What repair found in one queue's log and what it would do."""

    queue: str
    steps: list[Step] = field(default_factory=list)
    #: Damage repair cannot fix (start-up will still fail on it).
    unfixable: list[str] = field(default_factory=list)
    #: Damage recovery already skips (covered by the snapshot): left for compaction.
    harmless: list[str] = field(default_factory=list)
    #: Valid records in the log (all kept).
    kept: int = 0

    def describe(self) -> str:
        """The plan in words, with what is dropped and what is kept."""
        lines = [f"queue {self.queue!r}:"]
        lines += [f"  - {step.description}" for step in self.steps]
        lines += [f"  - cannot repair: {text}" for text in self.unfixable]
        low = sum(s.dropped_min for s in self.steps)
        high = sum(s.dropped_max for s in self.steps)
        if self.steps:
            count = f"{low} record(s)" if low == high else f"between {low} and {high} record(s)"
            extra = ", and any record that was past a cut" if any(s.uncounted for s in self.steps) else ""
            lines.append(f"  {count} dropped{extra}; the {self.kept} valid record(s) are all kept.")
            if high:
                lines.append(f"  {ORPHAN_NOTE}")
        return "\n".join(lines)


@dataclass(slots=True)
class RepairResult:
    """What `repair` did: one line (or block) per queue, and whether damage was left in place."""

    lines: list[str] = field(default_factory=list)
    plans: list[QueuePlan] = field(default_factory=list)
    #: Some damage that stops start-up is still there (declined, dry run, or not repairable).
    damage_left: bool = False

    @property
    def nothing_to_do(self) -> bool:
        """No queue had damage that stops start-up."""
        return not any(p.steps or p.unfixable for p in self.plans)


def _write(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.pwrite(fd, data, offset)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _extend(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        old = os.fstat(fd).st_size
        os.posix_fallocate(fd, old, size - old)  # real blocks: the writer maps it and must not SIGBUS
        os.fsync(fd)  # the new size is metadata: fsync, not fdatasync
    finally:
        os.close(fd)


def _skip_step(seg: SegmentInfo, spot: Spot, count: int, exact: bool) -> Step | str:
    """Overwrite the damaged region of ``spot`` with a SKIP record standing for ``count`` LSNs."""
    size = max(MIN_RECORD_SIZE, spot.end - spot.offset)
    if spot.offset + size > seg.size:
        return f"{spot.path} at byte offset {spot.offset}: no room for a SKIP record before the segment's end"
    low = count if exact else spot.lost_min
    what = _loss(spot.lsn, count) if exact else spot.describe_loss()
    if not exact:
        what += f"; assumed to be {count}, so the records after it are numbered from LSN {spot.lsn + count}"
    step = Step(
        f"{spot.path} bytes {spot.offset}..{spot.offset + size} ({spot.reason}): drop {what}; the "
        f"region becomes one SKIP record standing for {count} LSN(s), so every record after it keeps "
        "its LSN",
        lambda: _write(seg.path, spot.offset, encode_skip(count, size)),
        low,
        count if exact else spot.lost_max,
    )
    return step


def _loss(lsn: int, count: int) -> str:
    return f"1 record (LSN {lsn})" if count == 1 else f"{count} records (LSNs {lsn} to {lsn + count - 1})"


def _plan_spot(found: Analysis, problem: Problem, plan: QueuePlan) -> None:
    seg, spot = problem.segment, problem.spot
    assert seg is not None and spot is not None
    last = seg is found.segments[-1]
    if seg.short:
        plan.steps.append(
            Step(
                f"{seg.path}: extend the file from {seg.file_size} to the {seg.size} bytes its header gives "
                "(the records in it are kept)",
                lambda: _extend(seg.path, seg.size),
            )
        )
    if spot.tail and last:
        # After the extension the cut record is a torn tail: zero it, the log continues there.
        cut = spot.offset < seg.file_size
        plan.steps.append(
            Step(
                f"{seg.path} bytes {spot.offset}..{max(spot.end, spot.offset)}: drop "
                f"{f'the record cut short there (LSN {spot.lsn})' if cut else 'nothing readable'}; records "
                "that were past the cut, if any, are lost and cannot be counted",
                lambda: _write(seg.path, spot.offset, bytes(spot.end - spot.offset)),
                1 if cut else 0,
                1 if cut else 0,
                uncounted=True,
            )
        )
        return
    if spot.restore is not None:
        restore = spot.restore
        plan.kept += 1
        plan.steps.append(
            Step(
                f"{spot.path} byte offset {spot.offset} ({spot.reason}): only the record's header is "
                f"damaged; restore it (record LSN {spot.lsn} is kept, nothing is dropped)",
                lambda: _write(seg.path, spot.offset, restore),
            )
        )
        return
    exact = spot.lost_min == spot.lost_max and not spot.slack
    # Of unknown size: assume the least (usually the truth: one record whose header and body were
    # both hit). Assuming more would number records the snapshot reflects above it, and replay
    # would apply them twice; assuming less than the truth only renumbers the records after it.
    count = spot.lost_max if exact else spot.lost_min
    if count == 0:  # garbage after the last record of a segment: nothing to stand for
        plan.steps.append(
            Step(
                f"{spot.path} bytes {spot.offset}..{spot.end} ({spot.reason}): zero the unreadable bytes "
                "after the segment's last record",
                lambda: _write(seg.path, spot.offset, bytes(spot.end - spot.offset)),
                0,
                spot.lost_max,
            )
        )
        return
    step = _skip_step(seg, spot, count, exact)
    if isinstance(step, str):
        plan.unfixable.append(step)
    else:
        plan.steps.append(step)


def _plan_boundary(found: Analysis, problem: Problem, plan: QueuePlan) -> None:
    """Records missing between two segments: a SKIP record at the end of the earlier one."""
    nxt = problem.segment
    assert nxt is not None
    prev = found.segments[found.segments.index(nxt) - 1]
    missing = nxt.base_lsn - prev.end_lsn
    if prev.slack or missing <= 0 or prev.end + MIN_RECORD_SIZE > prev.size or prev.short:
        plan.unfixable.append(str(problem.error.reason) + f" ({nxt.path})")
        return
    if not is_zero_file(prev.path, prev.end, prev.size):
        plan.unfixable.append(f"{prev.path}: bytes after its last record are not zero")
        return
    plan.steps.append(
        Step(
            f"{prev.path} byte {prev.end}: records {prev.end_lsn} to {nxt.base_lsn - 1} are missing "
            f"(segment file(s) lost?): drop {_loss(prev.end_lsn, missing)}; a SKIP record standing for "
            "them is appended so that the next segment's records keep their LSNs",
            lambda: _write(prev.path, prev.end, encode_skip(missing, MIN_RECORD_SIZE)),
            missing,
            missing,
        )
    )


def plan_queue(queue: str, queue_dir: Path) -> QueuePlan:
    """Read one queue's log (changing nothing) and plan its repair."""
    plan = QueuePlan(queue)
    try:
        found = analyse(queue_dir, dry=True, quiet=True)
    except CorruptLogError as exc:
        plan.unfixable.append(str(exc.path) + f": {exc.reason} (move the file away only if you accept "
                              "losing its records)")  # fmt: skip
        return plan
    except UnsupportedFormatError as exc:
        plan.unfixable.append(str(exc))
        return plan
    plan.kept = sum(seg.count for seg in found.segments)
    plan.harmless = list(found.harmless)
    seen: set[int] = set()
    for problem in found.problems:
        if problem.spot is not None:
            if id(problem.spot) in seen:
                continue  # "uncertain" problems point at the spot whose SKIP settles them
            seen.add(id(problem.spot))
        if problem.kind in ("spot", "short", "uncertain"):
            _plan_spot(found, problem, plan)
        elif problem.kind == "boundary":
            _plan_boundary(found, problem, plan)
        else:  # a damaged header or a missing start: the records cannot be placed
            plan.unfixable.append(
                f"{problem.error.path} at byte offset {problem.error.offset}: {problem.error.reason}"
            )
    return plan


def _queue_dirs(data_dir: Path) -> list[tuple[str, Path]]:
    """Every log under ``data_dir``: the queues', then the server's own (named ``meta/<name>``)."""
    out: list[tuple[str, Path]] = []
    for parent, prefix in ((data_dir / QUEUES_DIR, ""), (data_dir / SYSTEM_DIR, SYSTEM_PREFIX)):
        if parent.is_dir():
            out.extend(
                (prefix + q, parent / q)
                for q in sorted(os.listdir(parent))
                if QUEUE_NAME_RE.match(q) and (parent / q / WAL_DIR).is_dir()
            )
    return out


def log_dir(data_dir: Path, name: str) -> Path:
    """The directory of log ``name``: a queue's, or ``meta/<name>`` for a system log."""
    return data_dir / name if name.startswith(SYSTEM_PREFIX) else data_dir / QUEUES_DIR / name


def repair(data_dir: str | Path, *, confirm: Callable[[str], bool], dry_run: bool = False) -> RepairResult:
    """Plan the repair of every queue's log, describe it, ask ``confirm``, and carry it out.

    A plan is only carried out when ``confirm`` accepts it (never with ``dry_run``), and is checked
    again afterwards: ``damage_left`` says whether any damage that stops start-up remains.

    :raises RepairError: ``data_dir`` is not an existing directory (nothing is created).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise RepairError(f"{data_dir} is not a directory: give the --data-dir the server runs with")
    result = RepairResult()
    for queue, queue_dir in _queue_dirs(data_dir):
        plan = plan_queue(queue, queue_dir)
        result.plans.append(plan)
        for text in plan.harmless:
            result.lines.append(f"queue {queue!r}: harmless, left for compaction: {text}")
        if not plan.steps and not plan.unfixable:
            continue
        described = plan.describe()
        if dry_run:
            result.lines.append(f"{described}\n  (dry run: nothing changed)")
            result.damage_left = True
            continue
        if not plan.steps:
            result.lines.append(described)
            result.damage_left = True
            continue
        if not confirm(described):
            result.lines.append(f"queue {queue!r}: left unchanged")
            result.damage_left = True
            continue
        for step in plan.steps:
            step.apply()
        message = f"{described}\n  done."
        logger.warning("repaired the log of queue %r:\n%s", queue, described)
        after = plan_queue(queue, queue_dir)
        if after.steps or after.unfixable:
            message += f"\n  damage is left:\n{after.describe()}"
            result.damage_left = True
        result.lines.append(message)
    return result


def skip_record(data_dir: str | Path, queue: str, lsn: int, *, confirm: Callable[[str], bool]) -> str:
    """Replace the record at ``lsn`` of ``queue`` with a SKIP record (for a record whose checksum is
    valid but whose body the server cannot decode). Returns what was done.

    :raises RepairError: no such queue, or no record with that LSN in its log.
    """
    queue_dir = log_dir(Path(data_dir), queue)
    if not (queue_dir / WAL_DIR).is_dir():
        raise RepairError(f"queue {queue!r} has no log under {data_dir}")
    found = analyse(queue_dir, dry=True, quiet=True)
    from .recovery import locator

    where = locator(found.segments)(lsn)
    if where is None:
        raise RepairError(f"queue {queue!r} holds no readable record with LSN {lsn}")
    path, offset = Path(where[0]), where[1]
    with open(path, "rb") as f:
        header = os.pread(f.fileno(), RECORD_HEADER.size, offset)
    _, length, rtype = RECORD_HEADER.unpack(header)
    size = align(RECORD_HEADER.size + length)
    question = (
        f"queue {queue!r}: {path} byte offset {offset}: drop record LSN {lsn} (type {rtype}, {length} "
        f"bytes); it becomes a SKIP record, every other record is kept. {ORPHAN_NOTE}"
    )
    if not confirm(question):
        raise RepairError(f"queue {queue!r}: left unchanged")
    _write(path, offset, encode_skip(1, size))
    logger.warning("%s: done", question)
    return f"{question}\n  done."
