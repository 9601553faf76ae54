"""Write-ahead log: per-queue mmap'd segments, group commit, snapshots, recovery (`wal/FORMAT.md`)."""

from .api import (
    CorruptLogError,
    Durability,
    LogClosedError,
    LogRecord,
    NoSpaceError,
    QueueLog,
    RecordTooLargeError,
    Recovery,
    SnapshotWriter,
    Storage,
    StorageError,
    UnsupportedFormatError,
)
from .config import WalConfig
from .log import FileQueueLog
from .memory import MemoryState, MemoryStorage
from .repair import repair
from .snapshot import FileSnapshotWriter
from .stats import Buckets, FlushStats
from .storage import FileStorage

__all__ = [
    "Buckets",
    "CorruptLogError",
    "Durability",
    "FileQueueLog",
    "FileSnapshotWriter",
    "FileStorage",
    "FlushStats",
    "LogClosedError",
    "LogRecord",
    "MemoryState",
    "MemoryStorage",
    "NoSpaceError",
    "QueueLog",
    "RecordTooLargeError",
    "Recovery",
    "SnapshotWriter",
    "Storage",
    "StorageError",
    "UnsupportedFormatError",
    "WalConfig",
    "repair",
]
