"""Helpers shared by the WAL tests (imported as a plain module: pytest puts tests/wal on sys.path)."""

from __future__ import annotations

from pathlib import Path

from spitfire.wal import WalConfig

#: Small segments so that rolls happen every few hundred records; no fsync (tests of logic only).
SMALL = WalConfig(segment_size=64 * 1024, fsync=False)


def body_for(i: int, size: int = 100) -> bytes:
    """A deterministic body for record ``i`` with no zero bytes."""
    stem = f"record-{i}:".encode()
    return (stem * (size // len(stem) + 1))[:size]


def segment_files(data_dir: Path, queue: str = "q") -> list[Path]:
    """The queue's segment files in order."""
    return sorted((data_dir / "queues" / queue / "wal").glob("*.seg"))
