"""Three real spitfire-server processes on loopback form a Raft cluster: a leader is elected,
followers refuse with NOT_LEADER, committed jobs are on every member, the leader is SIGKILLed and
a new one takes writes without losing an acknowledged job, and a restarted member catches up."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest
from clusterhelpers import WAIT, Cluster, Member, ProtoClient, ServerError, cluster, journal_job_ids

from spitfire.protocol.messages import ErrorCode

pytestmark = pytest.mark.timeout(300)


async def _enqueue(member: Member, queue: str, count: int) -> list[str]:
    client = await ProtoClient.connect(member.listen)
    try:
        return [(await client.enqueue(queue, "job", b"\x91\x01")).job_id for _ in range(count)]
    finally:
        client.close()


async def _states(member: Member, ids: list[str]) -> dict[str, str]:
    client = await ProtoClient.connect(member.listen)
    try:
        return {i: (await client.get(i)).state for i in ids}
    finally:
        client.close()


async def _refused(member: Member) -> ServerError:
    client = await ProtoClient.connect(member.listen)
    try:
        with pytest.raises(ServerError) as info:
            await client.enqueue("q", "job")
        return info.value
    finally:
        client.close()


def test_a_leader_is_elected_followers_refuse_and_every_member_holds_the_jobs(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = c.leader()
        ids = asyncio.run(_enqueue(leader, "emails", 30))
        assert len(set(ids)) == 30
        followers = [m for m in c.members if m is not leader]
        for f in followers:
            err = asyncio.run(_refused(f))
            assert err.code == ErrorCode.NOT_LEADER
            assert err.field == f"127.0.0.1:{leader.listen}", err
            status, body = f.http_get("/api/queues")
            assert status == 503
            assert body["error"]["code"] == "NOT_LEADER"
            assert body["error"]["leader"] == f"http://127.0.0.1:{leader.http}"
            assert f.http_get("/ready")[0] == 503
        view = leader.cluster()
        assert view is not None and view["leader"] == leader.node_id and view["term"] >= 1
        assert {n["id"]: n["role"] for n in view["nodes"]} == {
            m.node_id: "leader" if m is leader else "follower" for m in c.members
        }
        commit = next(n for n in view["nodes"] if n["id"] == leader.node_id)["commit_index"]
        for f in followers:  # every member applied what the leader had committed
            c.wait(f"{f.node_id} catches up", lambda f=f: (f.me() or {}).get("applied_index", 0) >= commit)
        c.wait("the leader sees no lag", lambda: all(
            n["lag"] == 0 for n in (leader.cluster() or {"nodes": [{"lag": 1}]})["nodes"]
        ))  # fmt: skip
    for m in c.members:  # stopped: each journal holds every acknowledged job
        assert set(ids) <= journal_job_ids(m.data_dir), m.node_id


def _kill_leader_and_measure(c: Cluster, acked: list[str], queue: str) -> float:
    """Enqueue on the leader, SIGKILL it, time until a new leader acknowledges a write, check every
    acknowledged job is there, restart the killed member. Returns the failover time."""
    leader = c.leader()
    # Every member up and connected first: a kill must leave a majority.
    c.wait("every member up", lambda: all(
        n["role"] != "down" for n in (leader.cluster() or {"nodes": [{"role": "down"}]})["nodes"]
    ))  # fmt: skip
    acked.extend(asyncio.run(_enqueue(leader, queue, 20)))
    leader.kill()
    killed = time.monotonic()
    survivors = [m for m in c.members if m is not leader]
    while True:
        new = c.leader(among=survivors)
        try:
            acked.extend(asyncio.run(_enqueue(new, queue, 1)))
            break
        except (ServerError, ConnectionError, OSError):  # it stepped down meanwhile: look again
            assert time.monotonic() - killed < WAIT, c.logs()
    failover = time.monotonic() - killed
    states = asyncio.run(_states(new, acked))
    assert all(s == "enqueued" for s in states.values()), states
    leader.start()
    return failover


def test_the_leader_killed_three_times_loses_no_acknowledged_job(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        acked: list[str] = []
        times = [_kill_leader_and_measure(c, acked, "kills") for _ in range(3)]
        assert len(acked) == 3 * 21
        print(f"failover after SIGKILL of the leader (s): {[round(t, 3) for t in times]}")
        # The last restarted member catches up with the leader's commit index.
        leader = c.leader()
        restarted = c.members  # every member was killed or saw kills; all must converge
        commit = c.wait("leader view", lambda: (leader.me() or {}).get("commit_index"))
        for m in restarted:
            c.wait(
                f"{m.node_id} catches up to {commit}",
                lambda m=m: (m.me() or {}).get("applied_index", 0) >= commit,
            )


def test_a_leader_without_a_majority_steps_down_and_refuses(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = c.leader()
        for m in c.members:
            if m is not leader:
                m.kill()
        # Check-quorum: it stops leading (and restarts as a follower), then answers NOT_LEADER.
        c.wait(
            "the lone leader steps down", lambda: (leader.me() or {}).get("role") in ("follower", "candidate")
        )
        err = asyncio.run(_refused(leader))
        assert err.code == ErrorCode.NOT_LEADER
        assert "restarting as a follower" in leader.log_text()


@pytest.mark.slow
def test_twenty_leader_kills_under_load_report_failover_times(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        acked: list[str] = []
        times = [_kill_leader_and_measure(c, acked, "soak") for _ in range(20)]
        p50, worst = statistics.median(times), max(times)
        print(f"failover over 20 SIGKILLs of the leader: p50 {p50:.3f} s, max {worst:.3f} s")
        assert len(acked) == 20 * 21
        assert worst < WAIT
