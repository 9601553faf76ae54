"""Per-minute counters of enqueued, succeeded and failed jobs: the dashboard's history graph.

Pure data structure, no I/O and no clock: every call takes the time it is about (a record's own
time, or the ``now`` of a query). The engine keeps one `MinuteCounters` per queue and one for the
total; they are made durable by the queue's snapshots and replayed from its log (see
`server/history.py` and wal/FORMAT.md "History").

Memory is bounded: counts live in blocks of one hour (60 minutes x 3 unsigned 64-bit counters,
1,440 bytes), created only for hours that saw a counted record, and only the `KEEP_HOURS` hours up to
the newest one are kept: at most ``KEEP_HOURS + 1`` blocks (about 1 MiB) per queue however long the
server runs; an idle queue costs nothing.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Iterator
from operator import add

#: Counter fields, in a minute's slot.
ENQUEUED = 0
SUCCEEDED = 1
FAILED = 2
FIELDS = 3
#: Minutes in a block.
BLOCK_MINUTES = 60
#: Counters in a block.
BLOCK_SIZE = BLOCK_MINUTES * FIELDS
#: Days of history kept.
KEEP_DAYS = 30
#: Hours kept before the newest one (30 days); older blocks are pruned.
KEEP_HOURS = KEEP_DAYS * 24
#: Longest query, in minutes (30 days).
MAX_MINUTES = KEEP_HOURS * BLOCK_MINUTES
#: Blocks are stored little-endian on disk whatever the machine.
_SWAP = sys.byteorder != "little"
_ZERO_BLOCK = array("Q", bytes(8 * BLOCK_SIZE))


def _new_block() -> array[int]:
    return array("Q", _ZERO_BLOCK)


class MinuteCounters:
    """Counts of enqueued, succeeded and failed jobs per minute (epoch minute = ``floor(at / 60)``).

    `add` is the hot path (one per committed enqueue, ack or failure record): while records stay in
    one minute it is two float comparisons and a list increment; the minute's counts go into its
    hour block when another minute is counted, and before anything is read.
    """

    __slots__ = ("_block", "_blocks", "_cur", "_end", "_newest", "_slot", "_start", "parent")

    def __init__(self, parent: MinuteCounters | None = None) -> None:
        #: Counters that also get every count of these ones (a queue's feed the total), when a minute
        #: is flushed: so the hot path counts once. Read the parent after `flush` of its children.
        self.parent = parent
        #: hour (epoch seconds // 3600) -> 180 counters: minute-of-hour * 3 + field.
        self._blocks: dict[int, array[int]] = {}
        #: Newest hour holding counts (pruning is relative to it, not to a clock).
        self._newest = -(1 << 62)
        #: The minute `add` counts in, [start, end) in epoch seconds (empty: none yet), its counts
        #: not yet in its block, that block and the minute's offset in it.
        self._start = math.inf
        self._end = -math.inf
        self._cur = [0, 0, 0]
        self._block: array[int] = _ZERO_BLOCK
        self._slot = 0

    def add(self, at: float, field: int, n: int = 1) -> None:
        """Count ``n`` events of ``field`` (ENQUEUED, SUCCEEDED or FAILED) at time ``at``.

        Counts more than `KEEP_HOURS` hours older than the newest counted hour are dropped (they
        would be pruned at once).
        """
        if self._start <= at < self._end:
            self._cur[field] += n
        else:
            self._switch(at, field, n)

    def flush(self) -> None:
        """Put the current minute's counts into its block, and into `parent` (done before every read
        of these counters; call it on the children before reading a parent)."""
        cur = self._cur
        if cur[0] or cur[1] or cur[2]:
            block, i = self._block, self._slot
            block[i] += cur[0]
            block[i + 1] += cur[1]
            block[i + 2] += cur[2]
            parent = self.parent
            if parent is not None:
                for field in (ENQUEUED, SUCCEEDED, FAILED):
                    if cur[field]:
                        parent.add(self._start, field, cur[field])
            cur[0] = cur[1] = cur[2] = 0

    def _forget_minute(self) -> None:
        """Flush, and count the next `add` afresh (blocks are about to be replaced or dropped)."""
        self.flush()
        self._start, self._end = math.inf, -math.inf

    def _switch(self, at: float, field: int, n: int) -> None:
        self._forget_minute()
        minute = int(at // 60)
        hour, offset = divmod(minute, BLOCK_MINUTES)
        block = self._blocks.get(hour)
        if block is None:
            if hour < self._newest - KEEP_HOURS:
                return
            block = self._blocks[hour] = _new_block()
            if hour > self._newest:
                self._newest = hour
                self._prune()
        start = minute * 60.0
        if start <= at < start + 60.0:  # always, but the fast path must never count elsewhere
            self._start, self._end = start, start + 60.0
            self._block, self._slot = block, offset * FIELDS
            self._cur[field] += n
        else:
            block[offset * FIELDS + field] += n

    def _prune(self) -> None:
        horizon = self._newest - KEEP_HOURS
        if len(self._blocks) > KEEP_HOURS + 1 or next(iter(self._blocks)) < horizon:
            for hour in [h for h in self._blocks if h < horizon]:
                del self._blocks[hour]

    # -- reading ----------------------------------------------------------------------------------------

    def minute(self, at: float) -> tuple[int, int, int]:
        """(enqueued, succeeded, failed) of the minute holding ``at``."""
        self.flush()
        hour, offset = divmod(int(at // 60), BLOCK_MINUTES)
        block = self._blocks.get(hour)
        if block is None:
            return (0, 0, 0)
        i = offset * FIELDS
        return (block[i], block[i + 1], block[i + 2])

    def totals(self) -> tuple[int, int, int]:
        """(enqueued, succeeded, failed) over everything kept."""
        self.flush()
        e = s = f = 0
        for block in self._blocks.values():
            e += sum(block[ENQUEUED::FIELDS])
            s += sum(block[SUCCEEDED::FIELDS])
            f += sum(block[FAILED::FIELDS])
        return (e, s, f)

    def points(self, now: float, minutes: int, step: int) -> list[tuple[float, int, int, int]]:
        """The last ``minutes`` minutes up to the one holding ``now``, in buckets of ``step`` seconds
        (a multiple of 60), oldest first: (bucket start, enqueued, succeeded, failed).

        Buckets are aligned to multiples of ``step`` in epoch time, so a bucket's start does not move
        as time passes; the first is the one holding the oldest minute asked for, the last the one
        holding ``now`` (counted up to now); every bucket in between is there, zeros included, and
        each sums all of its minutes.
        """
        if minutes < 1 or step < 60 or step % 60:
            raise ValueError("minutes must be 1 or more and step a positive multiple of 60")
        self.flush()
        per = step // 60
        last = int(now // 60)
        first_bucket = (last - minutes + 1) // per
        last_bucket = last // per
        out: list[tuple[float, int, int, int]] = []
        blocks = self._blocks
        for bucket in range(first_bucket, last_bucket + 1):
            start = bucket * per
            end = min(start + per, last + 1)
            e = s = f = 0
            m = start
            while m < end:
                hour, offset = divmod(m, BLOCK_MINUTES)
                stop = min(end - m + offset, BLOCK_MINUTES)  # minutes of this bucket in this hour
                block = blocks.get(hour)
                if block is not None:
                    lo, hi = offset * FIELDS, stop * FIELDS
                    e += sum(block[lo + ENQUEUED : hi : FIELDS])
                    s += sum(block[lo + SUCCEEDED : hi : FIELDS])
                    f += sum(block[lo + FAILED : hi : FIELDS])
                m += stop - offset
            out.append((float(start * 60), e, s, f))
        return out

    # -- whole structure --------------------------------------------------------------------------------

    def merge(self, other: MinuteCounters) -> None:
        """Add every count of ``other`` to this one (the total of several queues)."""
        self.load(other.blocks())

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        """(hour, 1,440 little-endian bytes) of every block kept, oldest first (for snapshots)."""
        self.flush()
        for hour in sorted(self._blocks):
            block = self._blocks[hour]
            if _SWAP:
                block = array("Q", block)
                block.byteswap()
            yield hour, block.tobytes()

    def load(self, blocks: Iterable[tuple[int, bytes]]) -> None:
        """Add blocks as `blocks` yields them (counts add up with what is already there).

        :raises ValueError: a block that is not 1,440 bytes.
        """
        self._forget_minute()
        for hour, data in blocks:
            if len(data) != 8 * BLOCK_SIZE:
                raise ValueError(f"a history block holds {8 * BLOCK_SIZE} bytes, not {len(data)}")
            incoming = array("Q", data)
            if _SWAP:
                incoming.byteswap()
            if hour < self._newest - KEEP_HOURS:
                continue
            block = self._blocks.get(hour)
            if block is None:
                self._blocks[hour] = incoming
            else:
                self._blocks[hour] = array("Q", map(add, block, incoming))
            if hour > self._newest:
                self._newest = hour
                self._prune()

    def clear(self) -> None:
        """Forget every count."""
        self._forget_minute()
        self._blocks.clear()
        self._newest = -(1 << 62)

    def __len__(self) -> int:
        """Blocks (hours) held."""
        return len(self._blocks)
