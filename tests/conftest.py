"""Fixtures shared by every test directory."""

from __future__ import annotations

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
