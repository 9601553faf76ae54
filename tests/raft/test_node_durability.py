"""Two Raft nodes in one process on loopback: a follower's acknowledgement leaves only once its
journal made the entry durable, so the leader cannot count an entry that one crash would lose."""

from __future__ import annotations

import asyncio

from nodehelpers import free_ports as _ports
from nodehelpers import until as _until

from spitfire.raft import JOURNAL_LOG, Batch, ClusterConfig, DurableJournal, RaftNode
from spitfire.wal import MemoryState, MemoryStorage
from spitfire.wal.api import Durability


def test_a_followers_acknowledgement_waits_for_its_fsync() -> None:
    async def body() -> None:
        a, b = _ports(2)
        members = {"a": f"127.0.0.1:{a}", "b": f"127.0.0.1:{b}"}
        disks = {n: MemoryState() for n in members}
        nodes: dict[str, RaftNode] = {}
        try:
            for n in members:
                log_, recovery = MemoryStorage(disks[n]).open_system_log(JOURNAL_LOG, Durability.GROUP)
                # A long lease, so that the held acknowledgements do not depose the leader meanwhile.
                config = ClusterConfig(n, members, election_timeout=(1.0, 2.0))
                nodes[n] = RaftNode(config, DurableJournal(log_, recovery))
                nodes[n].start()
            leader = await _until(
                "a leader", lambda: next((x for x in nodes.values() if x.leader_ready), None)
            )
            follower = next(x for x in nodes.values() if x is not leader)
            disk = disks[follower.config.node_id]
            disk.hold_commits = True  # the follower's fdatasync does not return until released
            outcome: list[tuple[bool, str | None]] = []
            before = leader.commit_index
            leader.propose(Batch([("q", 1, 1, b"job")]), lambda ok, why: outcome.append((ok, why)))
            await _until("the follower holds the entry", lambda: follower.last_index == leader.last_index)
            await asyncio.sleep(0.6)  # three heartbeat rounds: every answer of the follower waits
            assert outcome == [] and leader.commit_index == before
            disk.hold_commits = False
            disk.release_commits()
            await _until("committed once durable", lambda: outcome)
            assert outcome == [(True, None)] and leader.commit_index > before
        finally:
            for node in nodes.values():
                node.close()

    asyncio.run(body())
