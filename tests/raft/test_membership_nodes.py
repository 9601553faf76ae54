"""Membership changes between Raft nodes in one process (loopback ports, in-memory journals): a
member started with ``--join`` does not stand for election until it is added, then catches up from
the log; one change at a time; a removed leader is told to step down once its removal commits."""

from __future__ import annotations

import asyncio

import pytest
from nodehelpers import free_ports as _ports
from nodehelpers import until as _until

from spitfire.raft import JOURNAL_LOG, Batch, ClusterConfig, DurableJournal, RaftNode, Role
from spitfire.raft.membership import MembershipError
from spitfire.wal import MemoryState, MemoryStorage
from spitfire.wal.api import Durability

pytestmark = pytest.mark.timeout(120)

TIMEOUTS = (0.3, 0.6)


def _node(node_id: str, members: dict[str, str], *, join: bool = False) -> RaftNode:
    log_, recovery = MemoryStorage(MemoryState()).open_system_log(JOURNAL_LOG, Durability.GROUP)
    config = ClusterConfig(node_id, members, election_timeout=TIMEOUTS, join=join)
    node = RaftNode(config, DurableJournal(log_, recovery))
    node.start()
    return node


async def _change(node: RaftNode, op: str, member: str, raft: str | None = None) -> tuple[bool, str | None]:
    outcome: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
    node.members_sync.change(
        op, member, raft, lambda ok, why: outcome.done() or outcome.set_result((ok, why))
    )
    return await asyncio.wait_for(outcome, 30)


async def _commit(node: RaftNode, count: int) -> None:
    done: list[bool] = []
    for i in range(count):
        node.propose(Batch([("q", i + 1, 1, b"job")]), lambda ok, _why: done.append(ok))
        await asyncio.sleep(0)
    await _until("batches committed", lambda: len(done) == count)
    assert all(done)


def test_a_joining_member_waits_to_be_added_then_catches_up_and_one_change_goes_at_a_time() -> None:
    async def body() -> None:
        ports = _ports(4)
        members = {n: f"127.0.0.1:{p}" for n, p in zip("abcd", ports, strict=True)}
        first = {n: members[n] for n in "abc"}
        nodes = {n: _node(n, first) for n in "abc"}
        try:
            leader = await _until(
                "a leader", lambda: next((x for x in nodes.values() if x.leader_ready), None)
            )
            follower = next(x for x in nodes.values() if x is not leader)
            with pytest.raises(MembershipError) as info:
                follower.members_sync.change("add", "d", members["d"], lambda ok, why: None)
            assert info.value.code == "NOT_LEADER"
            await _commit(leader, 20)
            nodes["d"] = joiner = _node("d", members, join=True)
            await asyncio.sleep(4 * TIMEOUTS[1])  # several election timeouts: it never stands
            assert joiner.role is Role.FOLLOWER and joiner.term == 0 and not joiner.members_sync.voter
            assert leader.members_sync.members == first  # nothing changed by its start

            outcome = asyncio.ensure_future(_change(leader, "add", "d", members["d"]))
            await asyncio.sleep(0)
            with pytest.raises(MembershipError) as info:  # the first one is not committed yet
                leader.members_sync.change("remove", "b", None, lambda ok, why: None)
            assert info.value.code == "CONFLICT" and "one change at a time" in info.value.message
            assert await outcome == (True, None)
            for n in nodes.values():
                await _until(
                    f"{n.config.node_id} takes the new configuration", lambda n=n: n.members == members
                )
            await _until("the new member holds the whole log", lambda: joiner.last_index == leader.last_index)
            assert joiner.members_sync.voter and not leader.members_sync.pending()
            await _commit(leader, 5)  # a majority of four now: still committing
            await _until("the new member catches up", lambda: joiner.applied_index >= leader.commit_index)
            assert set(leader.match_indexes()) == {"a", "b", "c", "d"} - {leader.config.node_id}
        finally:
            for n in nodes.values():
                n.close()

    asyncio.run(body())


def test_a_removed_leader_is_told_to_step_down_once_the_removal_commits() -> None:
    async def body() -> None:
        ports = _ports(3)
        members = {n: f"127.0.0.1:{p}" for n, p in zip("abc", ports, strict=True)}
        nodes = {n: _node(n, members) for n in "abc"}
        try:
            leader = await _until(
                "a leader", lambda: next((x for x in nodes.values() if x.leader_ready), None)
            )
            me = leader.config.node_id
            told: list[int] = []
            leader.members_sync.on_removed = lambda: told.append(leader.commit_index)
            await _commit(leader, 5)
            assert await _change(leader, "remove", me) == (True, None)
            await _until("told to step down", lambda: told)
            assert told[0] >= leader.members_sync.membership.index
            rest = [n for n in nodes.values() if n is not leader]
            for n in rest:
                await _until("the others drop it", lambda n=n: me not in n.members)
            assert not leader.members_sync.voter
            leader.transferLeadership()  # what the server does once told
            new = await _until(
                "a new leader among the rest", lambda: next((n for n in rest if n.leader_ready), None)
            )
            await _commit(new, 5)  # two members of two: committing without the removed one
            assert set(new.members) == {n.config.node_id for n in rest}
            with pytest.raises(MembershipError) as info:
                await _change(new, "remove", "zz")
            assert info.value.code == "NOT_FOUND"
        finally:
            for n in nodes.values():
                n.close()

    asyncio.run(body())


def test_the_only_member_cannot_be_removed() -> None:
    async def body() -> None:
        (port,) = _ports(1)
        node = _node("a", {"a": f"127.0.0.1:{port}"})
        try:
            await _until("it leads", lambda: node.leader_ready)
            with pytest.raises(MembershipError) as info:
                node.members_sync.change("remove", "a", None, lambda ok, why: None)
            assert info.value.code == "CONFLICT" and not node.members_sync.pending()
        finally:
            node.close()

    asyncio.run(body())
