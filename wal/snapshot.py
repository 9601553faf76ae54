"""Snapshots: written by a background thread from chunks queued on the loop; read back at recovery.

File layout (`wal/FORMAT.md`): ``snap-<lsn:020d>.snap`` holds records in the log's framing: one
HEADER record (magic, version, LSN), one CHUNK record per `add`, one END record carrying the chunk
count. It is written as ``<name>.tmp``, fsynced, renamed, and the directory fsynced.

A writer reaches its log only through the callbacks of a `SnapshotHooks` (wait until durable, say
it is done, list compactable segments), so this module imports no module that imports it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .api import StorageError, UnsupportedFormatError
from .constants import (
    FORMAT_VERSION,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SNAP_TYPE_CHUNK,
    SNAP_TYPE_END,
    SNAP_TYPE_HEADER,
    SNAPSHOT_END,
    SNAPSHOT_HEADER,
    SNAPSHOT_MAGIC,
    SNAPSHOT_NAME,
    SNAPSHOT_NAME_RE,
    TMP_SUFFIX,
)
from .format import align, check_record, record_crc
from .segment import fsync_dir

logger = logging.getLogger("spitfire.wal")

#: Buffer of the snapshot file: big writes, few syscalls.
_WRITE_BUFFER = 1 << 20
#: Number of snapshots kept by compaction: the newest, and the previous one to fall back to.
KEEP_SNAPSHOTS = 2
_PAD = bytes(8)
#: Nice value of snapshot writer threads (background work: the loop thread must win the CPU).
SNAPSHOT_NICE = 10


class _Finish:
    """Sentinel queued by `finish`."""


class _Abort:
    """Sentinel queued by `abort`."""


def snapshot_path(snapshots_dir: Path, lsn: int) -> Path:
    """Final path of the snapshot started at ``lsn``."""
    return snapshots_dir / SNAPSHOT_NAME.format(lsn)


def list_snapshots(snapshots_dir: Path) -> list[tuple[int, Path]]:
    """(LSN, path) of every final snapshot file, oldest first."""
    found = []
    for name in os.listdir(snapshots_dir):
        match = SNAPSHOT_NAME_RE.match(name)
        if match:
            found.append((int(match.group(1)), snapshots_dir / name))
    return sorted(found)


def _frame(rtype: int, body: bytes) -> tuple[bytes, bytes]:
    head = RECORD_HEADER.pack(record_crc(rtype, body), len(body), rtype)
    return head, _PAD[: align(RECORD_HEADER_SIZE + len(body)) - RECORD_HEADER_SIZE - len(body)]


@dataclass(frozen=True, slots=True)
class SnapshotHooks:
    """What a snapshot writer needs from its log: where to write, and three callbacks (loop thread)."""

    #: Queue name (for the writer thread's name and messages).
    queue: str
    snapshots_dir: Path
    wal_dir: Path
    #: fsync the snapshot file (off only in tests that do not care about power loss).
    fsync: bool
    #: Wait until every record up to the given LSN is durable.
    wait_durable: Callable[[int], Awaitable[None]]
    #: The writer is finished or aborted: the log may start another one.
    done: Callable[[FileSnapshotWriter], None]
    #: Forget and return the segments whose records all have LSN <= the given one (to delete).
    compactable: Callable[[int], list[Path]]


class FileSnapshotWriter:
    """Satisfies `SnapshotWriter`. The loop only queues chunks; a thread frames and writes them."""

    _thread: threading.Thread

    def __init__(self, hooks: SnapshotHooks, lsn: int, previous: FileSnapshotWriter | None = None) -> None:
        self._hooks = hooks
        #: An aborted writer may still be deleting its ``.tmp`` (same name when the LSN is the same).
        self._previous = previous._thread if previous is not None else None
        self._lsn = lsn
        self._loop = asyncio.get_running_loop()
        self.path = snapshot_path(hooks.snapshots_dir, lsn)
        self._tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        self._chunks: queue.SimpleQueue[bytes | _Finish | _Abort] = queue.SimpleQueue()
        self._done: asyncio.Future[int | None] = self._loop.create_future()
        self._state = "open"
        name = f"spitfire-snapshot-{hooks.queue}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def lsn(self) -> int:
        return self._lsn

    def add(self, chunk: bytes) -> None:
        if self._state != "open":
            raise StorageError(f"snapshot at LSN {self._lsn} is already {self._state}")
        self._chunks.put(chunk if type(chunk) is bytes else bytes(chunk))

    async def finish(self) -> None:
        if self._state != "open":
            raise StorageError(f"snapshot at LSN {self._lsn} is already {self._state}")
        self._state = "finishing"
        try:
            # The snapshot must never be ahead of the durable log: recovery would reuse its LSNs.
            await self._hooks.wait_durable(self._lsn)
        except BaseException:
            self.abort()
            raise
        self._chunks.put(_Finish())
        try:
            previous = await self._done
        finally:
            self._state = "finished"
            self._hooks.done(self)
        if previous is not None:
            doomed = self._hooks.compactable(previous)
            if doomed:
                await asyncio.to_thread(_unlink_all, doomed, self._hooks.wal_dir)

    def abort(self) -> None:
        if self._state in ("open", "finishing"):
            self._state = "aborted"
            self._chunks.put(_Abort())
            self._hooks.done(self)

    # --- writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        _lower_priority()
        if self._previous is not None:
            self._previous.join()
            self._previous = None
        try:
            result = self._write()
        except BaseException as exc:
            logger.error("writing snapshot %s failed: %s", self._tmp, exc)
            _unlink_quietly(self._tmp)
            error = StorageError(f"writing snapshot {self.path} failed: {exc}")
            self._settle(None, error)
        else:
            self._settle(result, None)

    def _settle(self, result: int | None, error: StorageError | None) -> None:
        def settle() -> None:
            if self._done.done():
                return
            if error is None:
                self._done.set_result(result)
            else:
                self._done.set_exception(error)

        with contextlib.suppress(RuntimeError):  # the loop is gone; nobody waits
            self._loop.call_soon_threadsafe(settle)

    def _write(self) -> int | None:
        """Write the file; returns the LSN of the previous snapshot (None if none, or aborted)."""
        count = 0
        with open(self._tmp, "wb", buffering=_WRITE_BUFFER) as out:
            header_body = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, FORMAT_VERSION, self._lsn)
            head, pad = _frame(SNAP_TYPE_HEADER, header_body)
            out.write(head + header_body + pad)
            while True:
                item = self._chunks.get()
                if isinstance(item, _Abort):
                    break
                if isinstance(item, _Finish):
                    end_body = SNAPSHOT_END.pack(count)
                    head, pad = _frame(SNAP_TYPE_END, end_body)
                    out.write(head + end_body + pad)
                    out.flush()
                    if self._hooks.fsync:
                        os.fsync(out.fileno())
                    break
                head, pad = _frame(SNAP_TYPE_CHUNK, item)
                out.write(head)
                out.write(item)
                out.write(pad)
                count += 1
        if isinstance(item, _Abort):
            _unlink_quietly(self._tmp)
            return None
        os.rename(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return self._drop_old_snapshots()

    def _drop_old_snapshots(self) -> int | None:
        snaps = list_snapshots(self.path.parent)
        keep = snaps[-KEEP_SNAPSHOTS:]
        for _, path in snaps[:-KEEP_SNAPSHOTS]:
            _unlink_quietly(path)
        if len(snaps) > KEEP_SNAPSHOTS:
            fsync_dir(self.path.parent)
        return keep[0][0] if len(keep) == KEEP_SNAPSHOTS else None


def _lower_priority() -> None:
    """Make the calling thread yield the CPU to the event loop (Linux: per-thread nice value).

    On a small machine the writer's copying into the page cache otherwise competes with the loop
    thread for a core, and the loop's longest stall grows with it.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SNAPSHOT_NICE)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _unlink_all(paths: list[Path], directory: Path) -> None:
    for path in paths:
        _unlink_quietly(path)
    fsync_dir(directory)


