"""Raft snapshots and log compaction of a cluster member, and catching up from a snapshot.

Every member, leader or follower, applies the committed entries into a `ReplicatedState` (every
log's newest engine snapshot and the records after it, `spitfire.raft.snapshot`) and, every
``--snapshot-every`` records (or `SNAPSHOT_BYTES` of entries), writes that state at its applied
Raft index ``I`` as a WAL snapshot of its ``meta/raft`` log, claiming the LSN of the journal record
of entry ``I``. The WAL makes it durable (``.tmp``, fsync, rename, directory fsync), keeps the
newest two and deletes the journal's segments the older one no longer needs; the journal then
drops its entries before ``I - 1`` from memory (pysyncobj keeps the two entries a snapshot ends
with at the start of its log). Recovery is the WAL's: the newest valid snapshot (a damaged one is
set aside and the previous one used) and the journal records after it.

A member whose next entry is below the leader's first one gets the leader's newest snapshot through
pysyncobj's own transfer (the leader reads ``<data-dir>/meta/raft-transfer.snap``, a hard link to
that snapshot; pysyncobj itself never serializes: its compaction stays off), checks every CRC,
writes it as its own snapshot (with its own term and vote) and replaces its journal and state with
it, then receives the entries after it.

Followers apply an entry to the state only once it is known committed *and* known to match the
leader's log (pysyncobj takes a follower's commit index as min(leader's, own last index), which can
count an entry of an older term that a later entry will replace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import msgspec
from pysyncobj.serializer import Serializer  # type: ignore[import-untyped]

from spitfire.wal.api import CorruptLogError, QueueLog, Recovery, StorageError
from spitfire.wal.constants import RECORD_HEADER_SIZE, SNAPSHOT_HEADER, SNAPSHOT_NAME
from spitfire.wal.snapshot import read_snapshot, write_snapshot_file

from .journal import JOURNAL_LOG, DurableJournal, JournalRecord
from .node import ClusterConfig, RaftNode, Role
from .snapshot import (
    RAFT_SNAPSHOT_VERSION,
    RaftSnapshotError,
    ReplicatedState,
    SnapshotMeta,
    decode_raft_snapshot,
    encode_raft_snapshot,
)

__all__ = [
    "JOURNAL_SEGMENT_SIZE",
    "SNAPSHOT_BYTES",
    "TRANSFER_FILE",
    "CompactingJournal",
    "CompactingNode",
    "Compactor",
]

log = logging.getLogger("spitfire.raft")

#: The file (in ``<data-dir>/meta/``) pysyncobj sends to a member that needs a snapshot: a hard link
#: to the newest Raft snapshot; on the receiving side, where the snapshot arrives.
TRANSFER_FILE = "raft-transfer.snap"
#: Largest segment of the journal: compaction deletes whole segments, so they stay modest.
JOURNAL_SEGMENT_SIZE = 4 * 2**20
#: A Raft snapshot is also written after this many bytes of entries (whatever --snapshot-every says).
SNAPSHOT_BYTES = 64 * 2**20
#: Bytes of a snapshot per message of pysyncobj's transfer.
TRANSFER_CHUNK = 2**20
#: Seconds of applying entries to the state per tick at most (a member catching up spreads it).
APPLY_BUDGET = 0.002
#: The command of the entry kept before a snapshot's last one: pysyncobj's no-op (only its index and
#: term are ever read: it is never sent nor applied again).
_PLACEHOLDER = b"\x01"

_Entry = tuple[bytes, int, int]


class CompactingJournal(DurableJournal):
    """`DurableJournal` that starts from the newest Raft snapshot of its log and can drop the
    entries a snapshot covers. `restored` is the snapshot's state (None without a snapshot)."""

    def __init__(self, log_: QueueLog, recovery: Recovery) -> None:
        self._lsns: dict[int, int] = {}
        self._to_restore: Recovery | None = recovery if recovery.snapshot_lsn else None
        self._installing = 0
        self.restored: ReplicatedState | None = None
        #: Index and journal LSN of the newest durable Raft snapshot (0: none).
        self.snapshot_index = 0
        self.snapshot_lsn = 0
        #: The configuration as of that snapshot, and its entry's term (None: no snapshot). The
        #: configuration entries it covers are compacted away, so membership starts from it.
        self.snapshot_members: dict[str, str] | None = None
        self.snapshot_term = 0
        super().__init__(log_, recovery)
        self._restore()

    def _restore(self) -> None:
        """Start from the snapshot, before the records after it are replayed."""
        recovery = self._to_restore
        if recovery is None:
            return
        self._to_restore = None
        try:
            meta, state = decode_raft_snapshot(list(recovery.snapshot_chunks))
        except RaftSnapshotError as exc:
            raise CorruptLogError(
                f"meta/{JOURNAL_LOG}/snapshots",
                0,
                f"the Raft snapshot at LSN {recovery.snapshot_lsn} has valid checksums but cannot be "
                f"read ({exc})",
                hint="If a newer spitfire-server wrote it, run that release; otherwise move this "
                "member's data directory away and start it empty: it then copies the leader's snapshot",
            ) from None
        self._entries = _base(meta)
        self.term, self.voted_for = meta.current_term, meta.voted_for
        self.restored = state
        self.snapshot_index = meta.index
        self.snapshot_lsn = recovery.snapshot_lsn
        self.snapshot_members, self.snapshot_term = dict(meta.members), meta.term
        self._lsns = {meta.index: recovery.snapshot_lsn}

    def _replay(self, lsn: int, rtype: int, body: bytes, recovery: Recovery) -> None:
        self._restore()
        super()._replay(lsn, rtype, body, recovery)
        if rtype == JournalRecord.ENTRY:
            self._lsns[self._entries[-1][1]] = lsn

    @property
    def log(self) -> QueueLog:
        """The WAL log the journal is kept in (its snapshots are the Raft snapshots)."""
        return self._log

    def add(self, command: bytes, idx: int, term: int) -> None:
        if self._installing:  # pysyncobj re-adds the entries a snapshot ends with: held already
            self._installing -= 1
            return
        before = self._log.last_lsn
        super().add(command, idx, term)
        if self._log.last_lsn != before:
            self._lsns[idx] = self._log.last_lsn

    def clear(self) -> None:
        if self._installing:  # pysyncobj clears before it re-adds: `install` replaced the entries
            self._installing -= 1
            return
        super().clear()

    @property
    def first_index(self) -> int:
        return self._entries[0][1] if self._entries else 0

    def entry(self, index: int) -> _Entry | None:
        """The entry at ``index``, None when not held."""
        pos = index - self.first_index
        entries = self._entries
        if not entries or not 0 <= pos < len(entries):
            return None
        return entries[pos]

    def lsn_of(self, index: int) -> int | None:
        """LSN of the journal record that holds the entry at ``index``."""
        return self._lsns.get(index)

    def compact(self, index: int, lsn: int) -> None:
        """The Raft snapshot at ``index`` is durable (at journal LSN ``lsn``): drop the entries
        before ``index - 1`` from memory (their segments are the WAL's to delete)."""
        if index <= self.snapshot_index:
            return
        entries = self._entries
        first = self.first_index
        drop = index - 1 - first
        if drop > 0:
            del entries[:drop]
            for gone in range(first, index - 1):
                self._lsns.pop(gone, None)
        if entries and entries[0][1] == index - 1:
            _, idx, term = entries[0]
            entries[0] = (_PLACEHOLDER, idx, term)
        self.snapshot_index, self.snapshot_lsn = index, lsn

    def mark(self) -> int:
        """Append the term and vote again and return that record's LSN: a new LSN, above every
        snapshot's, for a received snapshot to be written at."""
        self._append(JournalRecord.TERM, msgspec.msgpack.encode((self.term, self.voted_for)))
        return self._log.last_lsn

    def install(self, meta: SnapshotMeta, lsn: int) -> None:
        """Replace every entry by the two a received snapshot ends with (written at ``lsn``);
        pysyncobj's clear and two adds that follow change nothing."""
        self._entries = _base(meta)
        self._lsns = {meta.index: lsn}
        self.snapshot_index, self.snapshot_lsn = meta.index, lsn
        self.snapshot_members, self.snapshot_term = dict(meta.members), meta.term
        self._installing = 3


