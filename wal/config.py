"""Tunables of the file engine (`WalConfig`), with named defaults validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from .constants import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE

#: 64 MiB segments: large enough that rolls are rare, small enough that compaction frees space often.
DEFAULT_SEGMENT_SIZE = 64 * 2**20
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

    #: Size of each segment file in bytes (preallocated); a multiple of 4096, at least 4096.
    segment_size: int = DEFAULT_SEGMENT_SIZE
    #: Bytes at the end of each segment only reserved appends may use. None means
    #: min(DEFAULT_RESERVE_BYTES, segment_size / 8); an explicit value must be <= segment_size / 8.
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
    def max_body_size(self) -> int:
        """Largest record body that fits in a segment (beyond it: `RecordTooLargeError`)."""
        return self.segment_size - SEGMENT_HEADER_SIZE - RECORD_HEADER_SIZE - self.reserve