class SnapshotError(Exception):
    """A snapshot file is partial or damaged (recovery falls back to an older one)."""


def read_snapshot(path: Path, lsn: int) -> list[bytes]:
    """Validate a snapshot file and return its chunks (copies).

    :raises SnapshotError: partial (no END, wrong count) or damaged (CRC, framing, wrong LSN).
    :raises UnsupportedFormatError: written by another format version.
    """
    data = path.read_bytes()
    view = memoryview(data)
    size = len(data)
    off = 0
    chunks: list[bytes] = []
    rtype, length, reason = check_record(view, off, size)
    if rtype != SNAP_TYPE_HEADER or length != SNAPSHOT_HEADER.size:
        raise SnapshotError(f"bad header record at offset 0: {reason or 'not a snapshot header'}")
    magic, version, header_lsn = SNAPSHOT_HEADER.unpack_from(view, RECORD_HEADER_SIZE)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotError("bad snapshot magic")
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(str(path), version, FORMAT_VERSION)
    if header_lsn != lsn:
        raise SnapshotError(f"header says LSN {header_lsn}, file name says {lsn}")
    off = align(RECORD_HEADER_SIZE + length)
    while True:
        rtype, length, reason = check_record(view, off, size)
        if rtype == SNAP_TYPE_CHUNK:
            chunks.append(bytes(view[off + RECORD_HEADER_SIZE : off + RECORD_HEADER_SIZE + length]))
            off = align(off + RECORD_HEADER_SIZE + length)
            continue
        if rtype != SNAP_TYPE_END or length != SNAPSHOT_END.size:
            raise SnapshotError(
                f"offset {off}: {reason or f'unexpected record type {rtype}'} (no END record)"
            )
        (count,) = SNAPSHOT_END.unpack_from(view, off + RECORD_HEADER_SIZE)
        if count != len(chunks):
            raise SnapshotError(f"END record counts {count} chunks, the file holds {len(chunks)}")
        off = align(off + RECORD_HEADER_SIZE + length)
        if off != size:
            raise SnapshotError(f"{size - off} unexpected bytes after the END record")
        return chunks


def write_snapshot_file(path: Path, lsn: int, chunks: list[bytes], *, fsync: bool = True) -> None:
    """Write a complete snapshot file at ``path`` at once, in the caller's thread: the same bytes a
    `FileSnapshotWriter` writes for these chunks (``<name>.tmp``, fsync, rename, directory fsync).
    For a snapshot received whole (a cluster member catching up from its leader's snapshot).

    :raises OSError: the file cannot be written (the ``.tmp`` is removed).
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb", buffering=_WRITE_BUFFER) as out:
            header_body = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, FORMAT_VERSION, lsn)
            head, pad = _frame(SNAP_TYPE_HEADER, header_body)
            out.write(head + header_body + pad)
            for chunk in chunks:
                head, pad = _frame(SNAP_TYPE_CHUNK, chunk)
                out.write(head)
                out.write(chunk)
                out.write(pad)
            end_body = SNAPSHOT_END.pack(len(chunks))
            head, pad = _frame(SNAP_TYPE_END, end_body)
            out.write(head + end_body + pad)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)
