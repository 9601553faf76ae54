"""Three real spitfire-server processes on loopback form a Raft cluster: a leader is elected,
followers refuse with NOT_LEADER, committed jobs are on every member, the leader is SIGKILLed and
a new one takes writes without losing an acknowledged job, and a restarted member catches up."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from clusterhelpers import WAIT, Cluster, Member, ProtoClient, ServerError, cluster, journal_job_ids
from clusterhelpers import enqueue_jobs as _enqueue
from clusterhelpers import job_states as _states

from spitfire.protocol.messages import ErrorCode

pytestmark = pytest.mark.timeout(300)

#: ``--raft-driver``: the tests marked with it run with pysyncobj ticked by the loop and (``-m slow``,
#: keeping `make test` short; the default driver is the loop) by a thread.
drivers = pytest.mark.parametrize("driver", ["loop", pytest.param("thread", marks=pytest.mark.slow)])
#: Both drivers in `make test`.
both_drivers = pytest.mark.parametrize("driver", ["loop", "thread"])


async def _load_then_kill(member: Member, queue: str) -> tuple[list[str], list[str], list[str], float]:
    """Enqueue 20 jobs on ``member``; a worker takes 8 and acks 5 (3 stay leased to it); SIGKILL
    ``member`` while the worker still holds them. Returns (enqueued ids, acked ids, held ids, when
    killed)."""
    ids = await _enqueue(member, queue, 20)
    worker = await ProtoClient.connect(member.listen)
    try:
        await worker.subscribe([queue], 8)
        jobs = await worker.deliveries(8)
        done = [j.job_id for j in jobs[:5]]
        assert (await worker.ack(*done)).errors == []
        member.kill()
        killed = time.monotonic()
    finally:
        worker.close()
        await asyncio.sleep(0)  # let the transport close
    return ids, done, [j.job_id for j in jobs[5:]], killed


async def _refused(member: Member) -> ServerError:
    client = await ProtoClient.connect(member.listen)
    try:
        with pytest.raises(ServerError) as info:
            await client.enqueue("q", "job")
        return info.value
    finally:
        client.close()


@both_drivers
def test_a_leader_is_elected_followers_refuse_and_every_member_holds_the_jobs(
    tmp_path: Path, driver: str
) -> None:
    with cluster(tmp_path, extra=["--raft-driver", driver]) as c:
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


def _kill_leader_and_measure(c: Cluster, acked: list[str], succeeded: list[str], queue: str) -> float:
    """Enqueue on the leader and let a worker ack some jobs and hold others, SIGKILL the leader,
    time until a new leader acknowledges a write, check every acknowledged job is there (acked ones
    succeeded, held ones still leased to the worker: the new leader continues the leases, and
    delivers those jobs again only if the worker does not come back before they end), restart the
    killed member. Returns the failover time."""
    while True:
        leader = c.leader()
        # Every member up and connected first: a kill must leave a majority.
        c.wait("every member up", lambda leader=leader: all(
            n["role"] != "down" for n in (leader.cluster() or {"nodes": [{"role": "down"}]})["nodes"]
        ))  # fmt: skip
        try:
            ids, done, held_ids, killed = asyncio.run(_load_then_kill(leader, queue))
            break
        except ServerError as exc:  # the leadership moved before the kill (a loaded machine): again
            if exc.code != ErrorCode.NOT_LEADER:
                raise
    acked.extend(ids)
    succeeded.extend(done)
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
    done = set(succeeded)
    assert {i for i, s in states.items() if s == "succeeded"} == done, states
    held = set(held_ids)
    assert all(s == "reserved" for i, s in states.items() if i in held), states
    # Earlier rounds' held jobs stay leased to their (gone) worker until their leases end.
    assert all(s in ("enqueued", "reserved") for i, s in states.items() if i not in done), states
    leader.start()
    return failover


@drivers
def test_the_leader_killed_three_times_loses_no_acknowledged_job(tmp_path: Path, driver: str) -> None:
    with cluster(tmp_path, extra=["--raft-driver", driver]) as c:
        acked: list[str] = []
        succeeded: list[str] = []
        times = [_kill_leader_and_measure(c, acked, succeeded, "kills") for _ in range(3)]
        assert len(succeeded) == 3 * 5
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


@drivers
def test_a_leader_without_a_majority_steps_down_and_refuses(tmp_path: Path, driver: str) -> None:
    with cluster(tmp_path, extra=["--raft-driver", driver]) as c:
        leader = c.leader()
        for m in c.members:
            if m is not leader:
                m.kill()
        # Check-quorum: it stops leading, restarts itself as a follower, then answers NOT_LEADER.
        c.wait("the lone leader steps down", lambda: "restarting as a follower" in leader.log_text())

        banner = f"cluster member {leader.node_id} started"
        c.wait("it is back, listening", lambda: leader.log_text().count(banner) >= 2)

        def refuses() -> ServerError | None:
            return asyncio.run(_refused(leader))

        err = c.wait("the restarted member answers", refuses)
        assert err.code == ErrorCode.NOT_LEADER and err.field is None
        assert (leader.me() or {}).get("role") in ("follower", "candidate")
        assert "restarting as a follower" in leader.log_text()


@pytest.mark.slow
def test_twenty_leader_kills_under_load_report_failover_times(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        acked: list[str] = []
        succeeded: list[str] = []
        times = [_kill_leader_and_measure(c, acked, succeeded, "soak") for _ in range(20)]
        p50, worst = statistics.median(times), max(times)
        print(f"failover over 20 SIGKILLs of the leader: p50 {p50:.3f} s, max {worst:.3f} s")
        assert len(acked) == 20 * 21
        assert worst < WAIT


def test_the_cluster_view_takes_the_token_and_only_get(tmp_path: Path) -> None:
    with cluster(tmp_path, extra=["--auth-token", "s3cret"]) as c:
        m = c.members[0]
        c.wait("a member answers", lambda: m.http_get("/health")[0] == 200)
        status, body = m.http_get("/api/cluster")
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
        request = urllib.request.Request(
            f"http://127.0.0.1:{m.http}/api/cluster", headers={"Authorization": "Bearer s3cret"}
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            view = json.loads(r.read())
        assert view["node"] == m.node_id and len(view["nodes"]) == 3
        post = urllib.request.Request(f"http://127.0.0.1:{m.http}/api/cluster", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(post, timeout=5)
        info.value.close()
        assert info.value.code == 405


def test_a_single_nodes_data_directory_is_refused(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    m = c.members[0]
    (m.data_dir / "queues" / "emails").mkdir(parents=True)
    m.start()
    assert m.proc is not None
    assert m.proc.wait(WAIT) == 1
    assert "holds a single node's queues" in m.log_text()
