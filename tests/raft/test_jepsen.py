"""The Jepsen-style check (tests/raft/jepsen.py) over runs with faults: producers and a worker
run against whichever member leads while the test isolates leaders (TCP proxies) or SIGKILLs them;
the final state read from the leader must have lost no acknowledged enqueue and no acknowledged
outcome. Duplicated enqueues (a retry of a request cut by a leader change) are reported."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from clusterhelpers import WAIT, Cluster, cluster
from jepsen import History, Load, read_final
from netproxy import partitioned_cluster

pytestmark = pytest.mark.timeout(600)


def _settle(c: Cluster, history: History, queue: str) -> None:
    leader = c.leader()
    final = asyncio.run(read_final(leader, queue))
    report = history.check(final)
    print(report.summary())
    assert report.lost == [], report
    assert report.duplicated == {}, report  # every retry carried its request's token
    assert report.lost_outcome == [], report
    assert report.enqueued > 0 and report.acked > 0, report


def _wait_progress(history: History, kind: str, more: int, timeout: float = WAIT) -> None:
    start = sum(1 for op in history.ops if op.kind == kind and op.phase == "ok")
    deadline = time.monotonic() + timeout
    while sum(1 for op in history.ops if op.kind == kind and op.phase == "ok") < start + more:
        assert time.monotonic() < deadline, f"no progress of {kind}"
        time.sleep(0.02)


@pytest.mark.parametrize("driver", ["loop", pytest.param("thread", marks=pytest.mark.slow)])  # --raft-driver
def test_isolating_leaders_under_load_loses_nothing(tmp_path: Path, driver: str) -> None:
    history = History()
    with partitioned_cluster(tmp_path, extra=["--raft-driver", driver]) as (c, net):
        c.leader()
        with Load(c.members, "h", history):
            for _ in range(2):
                _wait_progress(history, "enqueue", 50)
                _wait_progress(history, "ack", 20)
                leader = c.leader()
                net.isolate(leader.node_id)
                c.leader(among=[m for m in c.members if m is not leader])
                _wait_progress(history, "enqueue", 50)
                net.heal()
            _wait_progress(history, "ack", 20)
        _settle(c, history, "h")


@pytest.mark.slow
def test_twenty_leader_kills_under_load_lose_nothing(tmp_path: Path) -> None:
    history = History()
    with cluster(tmp_path) as c:
        c.leader()
        with Load(c.members, "k", history):
            for _ in range(20):
                _wait_progress(history, "enqueue", 30)
                leader = c.leader()
                leader.kill()
                c.leader(among=[m for m in c.members if m is not leader])
                _wait_progress(history, "enqueue", 30)
                leader.start()
            _wait_progress(history, "ack", 20)
        _settle(c, history, "k")


@pytest.mark.slow
def test_flapping_and_one_way_cuts_under_load_lose_nothing(tmp_path: Path) -> None:
    history = History()
    with partitioned_cluster(tmp_path) as (c, net):
        c.leader()
        with Load(c.members, "f", history, producers=3):
            for i in range(10):
                leader = c.leader()
                other = next(m for m in c.members if m is not leader)
                if i % 2:
                    net.cut(leader.node_id, other.node_id)
                else:
                    net.cut_both(leader.node_id, other.node_id)
                _wait_progress(history, "enqueue", 20)
                net.heal()
                _wait_progress(history, "enqueue", 20)
            _wait_progress(history, "ack", 20)
        _settle(c, history, "f")