def _base(meta: SnapshotMeta) -> list[_Entry]:
    return [(_PLACEHOLDER, meta.index - 1, meta.prev_term), (meta.command, meta.index, meta.term)]


def _never_serialize(_path: str, _data: Any) -> None:
    raise RuntimeError("pysyncobj's own serialization is off: Raft snapshots are the Compactor's")


class CompactingNode(RaftNode):
    """`RaftNode` whose journal is compacted by a `Compactor`: it starts at the snapshot's index,
    sends the newest snapshot to a member that needs it, installs one it receives, and knows how
    far its log is known to match the leader's."""

    def __init__(
        self, config: ClusterConfig, journal: CompactingJournal, compactor: Compactor, **kwargs: Any
    ) -> None:
        self._compactor = compactor
        #: (term, index): in ``term``, this member's log was found to match the leader's up to index.
        self._matched = (0, 0)
        super().__init__(config, journal, **kwargs)
        for name in ("raftLastApplied", "needLoadDumpFile", "serializer", "otherNodes", "selfNode"):
            if not hasattr(self, "_SyncObj__" + name):
                raise RuntimeError(
                    f"this pysyncobj has no SyncObj.__{name}: install the version spitfire pins"
                )
        self._seed_membership()
        if journal.snapshot_index:
            self._SyncObj__raftLastApplied = journal.snapshot_index
            self._SyncObj__raftCommitIndex = max(self._SyncObj__raftCommitIndex, journal.snapshot_index)
        # pysyncobj's transfer over our files: it sends the file, we write and read snapshots.
        self._SyncObj__needLoadDumpFile = False
        self._SyncObj__serializer = Serializer(
            str(compactor.transfer_path), TRANSFER_CHUNK, False, _never_serialize, self._install, None
        )
        compactor.attach(self)

    def _seed_membership(self) -> None:
        """Start the membership from the snapshot's configuration (its entries are compacted)."""
        journal = self._compactor.journal
        if journal.snapshot_members is not None:
            self.members_sync.membership.seed(
                journal.snapshot_members, journal.snapshot_index, journal.snapshot_term
            )
            self.members_sync.sync(force=True)

    @property
    def safe_index(self) -> int:
        """Highest index known committed and held here as the leader holds it."""
        if self.role is Role.LEADER:
            return self.commit_index
        term, index = self._matched
        return min(self.commit_index, index) if term == self.term else 0

    def _outgoing(self, node: Any, message: Any) -> bool:
        if message.get("type") == "next_node_idx" and message.get("success"):
            # A follower answers success once its log matches the leader's up to this index.
            self._matched = (self.term, int(message["next_node_idx"]) - 1)
        return super()._outgoing(node, message)

    def _tick(self) -> None:
        super()._tick()
        if not self._closed and self._journal.failure is None:
            try:
                self._compactor.tick()
            except Exception:  # the node must keep ticking: a snapshot is retried later
                log.exception("raft compaction tick failed")

    def learn_addresses(self) -> None:
        self.addresses.update(self._compactor.state.addresses)
        super().learn_addresses()

    def _install(self, path: str) -> tuple[_Entry, _Entry, Any]:
        """pysyncobj's deserializer: a snapshot arrived whole at ``path``."""
        first, last = self._compactor.install(Path(path))
        self._seed_membership()
        # Writing it may have taken longer than an election timeout: the leader was just heard.
        low, high = self.config.election_timeout
        self._SyncObj__raftElectionDeadline = time.monotonic() + low + (high - low) * random.random()
        return last, first, self._SyncObj__otherNodes | {self._SyncObj__selfNode}


