"""Cheap counters of the group commit, for monitoring (the server exports them to Prometheus).

Nothing here takes a lock, and nothing here knows Prometheus: a `Buckets` is a fixed array of
counts that one thread adds to with plain integer and float additions (a ``bisect`` to find the
bucket), and that readers copy when they want the figures (at scrape time).

Why no lock: each object has exactly one writer thread (`FlushStats`: the flusher thread), so no
update is ever lost (``counts[i] += 1`` is a read-modify-write, racy only between two writers). A
reader on another thread may copy the counts between two additions of one observation: it then sees
the bucket incremented but the sum not yet grown, or the other way round, an error of one
observation in one scrape that the next scrape corrects. Readers derive the total count from the
bucket counts they copied (`Buckets.read`), so the buckets and the count always agree.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

#: Upper bounds of fsync and commit durations, in seconds (50 us, a fast NVMe fdatasync, to 2.5 s).
LATENCY_BOUNDS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: Upper bounds of records per flush round (a single job to a few 100,000-job batches): powers of 4.
RECORD_BOUNDS = tuple(float(4**i) for i in range(10))
#: Upper bounds of bytes per flush round (one small record to one 64 MiB segment): powers of 8 from 512.
BYTE_BOUNDS = tuple(float(512 * 8**i) for i in range(8))


class Buckets:
    """Counts of observations per fixed bucket and their sum: one writer thread, any readers."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and increasing")
        #: Upper bounds (inclusive, as Prometheus' ``le``); a last bucket catches everything above.
        self.bounds = tuple(bounds)
        #: Observations per bucket (not cumulative); ``counts[-1]`` is above the last bound.
        self.counts = [0] * (len(self.bounds) + 1)
        #: Sum of the observed values (each times its weight).
        self.sum = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        """Count ``value`` (``weight`` times). Writer thread only."""
        self.counts[bisect_left(self.bounds, value)] += weight
        self.sum += value * weight

    def read(self) -> tuple[list[int], float, int]:
        """(cumulative counts per bound plus +Inf, sum, total count): a consistent-enough copy."""
        counts = self.counts.copy()  # one C call: no addition lands halfway through the copy
        total = 0
        cumulative: list[int] = []
        for count in counts:
            total += count
            cumulative.append(total)
        return cumulative, self.sum, total


class FlushStats:
    """What the flusher thread has done since the storage opened (written by that thread only).

    A round is one pass of the flusher: it takes every sealed group queued meanwhile, fdatasyncs the
    segment files they touched, and resolves them. A group is the records one log appended in one
    loop tick (GROUP mode), one record (SYNC), or the records of one flush interval (ASYNC).
    """

    __slots__ = (
        "commit_seconds",
        "resolve_seconds",
        "round_bytes",
        "round_records",
        "round_seconds",
        "wait_seconds",
    )

    def __init__(self) -> None:
        #: Records made durable per round.
        self.round_records = Buckets(RECORD_BOUNDS)
        #: Bytes (framed and aligned, as written to the segments) made durable per round.
        self.round_bytes = Buckets(BYTE_BOUNDS)
        #: Seconds each round spent in fdatasync (every file of the round, in parallel or not).
        self.round_seconds = Buckets(LATENCY_BOUNDS)
        #: Per group, seconds from its first append to the end of the fdatasync that covers it: the
        #: longest any record of the group waited to become durable (one observation per group, not
        #: weighted by its records). Its count is the number of groups synced.
        self.commit_seconds = Buckets(LATENCY_BOUNDS)
        #: Per group, seconds from its first append to the start of the round that syncs it: the
        #: tick it was written in, the hand-off to the flusher thread and the round before it.
        self.wait_seconds = Buckets(LATENCY_BOUNDS)
        #: Per round, seconds from the end of its fdatasync to the event loop resolving its groups
        #: (the hand-back and the loop's backlog). Written by the loop thread, its only writer.
        self.resolve_seconds = Buckets(LATENCY_BOUNDS)

    @property
    def rounds(self) -> int:
        """Rounds run so far."""
        return sum(self.round_seconds.counts)

    @property
    def groups(self) -> int:
        """Groups made durable (or failed) so far."""
        return sum(self.commit_seconds.counts)
