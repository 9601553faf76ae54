"""A log of the server's own (``<data-dir>/meta/<name>``): commit, then apply, and snapshots.

The engine's rule holds here as for queues: a command appends its record, waits until the record is
durable, and only then is the record applied to memory (by `SystemLog`'s durability listener, in LSN
order, before the writer resumes), so a writer that goes away cannot leave a durable record
unapplied and nothing anyone sees is ahead of the disk. A failed fsync is fail-stop: the records that
waited are never applied, every later commit raises `StorageFailed`, and ``on_failure`` is told once.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from spitfire.wal.api import Durability, NoSpaceError, QueueLog, Recovery, Storage, StorageError

from .errors import NoSpace, StorageFailed
from .recovery import UndecodableRecordError

__all__ = ["SystemLog", "read_snapshot", "replay"]

_encode = msgspec.msgpack.Encoder().encode


class SystemLog:
    """One system log and the records of it waiting for their commit. Single-threaded (the loop's).

    ``apply(rtype, body)`` is called for each record once it is durable (and by the owner's recovery).
    """

    def __init__(
        self,
        storage: Storage,
        name: str,
        apply: Callable[[int, Any], None],
        *,
        on_failure: Callable[[StorageError], None] | None = None,
    ) -> None:
        self._storage = storage
        self.name = name
        self._apply = apply
        #: Told once when the log can no longer make records durable (the engine fails-stop).
        self.on_failure = on_failure
        self._log: QueueLog | None = None
        self._pending: collections.deque[tuple[int, int, Any, asyncio.Future[None]]] = collections.deque()
        #: LSN of the newest record applied, and of the newest snapshot.
        self.applied_lsn = 0
        self.snapshot_lsn = 0
        self._snapshotting = False
        self.failure: StorageError | None = None

    @property
    def where(self) -> str:
        """The log's name in messages (``meta/<name>``)."""
        return self._log.queue if self._log is not None else f"meta/{self.name}"

    def open(self, recover: Callable[[Recovery, str], int]) -> None:
        """Open the log; ``recover(recovery, where)`` replays it and returns the LSN it applied up to."""
        log_, recovery = self._storage.open_system_log(self.name, Durability.GROUP)
        self._log = log_
        applied = recover(recovery, log_.queue)
        self.snapshot_lsn = recovery.snapshot_lsn
        self.applied_lsn = max(applied, log_.last_lsn)
        log_.set_listener(self._durable, self._failed)

    @property
    def unsnapshotted(self) -> int:
        """Records applied since the newest snapshot."""
        return self.applied_lsn - self.snapshot_lsn

    async def commit(self, rtype: int, body: msgspec.Struct) -> None:
        """Append ``body``, wait until it is durable; it is applied before this returns.

        :raises NoSpace: the disk is full. :raises StorageFailed: the storage failed (fail-stop).
        """
        if self.failure is not None:
            raise StorageFailed(str(self.failure))
        assert self._log is not None, "SystemLog.open was not called"
        try:
            lsn = self._log.append(rtype, _encode(body))
        except NoSpaceError:
            raise NoSpace(self._log.queue) from None
        done = asyncio.get_running_loop().create_future()
        self._pending.append((lsn, rtype, body, done))
        if self._log.commit(lsn) is None:  # already durable (async mode, memory storage)
            self._durable(lsn)
        # Shielded: a cancelled caller leaves the record to be applied by `_durable` all the same.
        await asyncio.shield(done)

    def _durable(self, upto: int) -> None:
        pending = self._pending
        while pending and pending[0][0] <= upto:
            lsn, rtype, body, done = pending.popleft()
            self._apply(rtype, body)
            self.applied_lsn = lsn
            if not done.done():
                done.set_result(None)

    def _failed(self, error: StorageError) -> None:
        self.failure = error
        while self._pending:
            done = self._pending.popleft()[3]
            if not done.done():
                done.set_exception(StorageFailed(str(error)))
        if self.on_failure is not None:
            self.on_failure(error)

    async def snapshot(self, chunk: Callable[[], bytes]) -> int:
        """Write a snapshot of one chunk, ``chunk()``, encoded now at the applied LSN; returns its LSN."""
        if self._snapshotting or self._log is None or self.failure is not None:
            return self.snapshot_lsn
        self._snapshotting = True
        try:
            lsn = self.applied_lsn
            writer = self._log.snapshot(lsn)
            try:
                writer.add(chunk())
                await writer.finish()
            except BaseException:
                writer.abort()
                raise
            self.snapshot_lsn = max(self.snapshot_lsn, lsn)
            return lsn
        finally:
            self._snapshotting = False


def read_snapshot(recovery: Recovery, decoder: msgspec.msgpack.Decoder[Any], version: int, what: str) -> Any:
    """The system log's snapshot decoded (None without one); ``what`` names it in the error raised
    when its ``version`` is not the one this build reads."""
    chunks = list(recovery.snapshot_chunks)
    if not chunks:
        return None
    snap = decoder.decode(chunks[0])
    if snap.version != version:
        raise ValueError(f"{what} has version {snap.version}; this build reads {version}")
    return snap


def replay(
    recovery: Recovery,
    where: str,
    decoders: Mapping[int, msgspec.msgpack.Decoder[Any]],
    apply: Callable[[int, Any], None],
    kind: str,
    start: int,
) -> int:
    """Apply every record after the snapshot (of a log of ``kind`` records); returns the LSN of the
    last one, or ``start`` (the snapshot's LSN, or 0) when there is none. A record of another type,
    or whose body does not decode, raises `UndecodableRecordError` naming where it is."""
    applied = start
    for record in recovery.records:
        decoder = decoders.get(record.rtype)
        try:
            if decoder is None:
                raise msgspec.DecodeError(f"record type {record.rtype} is not a {kind} record")
            apply(record.rtype, decoder.decode(record.body))
        except msgspec.DecodeError as exc:
            raise UndecodableRecordError(
                where, record.lsn, record.rtype, f"a body that does not decode ({exc})",
                recovery.locate(record.lsn),
            ) from exc  # fmt: skip
        applied = record.lsn
    return applied
