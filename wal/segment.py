"""Segment files: preparation (create, preallocate, fsync) and the mmap'd view the writer appends to."""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from .constants import SEGMENT_HEADER_SIZE, SEGMENT_NAME
from .format import encode_segment_header

logger = logging.getLogger("spitfire.wal")


def segment_path(wal_dir: Path, number: int) -> Path:
    """Path of segment ``number`` in ``wal_dir``."""
    return wal_dir / SEGMENT_NAME.format(number)


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a create, rename or unlink in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class PreparedFile:
    """A segment file created with its final name, preallocated and fsynced, not yet in use."""

    number: int
    path: Path
    fd: int
    #: File size in bytes (segments grow: each log's next one is usually twice its current one).
    size: int

    def discard(self) -> None:
        """Close and delete the file (it holds nothing)."""
        os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def prepare_file(
    wal_dir: Path, number: int, size: int, *, fsync: bool = True, base_lsn: int | None = None
) -> PreparedFile:
    """Create segment ``number``: final name, `posix_fallocate` to ``size``, fsync file and directory.

    With ``base_lsn`` the segment header is written too, before the fsync, so that the file is a
    valid (empty) segment at once: a new queue's first segment, which recovery must find even if no
    record ever reaches it. Without, the header is written at the roll (`Segment.activate`).

    A file of that name left over (an unused segment) is replaced. On failure (for example ENOSPC)
    nothing is left behind and the OSError propagates.
    """
    path = segment_path(wal_dir, number)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
        if base_lsn is not None:
            os.pwrite(fd, encode_segment_header(number, base_lsn, size), 0)
        if fsync:
            os.fsync(fd)
            fsync_dir(wal_dir)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return PreparedFile(number, path, fd, size)


class Segment:
    """One mmap'd segment file. Only the event loop thread touches it, except the flusher's fdatasync.

    The flusher only reads ``fd``; the loop closes the segment once no sealed group still needs it
    (``inflight`` counts those groups) and the log has moved past it (``retired``).
    """

    __slots__ = ("base_lsn", "closed", "fd", "inflight", "mm", "number", "path", "retired", "size")

    def __init__(self, number: int, path: Path, fd: int, size: int, base_lsn: int) -> None:
        self.number = number
        self.path = path
        self.fd = fd
        self.size = size
        self.base_lsn = base_lsn
        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        #: Groups (open or sealed) not yet resolved that include this segment.
        self.inflight = 0
        #: The log has rolled past this segment; close it once ``inflight`` drops to zero.
        self.retired = False
        self.closed = False

    @classmethod
    def activate(cls, prepared: PreparedFile, base_lsn: int) -> Segment:
        """Map a prepared file and write its header; the first fsync of the segment makes it durable."""
        seg = cls(prepared.number, prepared.path, prepared.fd, prepared.size, base_lsn)
        seg.mm[:SEGMENT_HEADER_SIZE] = encode_segment_header(prepared.number, base_lsn, prepared.size)
        return seg

    def release_if_done(self) -> None:
        """Close the segment when it is retired and no sealed group still has to fsync it."""
        if self.retired and self.inflight == 0:
            self.close()

    def close(self) -> None:
        """Unmap and close the file (idempotent)."""
        if not self.closed:
            self.closed = True
            self.mm.close()
            os.close(self.fd)

    def __repr__(self) -> str:
        return f"<Segment {self.path.name} base_lsn={self.base_lsn}>"
