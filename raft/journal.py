"""The Raft journal of a cluster member, kept in our WAL: entries, term and vote survive a crash.

pysyncobj's own file journal appends entries to an mmap it never fsyncs and keeps the vote in
memory only, which breaks Raft after a power loss or a crash at the wrong moment (a node that forgot
its vote can vote twice in one term). `DurableJournal` implements pysyncobj's `Journal` interface
over one system log of our WAL (``<data-dir>/meta/raft/``, the segments, CRCs, torn-tail handling
and group commit of every queue's log), and records term and vote there too. It only *appends*:
durability is awaited by the node (`spitfire.raft.node`), which holds every outgoing Raft message
until the WAL's group commit covers what the journal appended before it. One fdatasync per commit
group covers the entries, the term and the vote together.

Records of ``meta/raft`` (wal/FORMAT.md, "Raft journal"): ENTRY ``[index, term, command]``,
TRUNCATE ``[index]`` (entries from ``index`` on are gone) and TERM ``[term, voted_for]``. Replaying
them in LSN order gives back the journal exactly as pysyncobj last saw it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Any

import msgspec
from pysyncobj.journal import Journal  # type: ignore[import-untyped]

from spitfire.wal.api import CorruptLogError, QueueLog, Recovery, StorageError

__all__ = ["JOURNAL_LOG", "DurableJournal", "JournalRecord"]

#: The system log (``<data-dir>/meta/<name>/``) that holds the Raft journal.
JOURNAL_LOG = "raft"


class JournalRecord(enum.IntEnum):
    """Record types of the ``meta/raft`` log (never used by queue logs)."""

    #: ``[index, term, command(bin)]``: one Raft entry appended.
    ENTRY = 240
    #: ``[index]``: entries with this index and above were removed (a new leader overwrote them).
    TRUNCATE = 241
    #: ``[term, voted_for(str/nil)]``: the current term and the vote cast in it.
    TERM = 242


_Entry = tuple[int, int, bytes]
_encode = msgspec.msgpack.encode
_entry_decoder = msgspec.msgpack.Decoder(tuple[int, int, bytes])
_truncate_decoder = msgspec.msgpack.Decoder(tuple[int])
_term_decoder = msgspec.msgpack.Decoder(tuple[int, str | None])


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve a commit's outcome: a failure reaches the journal through the log's listener."""
    if not future.cancelled():
        future.exception()


