"""The leader's storage: one Raft entry per loop pass, commit before apply, replay of what was
committed, and a lost leadership failing what waited (the engine's unit tests cover the rest)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from spitfire.raft import DROPPED, Batch, LeaderInfo, NotLeaderError, ReplicatedStorage
from spitfire.raft.node import Commit
from spitfire.server.engine import Engine
from spitfire.wal.api import Durability


class FakeRaft:
    """Collects proposals; a test commits or fails them in order."""

    def __init__(self) -> None:
        self.proposed: list[tuple[Batch, Commit]] = []
        self.committed: list[Batch] = []

    def propose(self, batch: Batch, done: Commit) -> None:
        self.proposed.append((batch, done))

    def commit_all(self) -> None:
        for batch, done in self.proposed:
            self.committed.append(batch)
            done(True, None)
        self.proposed.clear()


def test_appends_of_one_loop_pass_travel_as_one_entry_applied_before_answered() -> None:
    async def body() -> None:
        raft = FakeRaft()
        storage = ReplicatedStorage(raft.propose)
        a, _ = storage.open_log("a", Durability.GROUP)
        b, _ = storage.open_log("b", Durability.ASYNC)
        order: list[Any] = []
        a.set_listener(lambda lsn: order.append(("applied", lsn)), lambda e: None)
        assert [a.append(1, b"x"), a.append(3, b"y"), b.append(1, b"z")] == [1, 2, 1]
        fa, fb = a.commit(2), b.commit(1)
        assert fa is not None and fb is not None  # every mode waits for the commit in a cluster
        fa.add_done_callback(lambda f: order.append("answered"))
        await asyncio.sleep(0)  # the end of the loop pass proposes
        assert len(raft.proposed) == 1
        assert raft.proposed[0][0].records == [("a", 1, 1, b"x"), ("a", 2, 3, b"y"), ("b", 1, 1, b"z")]
        assert not fa.done()
        raft.commit_all()
        await fa
        await fb
        await asyncio.sleep(0)  # done callbacks run one loop pass later
        assert order == [("applied", 2), "answered"]
        assert a.commit(2) is None

    asyncio.run(body())


def test_a_lost_leadership_fails_what_waited() -> None:
    async def body() -> None:
        raft = FakeRaft()
        storage = ReplicatedStorage(raft.propose)
        a, _ = storage.open_log("a", Durability.GROUP)
        failures: list[Exception] = []
        a.set_listener(lambda lsn: None, failures.append)
        a.append(1, b"x")
        fut = a.commit(1)
        assert fut is not None
        await asyncio.sleep(0)
        raft.proposed[0][1](False, "the leader changed")
        with pytest.raises(NotLeaderError, match="the leader changed"):
            await fut
        assert len(failures) == 1

    asyncio.run(body())


def test_replay_gives_each_log_back_and_a_dropped_log_starts_over() -> None:
    batches = [
        Batch([("a", 1, 1, b"1"), ("meta/schedules", 1, 20, b"s")], LeaderInfo("n", "h:1", "http://h:2")),
        Batch([("a", 2, 14, b"del"), ("a", 0, DROPPED, b""), ("a", 1, 1, b"new")]),
    ]

    async def body() -> None:
        storage = ReplicatedStorage.from_batches(batches, FakeRaft().propose)
        assert storage.queues() == ["a"]
        log_, recovery = storage.open_log("a", Durability.GROUP)
        assert [(r.lsn, r.body) for r in recovery.records] == [(1, b"new")]
        assert log_.last_lsn == 1 and log_.append(1, b"next") == 2
        _sys_log, sys_recovery = storage.open_system_log("schedules", Durability.GROUP)
        assert [r.rtype for r in sys_recovery.records] == [20]

    asyncio.run(body())


def test_the_engine_runs_over_it_and_a_replay_recovers_its_jobs() -> None:
    async def body() -> None:
        raft = FakeRaft()

        def propose(batch: Batch, done: Commit) -> None:  # commit at once, as a healthy majority
            raft.committed.append(batch)
            asyncio.get_running_loop().call_soon(done, True, None)

        engine = Engine(ReplicatedStorage(propose))  # type: ignore[arg-type]
        await engine.open(now=1000.0)
        ids = [(await engine.enqueue("emails", "send", b"\x80", now=1000.0))[0].id for _ in range(5)]
        await engine.close()
        assert len(raft.committed) >= 1
        again = Engine(ReplicatedStorage.from_batches(raft.committed, propose))  # type: ignore[arg-type]
        await again.open(now=1001.0)
        assert [again.table.get(i) is not None for i in ids] == [True] * 5
        await again.close()

    asyncio.run(body())
