"""One cluster member's Raft node: pysyncobj, driven by our event loop, persisting through our WAL.

pysyncobj runs elections, replication and commit counting. Three things are ours:

- **Durability before anything leaves.** Every message pysyncobj sends goes through
  `RaftNode._outgoing`: it first records a changed term or vote in the journal, then, while the
  journal holds records the WAL has not made durable yet, holds the message (and every later one,
  so order is kept) until the group commit that covers them completes. So a follower acknowledges
  entries, and a node grants a vote, only once they are on disk; and a leader's own copy of an
  entry is durable before any follower can acknowledge it, so the leader counting itself in the
  majority (as pysyncobj does) is safe.
- **The event loop drives it** (``autoTick`` off): pysyncobj's sockets are registered with the
  running loop (`LoopPoller`: ``add_reader``/``add_writer`` instead of its own ``poll`` calls), and
  the node ticks every `TICK` seconds and right after each socket event. No thread: the commit
  callbacks that make the engine apply records run on the loop like everything else.
- **Term and vote survive restarts**: pysyncobj keeps them in memory only; the node restores them
  from the journal when it starts.

pysyncobj keeps its state in private attributes; the node reads and restores a few of them, which
is why the dependency is pinned to one minor version and checked when a node starts.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped]
from pysyncobj.config import FAIL_REASON  # type: ignore[import-untyped]
from pysyncobj.poller import POLL_EVENT_TYPE, Poller  # type: ignore[import-untyped]
from pysyncobj.transport import TCPTransport  # type: ignore[import-untyped]

from spitfire.wal.api import StorageError

from .batch import Batch, LeaderInfo, decode_command, encode_batch
from .journal import DurableJournal
from .membership import MemberSync
from .prevote import Elections
from .readguard import LEASE_FRACTION, STAMP, ReadGuard

__all__ = [
    "DRIVERS",
    "TICK",
    "ClusterConfig",
    "Commit",
    "RaftNode",
    "Role",
    "parse_members",
]

log = logging.getLogger("spitfire.raft")

#: Seconds between two ticks of pysyncobj when no socket event comes (elections, heartbeats).
TICK = 0.01
#: Election timeout range for a LAN, seconds (a follower that heard no leader for a random time in
#: it stands for election).
ELECTION_TIMEOUT = (0.15, 0.3)
#: What may tick pysyncobj (``--raft-driver``): the event loop, or a thread of its own.
DRIVERS = ("loop", "thread")

#: Called once per proposed batch: (True, None) once committed; (False, reason) if it never will be.
Commit = Callable[[bool, str | None], None]


class Role(enum.StrEnum):
    """A member's role as `GET /api/cluster` names it."""

    LEADER = "leader"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    DOWN = "down"
    #: This member only: the configuration it holds no longer includes it.
    REMOVED = "removed"


_ROLES = {0: Role.FOLLOWER, 1: Role.CANDIDATE, 2: Role.LEADER}


