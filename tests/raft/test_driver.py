"""``--raft-driver thread`` (spitfire.raft.driver) in this process: the Raft thread sends nothing
before the WAL made it durable, hands commits to the loop, fail-stops on a failed fdatasync, and
its `ThreadLog` copies appends into the WAL in LSN order."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from nodehelpers import free_ports, until

from spitfire.raft import JOURNAL_LOG, Batch, ClusterConfig, MembershipError
from spitfire.raft.driver import ThreadCompactor, ThreadJournal, ThreadLog, ThreadNode
from spitfire.wal import MemoryState, MemoryStorage
from spitfire.wal.api import Durability, NoSpaceError, StorageError

pytestmark = pytest.mark.timeout(120)


def _nodes(
    tmp_path: Path, disks: dict[str, MemoryState], failures: dict[str, list[str]]
) -> dict[str, ThreadNode]:
    ports = free_ports(len(disks))
    members = {n: f"127.0.0.1:{p}" for n, p in zip(disks, ports, strict=True)}
    loop = asyncio.get_running_loop()
    nodes: dict[str, ThreadNode] = {}
    for n in members:
        log_, recovery = MemoryStorage(disks[n]).open_system_log(JOURNAL_LOG, Durability.GROUP)
        journal = ThreadJournal(log_, recovery, loop)
        compactor = ThreadCompactor(journal, tmp_path / n, every=0)
        # A long lease, so that held acknowledgements do not depose the leader meanwhile.
        config = ClusterConfig(n, members, election_timeout=(1.0, 2.0), driver="thread")
        nodes[n] = ThreadNode(config, journal, compactor, on_failure=failures[n].append)
        nodes[n].start()
    return nodes


def test_an_acknowledgement_leaves_the_raft_thread_only_once_durable(tmp_path: Path) -> None:
    async def body() -> None:
        disks = {n: MemoryState() for n in ("a", "b")}
        failures: dict[str, list[str]] = {n: [] for n in disks}
        nodes = _nodes(tmp_path, disks, failures)
        try:
            leader = await until(
                "a leader", lambda: next((x for x in nodes.values() if x.leader_ready), None)
            )
            follower = next(x for x in nodes.values() if x is not leader)
            disk = disks[follower.config.node_id]
            disk.hold_commits = True  # the follower's fdatasync does not return until released
            outcome: list[tuple[bool, str | None, int]] = []
            before = leader.commit_index
            leader.propose(
                Batch([("q", 1, 1, b"job")]),
                lambda ok, why: outcome.append((ok, why, threading.get_ident())),
            )
            await until("the follower holds the entry", lambda: follower.last_index == leader.last_index)
            await asyncio.sleep(0.6)  # many heartbeat rounds: every answer of the follower waits
            assert outcome == [] and leader.commit_index == before
            disk.hold_commits = False
            disk.release_commits()
            await until("committed once durable", lambda: outcome)
            # Told on the loop's thread, not the Raft thread's.
            assert outcome == [(True, None, threading.get_ident())]
            assert leader.commit_index > before
            with pytest.raises(MembershipError) as refused:
                leader.members_sync.change("remove", follower.config.node_id, None, lambda ok, why: None)
            assert refused.value.code == "CONFLICT" and "--raft-driver loop" in refused.value.message
            assert failures == {"a": [], "b": []}
        finally:
            for node in nodes.values():
                node.close()
        assert all(node._thread is not None and not node._thread.is_alive() for node in nodes.values())

    asyncio.run(body())


def test_a_failed_fdatasync_stops_the_member_and_what_it_held_never_leaves(tmp_path: Path) -> None:
    async def body() -> None:
        disks = {n: MemoryState() for n in ("a", "b")}
        failures: dict[str, list[str]] = {n: [] for n in disks}
        nodes = _nodes(tmp_path, disks, failures)
        try:
            leader = await until(
                "a leader", lambda: next((x for x in nodes.values() if x.leader_ready), None)
            )
            follower = next(x for x in nodes.values() if x is not leader)
            disk = disks[follower.config.node_id]
            disk.hold_commits = True
            outcome: list[tuple[bool, str | None]] = []
            before = leader.commit_index
            leader.propose(Batch([("q", 1, 1, b"job")]), lambda ok, why: outcome.append((ok, why)))
            await until("the follower holds the entry", lambda: follower.last_index == leader.last_index)
            await until("its fdatasync is under way", lambda: disk.held)  # copied into the WAL on the loop
            assert disk.fail_commits(StorageError("fdatasync failed: EIO")) >= 1
            reasons = await until("the follower fail-stops", lambda: failures[follower.config.node_id])
            assert "fdatasync failed" in reasons[0]
            await asyncio.sleep(0.5)  # its held acknowledgement was dropped, never sent
            assert outcome == [] and leader.commit_index == before
        finally:
            for node in nodes.values():
                node.close()

    asyncio.run(body())


def test_the_thread_log_copies_appends_in_lsn_order_and_fails_once() -> None:
    async def body() -> None:
        state = MemoryState()
        real, _recovery = MemoryStorage(state).open_system_log(JOURNAL_LOG, Durability.GROUP)
        log_ = ThreadLog(real, asyncio.get_running_loop())
        durable: list[int] = []
        failed: list[StorageError] = []
        log_.set_listener(durable.append, failed.append)
        lsns: list[int] = []

        def raft_thread() -> None:
            lsns.extend(log_.append(242, f"r{i}".encode()) for i in range(500))

        thread = threading.Thread(target=raft_thread)
        thread.start()
        await asyncio.to_thread(thread.join, 10)
        assert lsns == list(range(1, 501)) and log_.last_lsn == 500
        await until("every record durable", lambda: durable and durable[-1] == 500)
        assert [body for _lsn, _rtype, body in state.logs[real.queue].records] == [
            f"r{i}".encode() for i in range(500)
        ]
        state.out_of_space = True  # the next copy fails: the listener hears it once
        log_.append(242, b"lost")
        log_.append(242, b"lost too")
        await until("the failure reported", lambda: failed)
        state.out_of_space = False
        log_.append(242, b"after")
        await asyncio.sleep(0.05)
        assert len(failed) == 1 and isinstance(failed[0], NoSpaceError)
        assert real.last_lsn == 500  # nothing after the failure reached the WAL

    asyncio.run(body())
