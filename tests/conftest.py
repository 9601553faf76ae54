"""Fixtures shared by every test directory."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``mount_tmpfs("1m")`` mounts a real tmpfs of that size (a small disk that fills up) and
    returns its path; every mount is undone after the test. Skips where mounting is not permitted."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        path = tmp_path / f"fs{len(mounts)}"
        path.mkdir()
        try:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot mount a tmpfs (needs root and mount permission): {exc}")
        if result.returncode != 0:
            reason = result.stderr.decode().strip()
            pytest.skip(f"cannot mount a tmpfs (needs root and mount permission): {reason}")
        mounts.append(path)
        return path

    try:
        yield mount
    finally:
        for path in mounts:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _fill(path: Path, leave: int = 0) -> None:
    with open(path, "wb", buffering=0) as f:
        for size in (2**20, 65536, 4096, 512, 1):
            while _free_bytes(path.parent) - size >= leave:
                try:
                    f.write(b"\xff" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


@pytest.fixture
def fill_disk() -> Callable[..., None]:
    """``fill_disk(path, leave=0)`` writes ``path`` until its file system has at most ``leave``
    bytes free (0: none at all): the disk-full tests of every layer use it on a `mount_tmpfs`."""
    return _fill


@pytest.fixture
def free_bytes() -> Callable[[Path], int]:
    """``free_bytes(directory)``: bytes an unprivileged writer may still use on its file system."""
    return _free_bytes


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage_after_each_module() -> Iterator[None]:
    """Collect garbage cycles at the end of each test module, so that a socket or file a module
    leaks in a cycle warns (and fails) in that module, not in whichever later test the collector
    happens to run in."""
    yield
    gc.collect()
