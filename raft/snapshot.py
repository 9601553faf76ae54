"""The replicated state a cluster member holds and snapshots: every log as a single node stores it.

Followers run no engine. What they apply, every member alike, is the *record-level* state of every
log (each queue's, and ``meta/schedules`` / ``meta/definitions``): the newest snapshot the leader's
engine wrote of that log (its LSN and its chunks, byte for byte the single node's snapshot chunks,
wal/FORMAT.md "Snapshot chunks"), plus the log's records after that LSN. That is exactly what a
single node's WAL and snapshot files hold, so a new leader opens its engine over it the way a single
node recovers (snapshot, then the tail), and the state stays as small as a single node's data
directory: the leader's engine snapshots each log every ``--snapshot-every`` records, and those
snapshots travel through the Raft log as `SnapshotPart` items of a `Batch`; once a snapshot's END
part is applied, every member drops that log's records up to its LSN.

A **Raft snapshot** of this state at a Raft index is one WAL snapshot file of the ``meta/raft`` log
(wal/FORMAT.md, "Raft snapshot"): chunk 1 a `SnapshotMeta` (Raft index, term, the entries pysyncobj
keeps at the start of a compacted log, the member's term and vote, the membership and the leaders'
addresses), then per log a `LogHead`, the log's engine snapshot chunks, and its records in
`RecordChunk` chunks.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec

from spitfire.wal.api import LogRecord, Recovery, StorageError

from .batch import DROPPED, Batch, LeaderInfo, SnapshotPart, decode_command

__all__ = [
    "RAFT_SNAPSHOT_VERSION",
    "RECORDS_PER_CHUNK",
    "LogHead",
    "LogState",
    "PartWriter",
    "ReplicatedState",
    "SnapshotMeta",
    "decode_raft_snapshot",
]

#: Version of the Raft snapshot's layout (`SnapshotMeta.version`).
RAFT_SNAPSHOT_VERSION = 1
#: Records per `RecordChunk` chunk of a Raft snapshot (one yield to the loop between two chunks).
RECORDS_PER_CHUNK = 4096

#: `SnapshotPart.kind`: a chunk, the end (``count`` chunks were sent), or an aborted snapshot.
PART_CHUNK, PART_END, PART_ABORT = 0, 1, 2


class SnapshotMeta(msgspec.Struct, array_like=True, frozen=True):
    """Chunk 1 of a Raft snapshot: what the snapshot covers and what the journal restarts from."""

    version: int
    #: The Raft index the state reflects (every committed entry up to it), and that entry's term.
    index: int
    term: int
    #: Term of the entry before it (pysyncobj keeps both entries at the start of a compacted log).
    prev_term: int
    #: The command of the entry at ``index`` (a follower that has the entry before it but not this
    #: one is sent it from the leader's journal, which keeps it).
    command: bytes
    #: The member's current term and vote when the snapshot was written (records after the
    #: snapshot's LSN may change them again).
    current_term: int
    voted_for: str | None
    #: Members, ``[[id, raft address], ...]``, as this member knew them.
    members: list[tuple[str, str]]
    #: Where members served when they last led.
    addresses: list[LeaderInfo]
    #: Number of logs that follow (one `LogHead` each).
    logs: int


class LogHead(msgspec.Struct, array_like=True, frozen=True):
    """Starts one log's part of a Raft snapshot: its name, its engine snapshot's LSN (0: none), and
    how many engine snapshot chunks and `RecordChunk` chunks follow."""

    name: str
    snapshot_lsn: int
    chunks: int
    record_chunks: int


#: A `RecordChunk` chunk: ``[[lsn, type, body], ...]`` of one log, in LSN order.
RecordChunk = list[tuple[int, int, bytes]]

_encode = msgspec.msgpack.encode
_meta_decoder = msgspec.msgpack.Decoder(SnapshotMeta)
_head_decoder = msgspec.msgpack.Decoder(LogHead)
_records_decoder = msgspec.msgpack.Decoder(RecordChunk)

#: A record as a batch carries it: (log name, LSN, type, body).
_Record = tuple[str, int, int, bytes]


@dataclass(slots=True)
class LogState:
    """One log: its newest engine snapshot (LSN and chunks) and its records after that LSN."""

    snapshot_lsn: int = 0
    chunks: list[bytes] = field(default_factory=list)
    records: list[_Record] = field(default_factory=list)
    #: An engine snapshot whose chunks are arriving: (its LSN, the chunks so far).
    pending: tuple[int, list[bytes]] | None = None

    @property
    def last_lsn(self) -> int:
        return self.records[-1][1] if self.records else self.snapshot_lsn

    def part(self, part: SnapshotPart) -> None:
        if part.kind == PART_CHUNK:
            if self.pending is None or self.pending[0] != part.lsn:
                self.pending = (part.lsn, [])  # a new snapshot (an older one was abandoned)
            self.pending[1].append(part.data)
        elif part.kind == PART_END and self.pending is not None and self.pending[0] == part.lsn:
            lsn, chunks = self.pending
            self.pending = None
            if len(chunks) != part.count:  # some chunks were before this member's Raft snapshot
                return
            self.snapshot_lsn, self.chunks = lsn, chunks
            records = self.records
            # Records are in LSN order: drop those the snapshot reflects.
            cut = bisect.bisect_right(records, lsn, key=_lsn)
            del records[:cut]
        else:
            self.pending = None


def _lsn(record: _Record) -> int:
    return record[1]


class ReplicatedState:
    """Every log's snapshot and tail, as of Raft index `index` (entries applied in order)."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.logs: dict[str, LogState] = {}
        self.addresses: dict[str, LeaderInfo] = {}
        #: Records and bytes applied since the state was last snapshotted (to decide when).
        self.records_since = 0
        self.bytes_since = 0

    def apply(self, index: int, command: bytes) -> None:
        """Apply the entry at ``index`` (the next one): its batch's records and snapshot parts.

        :raises msgspec.DecodeError: the entry is not a batch this build reads.
        """
        self.index = index
        self.bytes_since += len(command)
        batch = decode_command(command)
        if batch is None:  # pysyncobj's own entries (a new leader's no-op)
            return
        self._apply_batch(batch)

    def _apply_batch(self, batch: Batch) -> None:
        logs = self.logs
        for record in batch.records:
            name = record[0]
            if record[2] == DROPPED:
                logs.pop(name, None)
                continue
            state = logs.get(name)
            if state is None:
                state = logs[name] = LogState()
            state.records.append(record)
        self.records_since += len(batch.records)
        for part in batch.parts:
            state = logs.get(part.log)
            if state is None:
                state = logs[part.log] = LogState()
            state.part(part)
        if batch.leader is not None:
            self.addresses[batch.leader.node] = batch.leader

    def recovered(self) -> dict[str, Recovery]:
        """What each log holds, as a single node's storage would recover it (a new leader's engine
        opens over this)."""
        return {
            name: Recovery(
                state.snapshot_lsn,
                list(state.chunks),
                [LogRecord(lsn, rtype, body) for _, lsn, rtype, body in state.records],
            )
            for name, state in self.logs.items()
        }

    def capture(self) -> list[tuple[str, int, list[bytes], list[_Record]]]:
        """An immutable view of every log as of now, for a snapshot written over several loop
        passes: the lists are copied (their items, bytes and tuples, are immutable)."""
        return [(name, s.snapshot_lsn, list(s.chunks), list(s.records)) for name, s in self.logs.items()]

    @property
    def record_count(self) -> int:
        return sum(len(s.records) for s in self.logs.values())