class _NoFalseTruncation(logging.Filter):
    """pysyncobj logs "truncating already-applied log entries" (CRITICAL) before it asks the journal
    to drop entries after a matching one; `DurableJournal` drops nothing then (only a conflicting
    entry replaces entries), so the line would report a divergence that does not happen."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("truncating already-applied log entries")


logging.getLogger("pysyncobj.syncobj").addFilter(_NoFalseTruncation())


def parse_members(text: str) -> dict[str, str]:
    """``a=127.0.0.1:7901,b=127.0.0.1:7902,...`` as {id: raft address}.

    :raises ValueError: saying what is wrong (an item without ``=``, a bad port, a repeated id or
        address).
    """
    members: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        node, sep, address = item.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not node or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not ID=HOST:PORT (e.g. a=127.0.0.1:7901)")
        if node in members:
            raise ValueError(f"node id {node!r} is given twice")
        if address in members.values():
            raise ValueError(f"raft address {address} is given twice")
        members[node] = address
    return members


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """This member's id and every member's Raft address (``--node-id``, ``--cluster``)."""

    node_id: str
    #: Every member, this one included: id -> ``host:port`` of its Raft port.
    members: dict[str, str]
    #: Election timeout range, seconds (heartbeats go out at a fifth of the lower bound).
    election_timeout: tuple[float, float] = ELECTION_TIMEOUT
    #: ``--join``: a new member, which stands for election only once its log holds a configuration
    #: entry (the change that adds it), so that starting it cannot disturb the cluster.
    join: bool = False
    #: ``--raft-driver``: what ticks pysyncobj, the event loop (``loop``) or a thread of its own
    #: (``thread``, `spitfire.raft.driver`).
    driver: str = "loop"

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ValueError(f"--raft-driver {self.driver!r}: must be one of {', '.join(DRIVERS)}")
        if self.node_id not in self.members:
            raise ValueError(
                f"--node-id {self.node_id!r} is not in --cluster (members: {', '.join(self.members)})"
            )

    @property
    def raft_address(self) -> str:
        return self.members[self.node_id]


class LoopPoller(Poller):  # type: ignore[misc]
    """pysyncobj's poller interface over the running asyncio loop: subscriptions become
    ``add_reader``/``add_writer``; ``poll`` does nothing (the loop delivers the events)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_event: Callable[[], None]) -> None:
        self._loop = loop
        self._on_event = on_event
        self._masks: dict[int, int] = {}

    def subscribe(self, descr: int, callback: Callable[[int, int], None], eventMask: int) -> None:
        self.unsubscribe(descr)
        if eventMask & POLL_EVENT_TYPE.READ:
            self._loop.add_reader(descr, self._fire, descr, callback, POLL_EVENT_TYPE.READ)
        if eventMask & POLL_EVENT_TYPE.WRITE:
            self._loop.add_writer(descr, self._fire, descr, callback, POLL_EVENT_TYPE.WRITE)
        self._masks[descr] = eventMask

    def unsubscribe(self, descr: int) -> None:
        mask = self._masks.pop(descr, None)
        if mask is None:
            return
        if mask & POLL_EVENT_TYPE.READ:
            self._loop.remove_reader(descr)
        if mask & POLL_EVENT_TYPE.WRITE:
            self._loop.remove_writer(descr)

    def poll(self, timeout: float) -> None:
        pass

    def close(self) -> None:
        for descr in list(self._masks):
            self.unsubscribe(descr)

    def _fire(self, descr: int, callback: Callable[[int, int], None], event: int) -> None:
        try:
            callback(descr, event)
        except Exception:  # a bug in the transport must not take the loop down
            log.exception("raft transport callback failed")
        self._on_event()


class _Transport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport on our poller, its sends held back until durable (`_outgoing`)."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        # The transport binds its server on the node's poller as it is built: install ours first.
        syncObj._poller = syncObj._loop_poller
        super().__init__(syncObj, selfNode, otherNodes)
        self._owner = syncObj

    def send(self, node: Any, message: Any) -> bool:
        return bool(self._owner._outgoing(node, message))

    def send_now(self, node: Any, message: Any) -> bool:
        return bool(super().send(node, message))

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if self._owner._incoming(node, message):
            super()._onMessageReceived(node, message)