class DurableJournal(Journal):  # type: ignore[misc]
    """pysyncobj's `Journal` over a WAL log. Entries are ``(command, index, term)`` tuples, as
    pysyncobj stores them; positions (``__getitem__``, ``deleteEntriesFrom``) count from the first
    entry held, as in pysyncobj's own journals.

    Not thread-safe: the node calls it from the event loop only.
    """

    def __init__(self, log: QueueLog, recovery: Recovery) -> None:
        self._log = log
        self._entries: list[tuple[bytes, int, int]] = []
        #: The term and vote last recorded (what a restart starts from).
        self.term = 0
        self.voted_for: str | None = None
        for record in recovery.records:
            self._replay(record.lsn, record.rtype, record.body, recovery)
        #: Highest LSN of the log known durable: everything recovery returned is on disk.
        self.durable_lsn = log.last_lsn
        self.failure: StorageError | None = None
        self._on_durable: Callable[[int], None] | None = None
        self._on_failed: Callable[[StorageError], None] | None = None
        log.set_listener(self._durable, self._failed)

    # -- recovery ---------------------------------------------------------------------------------------

    def _replay(self, lsn: int, rtype: int, body: bytes, recovery: Recovery) -> None:
        try:
            if rtype == JournalRecord.ENTRY:
                index, term, command = _entry_decoder.decode(body)
                if self._entries and index != self._entries[-1][1] + 1:
                    raise ValueError(f"entry {index} follows entry {self._entries[-1][1]}")
                self._entries.append((command, index, term))
            elif rtype == JournalRecord.TRUNCATE:
                (index,) = _truncate_decoder.decode(body)
                self._cut(index)
            elif rtype == JournalRecord.TERM:
                self.term, self.voted_for = _term_decoder.decode(body)
            else:
                raise ValueError(f"unknown record type {rtype}")
        except (msgspec.DecodeError, ValueError) as exc:
            where = recovery.locate(lsn) or (f"meta/{JOURNAL_LOG}", 0)
            raise CorruptLogError(
                where[0],
                where[1],
                f"Raft journal record LSN {lsn} (type {rtype}) has a valid checksum but cannot be "
                f"replayed ({exc})",
                hint="This node's Raft journal is damaged: stop it, move its data directory away and "
                "start it empty; it then copies the log from the leader",
            ) from None

    def _cut(self, index: int) -> None:
        while self._entries and self._entries[-1][1] >= index:
            self._entries.pop()

    # -- durability -------------------------------------------------------------------------------------

    def set_listener(
        self, on_durable: Callable[[int], None], on_failed: Callable[[StorageError], None]
    ) -> None:
        """Be told when the log becomes durable up to an LSN, and once if it fails (fail-stop)."""
        self._on_durable = on_durable
        self._on_failed = on_failed

    def _durable(self, lsn: int) -> None:
        if lsn > self.durable_lsn:
            self.durable_lsn = lsn
            if self._on_durable is not None:
                self._on_durable(lsn)

    def _failed(self, error: StorageError) -> None:
        if self.failure is None:
            self.failure = error
            if self._on_failed is not None:
                self._on_failed(error)

    @property
    def last_lsn(self) -> int:
        """LSN of the newest record appended to the log (durable or not)."""
        return self._log.last_lsn

    @property
    def pending(self) -> bool:
        """Whether records were appended that are not durable yet."""
        return self._log.last_lsn > self.durable_lsn

    async def flush(self) -> None:
        """Wait until everything appended so far is durable (shutdown)."""
        await self._log.flush()

    def record_term(self, term: int, voted_for: str | None) -> None:
        """Append the current term and vote when they changed (pysyncobj calls `setCurrentTerm` on
        each change, and the node checks again before any message leaves)."""
        if (term, voted_for) == (self.term, self.voted_for):
            return
        self._append(JournalRecord.TERM, _encode((term, voted_for)))
        self.term, self.voted_for = term, voted_for

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        self.record_term(term, votedForNodeId)

    def getCurrentTerm(self) -> int:
        return self.term

    def getVotedForNodeId(self) -> str | None:
        return self.voted_for

    # -- pysyncobj's Journal ----------------------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        entries = self._entries
        if entries and idx <= entries[-1][1]:
            pos = idx - entries[0][1]
            if pos >= 0 and entries[pos][2] == term:
                return  # already held (same index and term: the same entry, Raft's log matching)
            # A conflict: this entry and every later one are replaced, durably.
            self._append(JournalRecord.TRUNCATE, _encode((idx,)))
            del entries[max(pos, 0) :]
        command = bytes(command)
        self._append(JournalRecord.ENTRY, _encode((idx, term, command)))
        entries.append((command, idx, term))

    def _append(self, rtype: int, body: bytes) -> None:
        """Append, or fail-stop: pysyncobj cannot be told that an entry was not written (a full
        disk), so a member that cannot append stops rather than lose an entry it counted."""
        try:
            lsn = self._log.append(rtype, body, reserved=rtype != JournalRecord.ENTRY)
        except StorageError as exc:
            self._failed(exc)
            raise
        # Ask for durability (the WAL's group commit shares one fdatasync among every record of
        # the loop pass); the listener hears when it is done, failures included.
        future = self._log.commit(lsn)
        if future is not None and not future.done():
            future.add_done_callback(_consume)

    def clear(self) -> None:
        # Only pysyncobj's snapshot installation calls this (`CompactingJournal` handles it).
        if self._entries:
            self._append(JournalRecord.TRUNCATE, _encode((self._entries[0][1],)))
            self._entries.clear()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        # pysyncobj calls this on every append_entries whose previous entry matches, before adding
        # the entries it carries, even when they are the ones already held (a heartbeat with a stale
        # previous index drops the entries after it). Dropping entries this member acknowledged
        # would let a committed entry fall below a majority. Raft removes entries only when a new
        # one conflicts with them: `add` does exactly that; entries no new entry contradicts stay.
        pass

    def deleteEntriesTo(self, entryTo: int) -> None:
        # Only pysyncobj's own log compaction calls this, and it is off: `CompactingJournal.compact`
        # drops entries once a Raft snapshot covers them.
        raise NotImplementedError("the Raft journal is not compacted by pysyncobj (its compaction is off)")

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        pass  # the WAL log is closed with its storage

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        # Not persisted: a restarted node learns the commit index from the leader again, and an
        # index remembered too low only delays applying, never breaks safety.
        pass

    def getRaftCommitIndex(self) -> int:
        return 1

    def onOneSecondTimer(self) -> None:
        pass

    # -- for the node -----------------------------------------------------------------------------------

    def entries(self, upto: int) -> list[tuple[bytes, int, int]]:
        """The entries with index <= ``upto``, oldest first."""
        return [e for e in self._entries if e[1] <= upto]

    @property
    def last_index(self) -> int:
        """Index of the newest entry (0 when empty)."""
        return self._entries[-1][1] if self._entries else 0
