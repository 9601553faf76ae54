"""Raft replication for high availability (``spitfire-server --cluster``), on pysyncobj.

`DurableJournal` keeps pysyncobj's journal, term and vote in our WAL (``<data-dir>/meta/raft/``);
`RaftNode` runs pysyncobj on the event loop and sends nothing before what it depends on is durable;
`ReplicatedStorage` is the leader's engine storage, whose every record commits through the Raft log
(many records per entry); `spitfire.raft.snapshot` and `spitfire.raft.compaction` snapshot the
replicated state, compact the journal and catch a member up from a snapshot; `Membership` and
`MemberSync` change who votes, one member at a time through the log. docs/ha.md says what is
guaranteed and what is not built yet.
"""

from .batch import DROPPED, Batch, LeaderInfo, decode_command, encode_batch
from .journal import JOURNAL_LOG, DurableJournal, JournalRecord
from .membership import CONFIG_COMMAND, Configuration, Membership, MembershipError, MemberSync
from .node import ELECTION_TIMEOUT, TICK, ClusterConfig, RaftNode, Role, parse_members
from .storage import NotLeaderError, ReplicatedLog, ReplicatedStorage

__all__ = [
    "CONFIG_COMMAND",
    "DROPPED",
    "ELECTION_TIMEOUT",
    "JOURNAL_LOG",
    "TICK",
    "Batch",
    "ClusterConfig",
    "Configuration",
    "DurableJournal",
    "JournalRecord",
    "LeaderInfo",
    "MemberSync",
    "Membership",
    "MembershipError",
    "NotLeaderError",
    "RaftNode",
    "ReplicatedLog",
    "ReplicatedStorage",
    "Role",
    "decode_command",
    "encode_batch",
    "parse_members",
]
