"""Tunables of the file engine (`WalConfig`), with named defaults validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from .constants import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE

#: 64 MiB segments at most: large enough that rolls of a busy queue are rare, small enough that
#: compaction frees space often.
DEFAULT_SEGMENT_SIZE = 64 * 2**20
#: A queue's first segment: 1 MiB, so that a queue holding a few jobs costs 1 MiB of disk, not 64
#: (any enqueue to a new name creates a queue). Each next segment doubles, up to `segment_size`.
DEFAULT_FIRST_SEGMENT_SIZE = 1 * 2**20
#: Space per segment held back for reserved appends (acks, failures, cancels) when the disk is full.
DEFAULT_RESERVE_BYTES = 1 * 2**20
#: Reserve is capped at this fraction of a segment so that plain appends keep most of it.
MAX_RESERVE_FRACTION = 8
#: ASYNC mode: the mmap reaches disk at least this often.
DEFAULT_ASYNC_FLUSH_MS = 10.0
#: Prepare the next segment when the current one is half full: ample time before the roll.
DEFAULT_PREPARE_AHEAD = 0.5
#: Threads that fdatasync distinct files in parallel when one flush round touches many logs.
DEFAULT_FLUSH_THREADS = 8
#: While the disk is full, the preparer retries allocating segments this often.
DEFAULT_SPACE_RETRY_MS = 1000.0
#: Smallest segment accepted: a page, so tests can make rolls happen every few records.
MIN_SEGMENT_SIZE = 4096


@dataclass(frozen=True, slots=True)
class WalConfig:
    """Configuration of a `FileStorage`. Every field has a safe default; tests shrink the sizes."""

    #: Largest segment file in bytes (preallocated); a multiple of 4096, at least 4096. A queue's
    #: segments start at `first_segment_size` and double up to this size.
    segment_size: int = DEFAULT_SEGMENT_SIZE
    #: Size of a queue's first segment (capped at `segment_size`); a multiple of 4096, at least 4096.
    first_segment_size: int = DEFAULT_FIRST_SEGMENT_SIZE
    #: Bytes at the end of each segment only reserved appends may use. None means
    #: min(DEFAULT_RESERVE_BYTES, segment_size / 8); an explicit value must be <= segment_size / 8.
    #: A smaller segment reserves at most an eighth of itself (`reserve_for`).
    reserve_bytes: int | None = None
    #: ASYNC mode: milliseconds between an append and the fsync that covers it.
    async_flush_ms: float = DEFAULT_ASYNC_FLUSH_MS
    #: Prepare the next segment once the current one is this fraction full (0 = right after a roll).
    prepare_ahead: float = DEFAULT_PREPARE_AHEAD
    #: Threads used to fdatasync many files of one flush round in parallel (1 = the flusher alone).
    flush_threads: int = DEFAULT_FLUSH_THREADS
    #: Milliseconds between attempts to allocate a segment while the disk is full.
    space_retry_ms: float = DEFAULT_SPACE_RETRY_MS
    #: Call fdatasync at all. Only tests that do not care about power loss turn this off.
    fsync: bool = True

    def __post_init__(self) -> None:
        if self.segment_size < MIN_SEGMENT_SIZE or self.segment_size % 4096:
            raise ValueError(
                f"WalConfig.segment_size must be a multiple of 4096 and at least {MIN_SEGMENT_SIZE}, "
                f"got {self.segment_size}"
            )
        if self.first_segment_size < MIN_SEGMENT_SIZE or self.first_segment_size % 4096:
            raise ValueError(
                f"WalConfig.first_segment_size must be a multiple of 4096 and at least {MIN_SEGMENT_SIZE}, "
                f"got {self.first_segment_size}"
            )
        cap = self.segment_size // MAX_RESERVE_FRACTION
        if self.reserve_bytes is None:
            object.__setattr__(self, "reserve_bytes", min(DEFAULT_RESERVE_BYTES, cap) // 8 * 8)
        elif not 0 <= self.reserve_bytes <= cap or self.reserve_bytes % 8:
            raise ValueError(
                f"WalConfig.reserve_bytes must be a multiple of 8 between 0 and segment_size/8 ({cap}), "
                f"got {self.reserve_bytes}"
            )
        if not self.async_flush_ms > 0:
            raise ValueError(f"WalConfig.async_flush_ms must be above zero, got {self.async_flush_ms}")
        if not 0.0 <= self.prepare_ahead <= 1.0:
            raise ValueError(f"WalConfig.prepare_ahead must be between 0 and 1, got {self.prepare_ahead}")
        if self.flush_threads < 1:
            raise ValueError(f"WalConfig.flush_threads must be at least 1, got {self.flush_threads}")
        if not self.space_retry_ms > 0:
            raise ValueError(f"WalConfig.space_retry_ms must be above zero, got {self.space_retry_ms}")

    @property
    def reserve(self) -> int:
        """`reserve_bytes` resolved to an int."""
        assert self.reserve_bytes is not None
        return self.reserve_bytes

    @property
    def initial_segment_size(self) -> int:
        """Size of a new queue's first segment: `first_segment_size`, at most `segment_size`."""
        return min(self.first_segment_size, self.segment_size)

    def next_segment_size(self, size: int) -> int:
        """Size of the segment after one of ``size`` bytes: double, at most `segment_size` (a segment
        written under a larger, older maximum is followed by one of the current maximum)."""
        return min(size * 2, self.segment_size)

    def reserve_for(self, size: int) -> int:
        """Bytes of a ``size``-byte segment kept for reserved appends: `reserve_bytes`, at most an
        eighth of the segment (8-aligned), so that small segments keep most of their room for jobs."""
        return min(self.reserve, size // MAX_RESERVE_FRACTION // 8 * 8)

    def segment_size_for(self, after: int, record: int, *, reserved: bool) -> int:
        """Size of the segment that follows one of ``after`` bytes when it must take a ``record``-byte
        frame first: the doubled size, doubled again (up to `segment_size`) while the frame would not
        fit below the reserve line (anywhere in the segment if ``reserved``)."""
        size = self.next_segment_size(after)
        while size < self.segment_size and SEGMENT_HEADER_SIZE + record > size - (
            0 if reserved else self.reserve_for(size)
        ):
            size = min(size * 2, self.segment_size)
        return size

    @property
    def max_body_size(self) -> int:
        """Largest record body that fits in a segment of the largest size, below its reserve line
        (beyond it: `RecordTooLargeError`). A smaller segment is followed by one large enough."""
        return self.segment_size - SEGMENT_HEADER_SIZE - RECORD_HEADER_SIZE - self.reserve