class RaftNode(SyncObj):  # type: ignore[misc]
    """A Raft member replicating `Batch` entries. Build it on the running loop, then `start` it.

    ``on_role(role)`` is called on every role change; ``on_failure(reason)`` once if the journal's
    storage fails (fail-stop: the member must stop).
    """

    #: What checks that this member may serve a read (raft/readguard.py; a driver may refine it).
    read_guard_type: type[ReadGuard] = ReadGuard

    def __init__(
        self,
        config: ClusterConfig,
        journal: DurableJournal,
        *,
        on_role: Callable[[Role], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._loop = asyncio.get_running_loop()
        self._loop_poller = self._make_poller()
        self._journal = journal
        self._held: collections.deque[tuple[int, Any, Any]] = collections.deque()
        self._on_role = on_role
        self._on_failure = on_failure
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False
        self._closed = False
        #: Member id -> where it served clients when it last led (learnt from committed entries).
        self.addresses: dict[str, LeaderInfo] = {}
        self._by_address = {address: node for node, address in config.members.items()}
        low, high = config.election_timeout
        conf = SyncObjConf(
            autoTick=False,
            raftMinTimeout=low,
            raftMaxTimeout=high,
            appendEntriesPeriod=low / 5,
            # Check-quorum: a leader that heard from no majority for this long steps down, by the
            # time a new leader can be elected (followers wait at least ``low`` after the last
            # message they had from it, which precedes the last answer it had from them).
            leaderFallbackTimeout=low,
            # pysyncobj's default: a peer silent this long is disconnected (a SIGKILLed one is
            # noticed at once on its connection's reset; this only bounds a hung one).
            connectionTimeout=max(3.5, high),
            connectionRetryTime=low / 3,
            # One entry per loop pass already batches: send each at once instead of per heartbeat.
            appendEntriesUseBatch=False,
            # Larger than any entry: pysyncobj splits a bigger one into a transmission whose last
            # part it can misplace (it compares offsets in the pickled entry with the command's
            # length), and the follower then fails to unpickle it.
            appendEntriesBatchSizeBytes=64 * 2**20,
            bindAddress=config.raft_address,
            maxBindRetries=1,
            # pysyncobj's own compaction stays off: `spitfire.raft.compaction` writes the snapshots.
            logCompactionMinEntries=2**62,
            logCompactionMinTime=2**62,
            dynamicMembershipChange=False,
            onStateChanged=self._state_changed,
        )
        others = [address for node, address in config.members.items() if node != config.node_id]
        super().__init__(config.raft_address, others, conf, transportClass=_Transport)
        self._adopt_journal()
        #: Who votes: the newest configuration the journal holds (`spitfire.raft.membership`).
        self.members_sync = MemberSync(self, config.node_id, journal, join=config.join, max_timeout=high)
        journal.set_listener(self._released, self._journal_failed)
        #: Pre-vote and sticky leadership (raft/prevote.py).
        self.elections = Elections(self, low, name=self._member_of, kick=self._kick)
        #: Whether this member may serve a read now (raft/readguard.py).
        self.reads = self.read_guard_type(
            lambda: len(self._SyncObj__otherNodes) + 1,
            low * LEASE_FRACTION,
            high,
            leading=lambda: self.role is Role.LEADER,
            poke=self._poke,
        )

    # -- pysyncobj's private state (pinned version; checked in `_adopt_journal`) ------------------------

    def _adopt_journal(self) -> None:
        """Replace pysyncobj's in-memory journal with ours and restore term and vote from it."""
        for name in (
            "raftLog",
            "raftCurrentTerm",
            "votedForNodeId",
            "raftCommitIndex",
            "raftState",
            "raftElectionDeadline",
            "raftMatchIndex",
            "connectedNodes",
            "leaderCommitIndex",
            "noopIDx",
            "transport",
            "otherNodes",
            "transferInProgress",
            "newAppendEntriesTime",
            "generateRaftTimeout",
        ):
            if not hasattr(self, "_SyncObj__" + name):
                raise RuntimeError(
                    f"this pysyncobj has no SyncObj.__{name}: install the version spitfire pins "
                    "(pip install 'spitfire[...]' reinstalls it)"
                )
        journal = self._journal
        if len(journal) == 0:  # as pysyncobj starts every journal: a no-op at index 1, term 0
            journal.add(b"\x01", 1, 0)
        self._SyncObj__raftLog = journal
        self._SyncObj__raftCommitIndex = journal.getRaftCommitIndex()
        # The journal records a term before accepting any entry of it; max() in case of a journal
        # that lost its last TERM record (never below the newest entry's term).
        self._SyncObj__raftCurrentTerm = max(journal.term, journal[-1][2])
        self._SyncObj__votedForNodeId = journal.voted_for

    def _make_poller(self) -> Poller:
        """The poller pysyncobj's sockets are registered with (a subclass may drive them itself)."""
        return LoopPoller(self._loop, self._kick)

    @property
    def role(self) -> Role:
        return _ROLES.get(self._SyncObj__raftState, Role.FOLLOWER)

    @property
    def term(self) -> int:
        return int(self._SyncObj__raftCurrentTerm)

    @property
    def commit_index(self) -> int:
        return int(self.raftCommitIndex)

    @property
    def applied_index(self) -> int:
        return int(self.raftLastApplied)

    @property
    def last_index(self) -> int:
        return self._journal.last_index

    @property
    def members(self) -> dict[str, str]:
        """Every voting member now (the configuration the journal holds): id -> Raft address."""
        sync: MemberSync | None = self.__dict__.get("members_sync")  # None while pysyncobj builds
        return self.config.members if sync is None else sync.members

    def members_at(self, index: int) -> dict[str, str]:
        """The voting members as of entry ``index`` (what a snapshot up to it keeps)."""
        sync: MemberSync | None = self.__dict__.get("members_sync")
        return dict(self.config.members) if sync is None else sync.membership.at(index)

    @property
    def leader_id(self) -> str | None:
        """The member this one takes for the leader (itself included), None during an election."""
        leader = self._getLeader()
        return None if leader is None else self._by_address.get(leader.address)

    @property
    def leader_ready(self) -> bool:
        """Leader, and its no-op of this term is applied: every entry committed so far, under any
        term, is in its journal and applied (Raft's leader completeness)."""
        noop = self._SyncObj__noopIDx
        return self.role is Role.LEADER and noop is not None and self.applied_index >= noop

    def match_indexes(self) -> dict[str, int]:
        """On the leader: member id -> highest index known replicated there."""
        if self.role is not Role.LEADER:
            return {}
        return {
            self._by_address.get(n.address, n.address): int(i)
            for n, i in self._SyncObj__raftMatchIndex.items()
        }

    def connected(self) -> set[str]:
        """Ids of the other members this one has a connection to."""
        return {self._by_address.get(n.address, n.address) for n in self._SyncObj__connectedNodes}

    def leader_commit_index(self) -> int | None:
        value = self._SyncObj__leaderCommitIndex
        return None if value is None else int(value)

    # -- driving ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start ticking on the loop. The election deadline starts now, not when pysyncobj was
        built: a member that took long to start (replaying its journal) must first hear the leader
        before it may stand for election."""
        low, high = self.config.election_timeout
        self._SyncObj__raftElectionDeadline = time.monotonic() + low + (high - low) * random.random()
        self.elections.started()
        self._timer = self._loop.call_later(TICK, self._periodic)

    def close(self) -> None:
        """Stop ticking and close pysyncobj's sockets (the journal's storage is the caller's)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._doDestroy()
        finally:
            self._loop_poller.close()

    def _kick(self) -> None:
        if not self._soon and not self._closed:
            self._soon = True
            self._loop.call_soon(self._tick_soon)

    def _tick_soon(self) -> None:
        self._soon = False
        self._tick()

    def _periodic(self) -> None:
        self._tick()
        if not self._closed:
            self._timer = self._loop.call_later(TICK, self._periodic)

    def _tick(self) -> None:
        if self._closed or self._journal.failure is not None:
            return
        members = self.members_sync
        members.before_tick()
        try:
            self.elections.before_tick()
            self.doTick(0.0)
        except Exception:
            log.exception("raft tick failed")
        members.sync()  # after every tick: what it appended or replaced may change the membership
        self._record_term()

    # -- durability of what leaves --------------------------------------------------------------------

    def _record_term(self) -> None:
        term, vote = self._SyncObj__raftCurrentTerm, self._SyncObj__votedForNodeId
        self._journal.record_term(term, vote)

    def _outgoing(self, node: Any, message: Any) -> bool:
        """Every message pysyncobj sends: sent once every journal record appended before it is
        durable (held in order until then)."""
        self._mark(node, message)
        self._record_term()
        journal = self._journal
        if journal.failure is not None:
            return False
        if journal.pending or self._held:
            self._held.append((journal.last_lsn, node, message))
            return True
        return bool(self._SyncObj__transport.send_now(node, message))

    # -- what travels besides pysyncobj's fields (read stamps, pre-votes) ------------------------------

    def _member_of(self, node: Any) -> str:
        return str(self._by_address.get(node.address, node.address))

    def _mark(self, node: Any, message: Any) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "append_entries":
            message[STAMP] = self.reads.stamp(message["term"])
        elif kind == "next_node_idx":
            self.reads.answer(node.address, message)
        else:
            self.elections.outgoing(message)

    def _incoming(self, node: Any, message: Any) -> bool:
        """Every message received, before pysyncobj: False when consumed or dropped here."""
        if not isinstance(message, dict):
            return True
        if not self.elections.incoming(node, message):
            return False
        kind = message.get("type")
        if kind == "append_entries" and isinstance(term := message.get("term"), int) and term >= self.term:
            self.reads.accepted(node.address, message)
        elif kind == "next_node_idx" and self.role is Role.LEADER:
            self.reads.echoed(node.address, message.get(STAMP))
        return True

    def _poke(self) -> None:
        """Send a heartbeat round at the next tick, now (a read waits for its confirmation)."""
        self._SyncObj__newAppendEntriesTime = 0.0
        self._kick()

    def _released(self, durable: int) -> None:
        held = self._held
        send = self._SyncObj__transport.send_now
        while held and held[0][0] <= durable:
            _, node, message = held.popleft()
            try:
                send(node, message)
            except Exception:
                log.exception("sending a raft message failed")
        self._kick()

    def _journal_failed(self, error: StorageError) -> None:
        self._held.clear()
        log.critical("the raft journal failed, this member stops: %s", error)
        if self._on_failure is not None:
            self._on_failure(f"raft journal: {error}")

    # -- roles -----------------------------------------------------------------------------------------

    def _state_changed(self, old: int, new: int) -> None:
        role = _ROLES.get(new, Role.FOLLOWER)
        log.info("raft: %s is %s in term %d", self.config.node_id, role.value, self.term)
        if self._on_role is not None:
            self._loop.call_soon(self._on_role, role)

    # -- replication -----------------------------------------------------------------------------------

    def _checkCommandsToApply(self) -> None:  # pysyncobj's hook, once per tick
        # pysyncobj forwards the commands of a node that is not the leader to the leader. Ours must
        # never travel: the leader's engine would not have applied the batch it commits, and ours
        # would apply what it never validated against the leader's state. A member that stopped
        # leading restarts anyway; until then its proposals wait here.
        if self.role is Role.LEADER:
            super()._checkCommandsToApply()

    def propose(self, batch: Batch, done: Commit) -> None:
        """Replicate one batch as one entry; ``done`` is told once it is committed, or why not
        (at once when this member does not lead)."""
        if self.role is not Role.LEADER:
            done(False, "this member does not lead")
            return
        data = encode_batch(batch)

        def callback(_result: Any, error: int) -> None:
            if error == FAIL_REASON.SUCCESS:
                done(True, None)
            else:
                done(False, _FAIL_NAMES.get(error, str(error)))

        self._apply_batch(data, callback=callback)
        self._kick()

    @replicated  # type: ignore[untyped-decorator]
    def _apply_batch(self, data: bytes) -> None:
        # Called by pysyncobj for every committed entry, in order, on every member: learn where a
        # new leader serves; the records themselves are the storage's (the leader's engine applies
        # them through its commit callbacks, a new leader replays them from the journal).
        try:
            batch = msgspec.msgpack.decode(data, type=Batch)
        except msgspec.DecodeError:
            log.error("a committed raft entry is not a batch this build reads")
            return
        if batch.leader is not None:
            self.addresses[batch.leader.node] = batch.leader

    def committed_batches(self) -> list[Batch]:
        """Every batch committed and applied so far, oldest first (a new leader replays them)."""
        batches: list[Batch] = []
        for command, _index, _term in self._journal.entries(self.applied_index):
            batch = decode_command(command)
            if batch is not None:
                batches.append(batch)
        return batches

    def learn_addresses(self) -> None:
        """Learn where members served when they led from every entry of the journal (after a
        restart, before the leader's commit index is known: an address is only a hint to clients)."""
        for command, _index, _term in self._journal.entries(self._journal.last_index):
            try:
                batch = decode_command(command)
            except Exception:  # a hint only: an entry this build cannot read names no address
                continue
            if batch is not None and batch.leader is not None:
                self.addresses[batch.leader.node] = batch.leader


_FAIL_NAMES = {
    FAIL_REASON.QUEUE_FULL: "queue full",
    FAIL_REASON.MISSING_LEADER: "no leader",
    FAIL_REASON.DISCARDED: "discarded by a new leader",
    FAIL_REASON.NOT_LEADER: "not the leader",
    FAIL_REASON.LEADER_CHANGED: "the leader changed",
    FAIL_REASON.REQUEST_DENIED: "denied",
}
