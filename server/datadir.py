"""The data directory's own bookkeeping: one server at a time (meta/lock)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class DataDirInUseError(RuntimeError):
    """Another spitfire-server process has the data directory open."""


class DataDirLock:
    """An exclusive lock on ``<data-dir>/meta/lock``, held for the life of the server.

    Two servers appending to the same logs would corrupt them, so the second one refuses to start.
    The lock is an flock: the kernel drops it when the holder exits, even on SIGKILL, so a crash
    never leaves a stale lock behind.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "meta" / "lock"
        self._fd: int | None = None

    def acquire(self, *, create_dir: bool = True) -> None:
        """Take the lock or raise DataDirInUseError naming the holder's pid.

        ``create_dir=False`` (for tools such as ``repair``) refuses a data directory that does not
        exist with FileNotFoundError instead of creating it; ``meta/`` is still created inside an
        existing one.
        """
        data_dir = self.path.parent.parent
        if not create_dir and not data_dir.is_dir():
            raise FileNotFoundError(f"{data_dir} does not exist or is not a directory")
        self.path.parent.mkdir(parents=create_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirInUseError(
                    f"{self.path.parent.parent} is in use by another spitfire-server (pid {holder}); "
                    "stop it first, or give this one its own --data-dir"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
