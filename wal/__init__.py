"""Write-ahead log: per-queue mmap'd segments, group commit, snapshots, recovery (`wal/FORMAT.md`)."""
