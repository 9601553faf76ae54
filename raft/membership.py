"""Cluster membership: which members vote, changed one member at a time through the Raft log.

A *configuration* is the set of voting members, ``{id: raft address}``. The first one is
``--cluster``; every change after it is a Raft entry of its own (a *configuration entry*: its
pysyncobj command is the byte `CONFIG_COMMAND` then the msgpack `Configuration`, wal/FORMAT.md "Raft
journal"), holding the whole new configuration. As Raft's single-server changes require:

- a member uses the newest configuration its log holds, committed or not (`Membership`), so a
  follower switches when the entry arrives and switches back if a new leader's entry replaces it;
- a leader proposes a change only once it has committed an entry of its own term, and only while
  no other change is uncommitted (`check_change`, `Membership.pending`): two configurations that
  differ by one member always share a majority, so no two leaders can be elected in one term;
- the configuration lives in the Raft journal, in the data directory: after a change it wins over
  ``--cluster`` when a member restarts.

`MemberSync` applies the configuration to pysyncobj (its voters, replication indexes and
connections), keeps a member that is not (yet) in its own configuration from standing for election
(a removed member, or a new one started with ``--join`` before its log holds the change that adds
it), and tells its owner when this member, leading, was removed and the removal committed (it then
steps down). pysyncobj's own membership commands (``dynamicMembershipChange``) stay off: they are
pickles of its node objects, reachable over the unauthenticated Raft port by its admin tool, and
they would be undone by its own journal-truncation path, which our journal does not follow.
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from pysyncobj.config import FAIL_REASON  # type: ignore[import-untyped]
from pysyncobj.node import TCPNode  # type: ignore[import-untyped]

__all__ = [
    "CONFIG_COMMAND",
    "Configuration",
    "Done",
    "Entries",
    "MemberSync",
    "Membership",
    "MembershipError",
    "check_address",
    "check_change",
    "decode_configuration",
    "encode_configuration",
]

log = logging.getLogger("spitfire.raft.membership")

#: First byte of a configuration entry's command (pysyncobj's own types are 0-3 and it applies
#: unknown ones as no-ops; 245 is the number reserved for membership, which no WAL record uses).
CONFIG_COMMAND = 245
_CONFIG_BYTE = bytes([CONFIG_COMMAND])
#: A member id that ``cluster add`` accepts.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: How many configuration entries are remembered (older ones are only needed to undo a change
#: replaced by a new leader, and at most one change is uncommitted at a time).
_KEEP = 8
#: Election timeouts (upper bound) for which a removed member that still answers is sent entries
#: after its removal committed, until it holds the entry that removed it.
PARTING_TIMEOUTS = 4


class Configuration(msgspec.Struct, array_like=True, frozen=True):
    """What a configuration entry holds: the whole new configuration and the change that made it."""

    #: Every voting member: id -> ``host:port`` of its Raft port.
    members: dict[str, str]
    #: ``add`` or ``remove``.
    op: str = ""
    #: The member added or removed.
    node: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Configuration)


def encode_configuration(config: Configuration) -> bytes:
    """The command bytes of a configuration entry (without pysyncobj's type byte: it adds it)."""
    return _encoder.encode(config)


def decode_configuration(command: bytes) -> Configuration | None:
    """The configuration a journal command holds, or None when it is not a configuration entry.

    :raises msgspec.DecodeError: it is one, but not one this build reads.
    """
    if command[:1] != _CONFIG_BYTE:
        return None
    return _decoder.decode(command[1:])


class MembershipError(Exception):
    """A membership change refused, and nothing changed. ``code`` is the HTTP API's error code
    (``INVALID_ARGUMENT``, ``NOT_FOUND``, ``CONFLICT``, ``NOT_LEADER``); ``field`` the field at
    fault, if one is."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def check_address(text: str, field: str = "raft") -> str:
    """``host:port`` of a Raft port, as given.

    :raises MembershipError: INVALID_ARGUMENT naming ``field`` when it is not ``HOST:PORT``.
    """
    host, colon, port = text.rpartition(":")
    if (
        not colon
        or not host
        or len(text) > 255
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() or c in ",=/" for c in host)
    ):
        raise MembershipError(
            "INVALID_ARGUMENT", f"{field}: {text[:80]!r} is not HOST:PORT (e.g. 127.0.0.1:7904)", field
        )
    return text


def check_change(members: dict[str, str], op: str, node: str, raft: str | None) -> Configuration:
    """The configuration after adding or removing one member of ``members``.

    :raises MembershipError: INVALID_ARGUMENT (op, id or raft malformed), CONFLICT (the id or
        the address is already a member's, or removing the only member), NOT_FOUND (removing an
        id that is not a member).
    """
    if op not in ("add", "remove"):
        raise MembershipError("INVALID_ARGUMENT", f"op: {op[:40]!r} is neither 'add' nor 'remove'", "op")
    if not _ID.fullmatch(node):
        raise MembershipError(
            "INVALID_ARGUMENT",
            f"id: {node[:80]!r} is not a member id (1 to 64 of A-Z a-z 0-9 _ . -, the first a letter "
            "or a digit)",
            "id",
        )
    if op == "add":
        if raft is None:
            raise MembershipError("INVALID_ARGUMENT", "raft: adding a member needs its Raft address", "raft")
        address = check_address(raft)
        if node in members:
            raise MembershipError("CONFLICT", f"id: {node!r} is already a member (at {members[node]})", "id")
        for other, at in members.items():
            if at == address:
                raise MembershipError(
                    "CONFLICT", f"raft: {address} is already member {other!r}'s address", "raft"
                )
        return Configuration({**members, node: address}, op, node)
    if node not in members:
        raise MembershipError(
            "NOT_FOUND", f"id: {node!r} is not a member (members: {', '.join(sorted(members))})", "id"
        )
    if raft is not None and raft != members[node]:
        raise MembershipError(
            "INVALID_ARGUMENT", f"raft: member {node!r} is at {members[node]}, not {raft[:80]!r}", "raft"
        )
    if len(members) == 1:
        raise MembershipError(
            "CONFLICT", f"id: {node!r} is the only member; a cluster keeps at least one", "id"
        )
    return Configuration({k: v for k, v in members.items() if k != node}, op, node)


class Entries(Protocol):
    """What `Membership` reads of the journal: ``(command, index, term)`` by position from the first
    entry held (`spitfire.raft.DurableJournal`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, position: int) -> tuple[bytes, int, int]: ...


class Membership:
    """The configuration a member's journal holds: the newest configuration entry, else the initial
    one. `refresh` follows the journal as entries arrive and as a new leader replaces some."""

    def __init__(self, initial: dict[str, str]) -> None:
        self.initial = dict(initial)
        #: ``(index, term, configuration)`` of the newest configuration entries held, oldest first.
        self._configs: list[tuple[int, int, Configuration]] = []
        #: ``(first index, term)`` of each run of entries of one term seen so far, oldest first: an
        #: entry the journal holds with the index and term seen before is the same entry, and so is
        #: every entry before it (Raft's log matching), which finds what a new leader replaced.
        self._runs: list[tuple[int, int]] = []
        self._scanned = 0
        self._scanned_term = -1

    @property
    def current(self) -> dict[str, str]:
        """Every voting member now: id -> Raft address."""
        return self._configs[-1][2].members if self._configs else self.initial

    @property
    def index(self) -> int:
        """Index of the entry that made the current configuration (0: the initial one)."""
        return self._configs[-1][0] if self._configs else 0

    @property
    def latest(self) -> Configuration | None:
        """The newest configuration entry held (None: the initial configuration is current)."""
        return self._configs[-1][2] if self._configs else None

    def pending(self, commit_index: int) -> bool:
        """Whether the current configuration is not committed yet."""
        return self.index > commit_index

    def at(self, index: int) -> dict[str, str]:
        """The configuration as of entry ``index`` (what a snapshot up to it must keep)."""
        for at, _term, config in reversed(self._configs):
            if at <= index:
                return config.members
        return self.initial

    def seed(self, members: dict[str, str], index: int, term: int) -> None:
        """Start from ``members`` as of entry ``index`` (a snapshot installed up to it)."""
        self._configs = [(index, term, Configuration(dict(members)))]
        self._runs = [(index, term)]
        self._scanned, self._scanned_term = index, term

    def refresh(self, journal: Entries) -> bool:
        """Follow the journal; True when the current configuration changed."""
        count = len(journal)
        if count == 0:
            return False
        first = journal[0][1]
        _, last, last_term = journal[-1]
        if last == self._scanned and last_term == self._scanned_term:
            return False  # nothing appended or replaced (the same last entry: the same log)
        before = self._configs[-1] if self._configs else None
        position = self._scanned - first
        if self._scanned >= first and (position >= count or journal[position][2] != self._scanned_term):
            self._rewind(journal, first, count)
        runs = self._runs
        for position in range(max(self._scanned + 1 - first, 0), count):
            command, index, term = journal[position]
            if not runs or runs[-1][1] != term:
                runs.append((index, term))
            if command[:1] != _CONFIG_BYTE:
                continue
            try:
                config = _decoder.decode(command[1:])
            except msgspec.DecodeError:
                log.error("the configuration entry at index %d is not one this build reads; ignored", index)
                continue
            self._configs.append((index, term, config))
            del self._configs[:-_KEEP]
        while len(runs) > 1 and runs[1][0] <= first:  # runs wholly before the journal's first entry
            del runs[0]
        self._scanned, self._scanned_term = last, last_term
        return (self._configs[-1] if self._configs else None) != before

    def _rewind(self, journal: Entries, first: int, count: int) -> None:
        """Entries seen before were replaced: forget everything seen from the first replaced one
        (a binary search: "held as seen" is true up to it and false from it on)."""
        runs = self._runs
        starts = [start for start, _ in runs]

        def as_seen(position: int) -> bool:
            _, index, term = journal[position]
            if index > self._scanned:
                return False
            run = bisect.bisect_right(starts, index) - 1
            return run < 0 or runs[run][1] == term  # before every run: compacted, committed

        low, high = 0, count
        while low < high:
            middle = (low + high) // 2
            if as_seen(middle):
                low = middle + 1
            else:
                high = middle
        cut = journal[low][1] if low < count else journal[-1][1] + 1
        while self._configs and self._configs[-1][0] >= cut:
            self._configs.pop()
        while runs and runs[-1][0] >= cut:
            runs.pop()
        self._scanned = cut - 1


#: pysyncobj's private attributes `MemberSync` reads and changes (pinned version).
_STATE = (
    "otherNodes",
    "raftNextIndex",
    "raftMatchIndex",
    "lastResponseTime",
    "transport",
    "raftElectionDeadline",
    "raftCommitIndex",
    "raftLeader",
    "selfNode",
)

#: Called once a proposed change is committed (True, None) or failed (False, why).
Done = Callable[[bool, str | None], None]


class MemberSync:
    """Applies a `spitfire.raft.RaftNode`'s `Membership` to pysyncobj, on the loop, after every
    event and tick, and proposes changes.

    ``on_removed`` is called once when this member leads, the current configuration does not
    include it, and that configuration is committed: it must step down.
    """

    def __init__(self, node: Any, node_id: str, journal: Entries, *, join: bool, max_timeout: float) -> None:
        for name in _STATE:
            if not hasattr(node, "_SyncObj__" + name):
                raise RuntimeError(
                    f"this pysyncobj has no SyncObj.__{name}: install the version spitfire pins"
                )
        self._node = node
        self._id = node_id
        self._journal = journal
        self._join = join
        self._max_timeout = max_timeout
        self.membership = Membership(dict(node.config.members))
        self.on_removed: Callable[[], None] | None = None
        self._removed_told = False
        self._in_flight = False
        self._leader: Any = None
        self._parting = False
        self._committed = True
        #: Until when a removed member is still sent the entries (`_departed_behind`).
        self._parting_until = 0.0
        #: Addresses pysyncobj's transport holds a connection slot for (it starts with --cluster's).
        self._linked: set[str] = set(node._SyncObj__transport._nodeAddrToNode)
        self.sync(force=True)

    @property
    def members(self) -> dict[str, str]:
        """Every voting member now: id -> Raft address."""
        return self.membership.current

    @property
    def voter(self) -> bool:
        """Whether this member may stand for election: it is in its configuration and, started with
        ``--join``, its log holds a configuration entry (the one that added it, or a later one)."""
        return self._id in self.membership.current and not (self._join and self.membership.index == 0)

    def pending(self) -> bool:
        """Whether a change is proposed or not committed yet."""
        return self._in_flight or self.membership.pending(int(self._node._SyncObj__raftCommitIndex))

    def change(self, op: str, node: str, raft: str | None, done: Done) -> Configuration:
        """Propose adding or removing one member (on the leader); ``done`` hears once the entry is
        committed, or that it failed. Returns the configuration proposed.

        :raises MembershipError: NOT_LEADER (this member does not lead, or has not committed an
            entry of its term yet), CONFLICT (another change is not committed yet), and what
            `check_change` raises. Nothing is proposed then.
        """
        raft_node = self._node
        if not raft_node.leader_ready:
            raise MembershipError("NOT_LEADER", "this member does not lead (or has only just been elected)")
        if self.pending():
            raise MembershipError(
                "CONFLICT",
                f"a membership change (entry {self.membership.index}) is not committed yet: one change "
                "at a time; retry once GET /api/cluster shows it committed",
            )
        config = check_change(self.membership.current, op, node, raft)

        def committed(_result: Any, error: int) -> None:
            self._in_flight = False
            if error == FAIL_REASON.SUCCESS:
                done(True, None)
            else:
                done(False, _FAILURES.get(error, f"pysyncobj error {error}"))

        self._in_flight = True
        raft_node._applyCommand(encode_configuration(config), committed, CONFIG_COMMAND)
        return config

    def before_tick(self) -> None:
        """Keep a member that may not stand for election from timing out into a candidate."""
        if not self.voter:
            self._node._SyncObj__raftElectionDeadline = time.monotonic() + self._max_timeout

    def sync(self, force: bool = False) -> None:
        """Bring pysyncobj in line with the configuration (cheap when nothing changed)."""
        node = self._node
        changed = self.membership.refresh(self._journal)
        leader = node._SyncObj__raftLeader
        # While the leader's newest configuration is not committed, it keeps its connections to the
        # members that configuration removed: the entry that tells them is still on its way (every
        # message waits for the leader's fdatasync), and a member that learns of its removal never
        # stands for election (one that does not would, with a higher term, on every timeout).
        # After the commit too, for a while, as long as a removed member lacks the entry: a removal
        # commits on the remaining members alone, often before the removed one has it.
        if changed:
            self._parting_until = time.monotonic() + PARTING_TIMEOUTS * self._max_timeout
        committed = self.membership.index <= node._SyncObj__raftCommitIndex
        parting = node._isLeader() and (not committed or bool(self._told()))
        state = (leader, parting, committed)
        if changed or force or state != (self._leader, self._parting, self._committed):
            self._leader, self._parting, self._committed = state
            self._apply(changed)
        self._check_removed()

    def _departed(self) -> set[str]:
        """Raft addresses the newest configuration removed (the one before it named them)."""
        current = set(self.membership.current.values())
        previous = self.membership.at(self.membership.index - 1)
        return {address for address in previous.values() if address not in current}

    def _told(self) -> set[str]:
        """The members the newest configuration removed that are still sent entries once it is
        committed: those that answered within the election timeout and do not hold that entry yet,
        for a few election timeouts at most (a removal commits on the remaining members alone, often
        before the removed one has it; one that is down is not waited for)."""
        now = time.monotonic()
        if now >= self._parting_until:
            return set()
        node = self._node
        match_index: dict[Any, int] = node._SyncObj__raftMatchIndex
        responses: dict[Any, float] = node._SyncObj__lastResponseTime
        index = self.membership.index
        return {
            address
            for address in self._departed()
            if match_index.get(TCPNode(address), 0) < index
            and now - responses.get(TCPNode(address), 0.0) < self._max_timeout
        }

    def _apply(self, changed: bool) -> None:
        node = self._node
        members = self.membership.current
        if changed:
            log.info(
                "raft: %s takes the configuration of entry %d: %s",
                self._id,
                self.membership.index,
                ", ".join(f"{k}={v}" for k, v in members.items()),
            )
        for member, address in members.items():
            node._by_address[address] = member
        me = node._SyncObj__selfNode.address
        voters = {address for member, address in members.items() if member != self._id and address != me}
        # Connections: to the voters, and to the leader even when the configuration no longer names
        # it (a removed leader replicates until its removal commits; then it steps down).
        linked = set(voters)
        if self._leader is not None and self._leader.address != me:
            linked.add(self._leader.address)
        if self._parting:
            previous = self.membership.at(self.membership.index - 1)
            linked |= {address for address in previous.values() if address != me}
        # Replicated to: the voters, and once a removal is committed the removed members that still
        # answer and lack it, so that it reaches them (counting them in a majority meanwhile is safe:
        # any majority of old and new members holds a majority of the new ones; they answer, so it
        # does not stall either).
        told = self._told() - {me} if self._parting and self._committed else set()
        self._replicate_to(voters | told)
        transport = node._SyncObj__transport
        next_index: dict[Any, int] = node._SyncObj__raftNextIndex
        match_index: dict[Any, int] = node._SyncObj__raftMatchIndex
        for address in sorted(self._linked - linked):
            peer = TCPNode(address)
            transport.dropNode(peer)
            next_index.pop(peer, None)
            match_index.pop(peer, None)
        for address in sorted(linked - self._linked):
            if address not in transport._nodeAddrToNode:
                transport.addNode(TCPNode(address))
        self._linked = linked

    def _replicate_to(self, replicated: set[str]) -> None:
        """Make pysyncobj's replication targets (its other nodes) exactly ``replicated``."""
        node = self._node
        others: set[Any] = node._SyncObj__otherNodes
        next_index: dict[Any, int] = node._SyncObj__raftNextIndex
        match_index: dict[Any, int] = node._SyncObj__raftMatchIndex
        responses: dict[Any, float] = node._SyncObj__lastResponseTime
        last = self._journal[-1][1] if len(self._journal) else 0
        for peer in list(others):
            if peer.address not in replicated:  # its indexes stay while it is linked (it may answer)
                others.discard(peer)
        for address in sorted(replicated):
            peer = TCPNode(address)
            if peer not in others:  # as pysyncobj adds a member: replicated from the end, backwards
                others.add(peer)
                if peer not in next_index:  # (a removed member being told keeps its indexes)
                    next_index[peer] = last + 1
                    match_index[peer] = 0
                if node._isLeader():
                    responses[peer] = time.monotonic()

    def _check_removed(self) -> None:
        node = self._node
        if (
            not self._removed_told
            and self._id not in self.membership.current
            and node._isLeader()
            and not self.membership.pending(int(node._SyncObj__raftCommitIndex))
        ):
            self._removed_told = True
            log.warning(
                "raft: %s was removed from the cluster and the removal is committed: it steps down", self._id
            )
            if self.on_removed is not None:
                self.on_removed()


_FAILURES = {
    FAIL_REASON.QUEUE_FULL: "pysyncobj's command queue is full",
    FAIL_REASON.MISSING_LEADER: "no leader",
    FAIL_REASON.DISCARDED: "discarded by a new leader",
    FAIL_REASON.NOT_LEADER: "this member no longer leads",
    FAIL_REASON.LEADER_CHANGED: "the leader changed",
    FAIL_REASON.REQUEST_DENIED: "denied",
}