class Compactor:
    """Applies committed entries to the state, writes Raft snapshots, compacts, installs."""

    def __init__(
        self,
        journal: CompactingJournal,
        data_dir: Path,
        *,
        every: int,
        max_bytes: int = SNAPSHOT_BYTES,
    ) -> None:
        self.journal = journal
        self.state = journal.restored or ReplicatedState()
        journal.restored = None
        self.every = every
        self.max_bytes = max_bytes
        self.snapshots_dir = data_dir / "meta" / JOURNAL_LOG / "snapshots"
        self.transfer_path = data_dir / "meta" / TRANSFER_FILE
        self.node: CompactingNode | None = None
        self._task: asyncio.Task[None] | None = None
        #: Raft snapshots written and installed since the start (for logs and tests).
        self.written = 0
        self.installed = 0
        if journal.snapshot_lsn:
            self._link(journal.snapshot_lsn)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.transfer_path)

    def attach(self, node: CompactingNode) -> None:
        self.node = node

    # -- applying -------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Apply what became safe (a bounded time), and start a snapshot when one is due."""
        self.advance(time.perf_counter() + APPLY_BUDGET)
        if self._task is None and self._due():
            self._task = asyncio.get_running_loop().create_task(self._snapshot())
            self._task.add_done_callback(self._snapshot_done)

    def advance(self, deadline: float | None = None) -> None:
        """Apply the entries known committed (until ``deadline``, ``time.perf_counter()``)."""
        node = self.node
        if node is None:
            return
        safe = node.safe_index
        state, journal = self.state, self.journal
        while state.index < safe:
            entry = journal.entry(state.index + 1)
            if entry is None:  # not held (below a snapshot being installed): nothing to apply
                return
            command, index, _term = entry
            try:
                state.apply(index, command)
            except Exception:  # msgspec's or pickle's: the leader's engine could not read it either
                state.index = index
                log.critical("committed raft entry %d is not a batch this build reads: skipped", index)
            if deadline is not None and time.perf_counter() >= deadline:
                return

    def recovered(self) -> dict[str, Recovery]:
        """Every log as of the commit index: what a new leader's engine opens over."""
        self.advance()
        return self.state.recovered()

    # -- writing snapshots ------------------------------------------------------------------------------

    def _due(self) -> bool:
        state = self.state
        if state.index < self.journal.snapshot_index + 2:
            return False
        return bool(self.every and state.records_since >= self.every) or state.bytes_since >= self.max_bytes

    async def _snapshot(self) -> None:
        await self.snapshot()

    def _snapshot_done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("writing a raft snapshot failed: %s", task.exception())

    async def snapshot(self) -> int:
        """Write the state at its index as a Raft snapshot, then compact; returns the index (0 when
        there was nothing new to cover)."""
        node, journal, state = self.node, self.journal, self.state
        assert node is not None
        index = state.index
        entry, before, lsn = journal.entry(index), journal.entry(index - 1), journal.lsn_of(index)
        if index <= journal.snapshot_index or entry is None or before is None or lsn is None:
            return 0
        started = time.perf_counter()
        logs = state.capture()
        captured = time.perf_counter() - started
        state.records_since = state.bytes_since = 0
        meta = SnapshotMeta(
            RAFT_SNAPSHOT_VERSION,
            index,
            entry[2],
            before[2],
            entry[0],
            journal.term,
            journal.voted_for,
            sorted(node.members_at(index).items()),
            list(state.addresses.values()),
            len(logs),
        )
        writer = journal.log.snapshot(lsn)
        try:
            longest = await encode_raft_snapshot(meta, logs, writer.add)
            await writer.finish()
        except BaseException:
            writer.abort()
            raise
        if self.state is state and index > journal.snapshot_index:  # no snapshot installed meanwhile
            journal.compact(index, lsn)
            self._link(lsn)
        self.written += 1
        log.info(
            "raft snapshot at index %d (%d logs, %d records) written in %.3f s (loop held at most "
            "%.1f ms: copy %.1f ms, longest encoding step %.1f ms); the journal holds %d entries",
            index,
            len(logs),
            sum(len(item[3]) for item in logs),
            time.perf_counter() - started,
            max(captured, longest) * 1000,
            captured * 1000,
            longest * 1000,
            len(journal),
        )
        return index

    def _link(self, lsn: int) -> None:
        """Point the transfer file at the snapshot at ``lsn`` (what a lagging member is sent)."""
        source = self.snapshots_dir / SNAPSHOT_NAME.format(lsn)
        tmp = self.transfer_path.with_name(self.transfer_path.name + ".link")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(source, tmp)
            os.replace(tmp, self.transfer_path)
        except OSError as exc:  # only a lagging member's catch-up needs it: it is retried then
            log.error("cannot link %s to %s: %s", self.transfer_path, source, exc)

    # -- installing a snapshot received from the leader -------------------------------------------------

    def install(self, path: Path) -> tuple[_Entry, _Entry]:
        """Make the snapshot that arrived at ``path`` this member's own: check it, write it durably
        as the journal's snapshot (with this member's term and vote), start the journal and the
        state from it. Returns the two entries it ends with.

        :raises StorageError: the file is damaged or cannot be written (pysyncobj logs it and the
            leader sends it again).
        """
        started = time.perf_counter()
        with open(path, "rb") as f:
            head = f.read(RECORD_HEADER_SIZE + SNAPSHOT_HEADER.size)
        if len(head) < RECORD_HEADER_SIZE + SNAPSHOT_HEADER.size:
            raise StorageError(f"the snapshot received at {path} is truncated")
        sent_lsn = SNAPSHOT_HEADER.unpack_from(head, RECORD_HEADER_SIZE)[2]
        try:
            chunks = read_snapshot(path, sent_lsn)
        except Exception as exc:  # SnapshotError, UnsupportedFormatError
            raise StorageError(f"the snapshot received at {path} is not valid: {exc}") from None
        meta, state = decode_raft_snapshot(chunks)
        journal = self.journal
        own = msgspec.structs.replace(meta, current_term=journal.term, voted_for=journal.voted_for)
        lsn = journal.mark()  # the snapshot replaces every record so far
        target = self.snapshots_dir / SNAPSHOT_NAME.format(lsn)
        try:
            write_snapshot_file(target, lsn, [msgspec.msgpack.encode(own), *chunks[1:]])
        except OSError as exc:
            raise StorageError(f"cannot write the received snapshot to {target}: {exc}") from None
        journal.install(meta, lsn)
        self.state = state
        self._link(lsn)
        self.installed += 1
        log.info(
            "installed the leader's raft snapshot at index %d (%d logs, %d bytes) in %.3f s",
            meta.index,
            len(state.logs),
            sum(len(c) for c in chunks),
            time.perf_counter() - started,
        )
        first, last = _base(meta)
        return first, last
