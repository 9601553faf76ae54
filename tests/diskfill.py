"""Filling a (small, test-mounted) file system, for the disk-full tests of every layer."""

from __future__ import annotations

import errno
import os
from pathlib import Path

MiB = 2**20


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s file system."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int = 0) -> None:
    """Write ``path`` until its file system has at most ``leave`` bytes free (0: none at all)."""
    with open(path, "wb", buffering=0) as f:
        for size in (MiB, 65536, 4096, 512, 1):
            while free_bytes(path.parent) - size >= leave:
                try:
                    f.write(b"\xff" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