async def encode_raft_snapshot(
    meta: SnapshotMeta,
    logs: list[tuple[str, int, list[bytes], list[_Record]]],
    add: Callable[[bytes], None],
) -> float:
    """Feed a Raft snapshot's chunks to ``add``, yielding to the loop between record chunks (the
    engine chunks are bytes already: nothing to encode). Returns the longest time, in seconds, it
    held the loop between two yields."""
    longest = 0.0
    began = time.perf_counter()
    add(_encode(meta))
    for name, snapshot_lsn, chunks, records in logs:
        count = -(-len(records) // RECORDS_PER_CHUNK)
        add(_encode(LogHead(name, snapshot_lsn, len(chunks), count)))
        for chunk in chunks:
            add(chunk)
        for start in range(0, len(records), RECORDS_PER_CHUNK):
            longest = max(longest, time.perf_counter() - began)
            await asyncio.sleep(0)
            began = time.perf_counter()
            add(_encode([r[1:] for r in records[start : start + RECORDS_PER_CHUNK]]))
    return max(longest, time.perf_counter() - began)


class RaftSnapshotError(StorageError):
    """A Raft snapshot's chunks do not decode (a valid checksum, a layout this build cannot read)."""


def decode_raft_snapshot(chunks: list[bytes]) -> tuple[SnapshotMeta, ReplicatedState]:
    """The meta and the state of a Raft snapshot's chunks.

    :raises RaftSnapshotError: the chunks are not a Raft snapshot this build reads.
    """
    try:
        it: Iterator[bytes] = iter(chunks)
        meta = _meta_decoder.decode(next(it))
        if meta.version != RAFT_SNAPSHOT_VERSION:
            raise RaftSnapshotError(
                f"Raft snapshot version {meta.version}; this build reads {RAFT_SNAPSHOT_VERSION}"
            )
        state = ReplicatedState(meta.index)
        state.addresses = {a.node: a for a in meta.addresses}
        for _ in range(meta.logs):
            head = _head_decoder.decode(next(it))
            log = state.logs[head.name] = LogState(head.snapshot_lsn)
            log.chunks = [next(it) for _ in range(head.chunks)]
            name = head.name
            for _ in range(head.record_chunks):
                log.records.extend(
                    (name, lsn, rtype, body) for lsn, rtype, body in _records_decoder.decode(next(it))
                )
        if next(it, None) is not None:
            raise RaftSnapshotError("chunks after the last log")
    except (msgspec.DecodeError, StopIteration) as exc:
        raise RaftSnapshotError(
            f"a Raft snapshot chunk does not decode ({exc or 'missing chunks'})"
        ) from None
    return meta, state


class PartWriter:
    """`SnapshotWriter` of a log on the leader: the engine's snapshot chunks go into the Raft log as
    `SnapshotPart` items of the next batches; ``finish`` returns once the END part is committed (on
    a majority), when every member has dropped the records the snapshot reflects.

    ``send(part)`` adds a part to the current batch and returns a future done when its batch is
    committed (failed with the storage error when it never will be).
    """

    def __init__(self, send: Callable[[SnapshotPart], asyncio.Future[None]], log: str, lsn: int) -> None:
        self._send = send
        self._log = log
        self._lsn = lsn
        self._count = 0
        self._state = "open"

    @property
    def lsn(self) -> int:
        return self._lsn

    def add(self, chunk: bytes) -> None:
        if self._state != "open":
            raise StorageError(f"snapshot of log {self._log!r} at LSN {self._lsn} is already {self._state}")
        future = self._send(SnapshotPart(self._log, self._lsn, PART_CHUNK, bytes(chunk)))
        future.add_done_callback(_consume)  # ``finish`` waits for the END, committed after them
        self._count += 1

    async def finish(self) -> None:
        if self._state != "open":
            raise StorageError(f"snapshot of log {self._log!r} at LSN {self._lsn} is already {self._state}")
        self._state = "finished"
        await self._send(SnapshotPart(self._log, self._lsn, PART_END, b"", self._count))

    def abort(self) -> None:
        if self._state == "open":
            self._state = "aborted"
            future = self._send(SnapshotPart(self._log, self._lsn, PART_ABORT))
            future.add_done_callback(_consume)


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
