"""What one Raft entry carries: a batch of our WAL records, many per entry (one entry per loop pass).

A record keeps the bytes the engine appended (``server/records.py``, wal/FORMAT.md's record types)
with the name of the log it belongs to and its LSN in that log, so that replaying the committed
entries in order gives each queue's log back exactly as a single node's WAL would hold it.
"""

from __future__ import annotations

import msgspec
from pysyncobj import pickle as syncobj_pickle  # type: ignore[import-untyped]

__all__ = ["DROPPED", "Batch", "LeaderInfo", "SnapshotPart", "decode_command", "encode_batch"]

#: Record type of a batch item that says "this log was dropped here" (its queue was deleted):
#: records of the same name after it belong to a new log, from LSN 1. Never an engine record type.
DROPPED = 0

#: pysyncobj's command type byte of a call of a replicated method.
_REGULAR = b"\x00"


class LeaderInfo(msgspec.Struct, array_like=True, frozen=True):
    """Where a new leader serves clients: every member learns it when the entry commits."""

    node: str
    #: The binary protocol's address, ``host:port``.
    listen: str
    #: The HTTP base URL, ``http://host:port``.
    http: str
    #: Its ``--compat-http`` base URL (None: it serves none). Entries of older builds have only the
    #: three fields above (these two are then None); a reader ignores fields past those it knows.
    compat: str | None = None
    #: Its ``--redis`` ``host:port`` (None: it serves none).
    redis: str | None = None


class SnapshotPart(msgspec.Struct, array_like=True, frozen=True):
    """A piece of one engine snapshot of a log, travelling in the Raft log (`spitfire.raft.snapshot`)."""

    #: The log's name (as in `Batch.records`) and the LSN the snapshot reflects.
    log: str
    lsn: int
    #: 0: a chunk (``data``); 1: the end (``count`` chunks were sent); 2: the snapshot was abandoned.
    kind: int
    data: bytes = b""
    count: int = 0


class Batch(msgspec.Struct, array_like=True, frozen=True):
    """One Raft entry's payload."""

    #: ``(log name, LSN in that log, record type, body)``, in append order; the log name is the
    #: queue's, or ``meta/<name>`` for a system log; record type `DROPPED` marks a dropped log.
    records: list[tuple[str, int, int, bytes]] = []
    #: Set in the first entry a new leader proposes.
    leader: LeaderInfo | None = None
    #: Pieces of the leader's engine snapshots, applied after ``records``.
    parts: list[SnapshotPart] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    """The bytes a batch travels and is stored as (inside pysyncobj's command)."""
    return _encoder.encode(batch)


def decode_command(command: bytes) -> Batch | None:
    """The batch inside one of pysyncobj's journal commands; None for pysyncobj's own entries
    (the no-op a new leader appends, membership and version changes).

    :raises msgspec.DecodeError: the command is not a batch this build can read.
    """
    if command[:1] != _REGULAR:
        return None
    call = syncobj_pickle.loads(command[1:])
    # A replicated method's call: (method id, (arguments...)); the node has one method, one argument.
    data = call[1][0]
    if not isinstance(data, bytes):
        raise msgspec.DecodeError(f"a Raft entry holds {type(data).__name__}, not a batch")
    return _decoder.decode(data)
