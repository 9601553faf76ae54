"""Leases are replicated state: a worker's leases outlive the leader that gave them. The leader
logs each delivery and lease extension (JOBS_LEASED); after it is SIGKILLed the new leader holds
the same leases (same worker id, same attempt, same absolute end), the worker resumes its id on the
new leader (SUBSCRIBE ``resume``) and acknowledges its jobs there, once, without any of them being
delivered again; a lease that nobody resumes ends on its own time and its job is delivered again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from clusterhelpers import Cluster, Member, ProtoClient, cluster

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType

pytestmark = pytest.mark.timeout(300)


def _all_up(c: Cluster) -> Member:
    leader = c.leader()
    c.wait("every member up", lambda: all(
        n["role"] != "down" for n in (leader.cluster() or {"nodes": [{"role": "down"}]})["nodes"]
    ))  # fmt: skip
    return leader


async def _jobs(member: Member, ids: list[str]) -> dict[str, m.JobInfo]:
    client = await ProtoClient.connect(member.listen)
    try:
        return {i: await client.get(i) for i in ids}
    finally:
        client.close()


async def _enqueue(member: Member, queue: str, count: int, timeout: float) -> list[str]:
    client = await ProtoClient.connect(member.listen)
    try:
        return [
            (await client.enqueue(queue, "job", b"\x91\x01", timeout=timeout)).job_id for _ in range(count)
        ]
    finally:
        client.close()


async def _take(member: Member, queue: str, ids: list[str]) -> tuple[str, list[m.Delivery]]:
    """A worker takes the jobs ``ids`` from ``member``, STARTs them, acks the first two and extends
    the others' leases to 600 s; then ``member`` is SIGKILLed. Returns the worker id and the
    deliveries."""
    worker = await ProtoClient.connect(member.listen)
    try:
        wid = await worker.subscribe([queue], len(ids))
        jobs = await worker.deliveries(len(ids))
        worker.send(MessageType.START, m.JobIds([j.job_id for j in jobs]))
        assert (await worker.ack(jobs[0].job_id, jobs[1].job_id)).errors == []
        beat = await worker.call(MessageType.HEARTBEAT, m.Heartbeat(None, 600.0))
        assert beat.extended == len(ids) - 2
        await worker.call(MessageType.PING, m.Ping())  # the heartbeat's record is appended by now
        await asyncio.sleep(0.2)  # a few replication rounds: its entry is committed
        member.kill()
    finally:
        worker.close()
        await asyncio.sleep(0)
    return wid, jobs


def test_a_new_leader_continues_the_leases_and_the_worker_resumes_them(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = _all_up(c)
        ids = asyncio.run(_enqueue(leader, "leases", 6, 30.0))
        wid, jobs = asyncio.run(_take(leader, "leases", ids))
        killed = time.time()
        new = c.leader(among=[x for x in c.members if x is not leader])

        async def resume() -> None:
            before = await _jobs(new, ids)
            acked, held = [j.job_id for j in jobs[:2]], [j.job_id for j in jobs[2:]]
            assert {i: before[i].state for i in acked} == dict.fromkeys(acked, "succeeded")
            for i in held:  # the same lease: worker, attempt, and the extended end
                info = before[i]
                assert (info.state, info.worker, info.attempts) == ("reserved", wid, 1), info
                assert info.lease_until is not None and info.lease_until > killed + 500, info
            worker = await ProtoClient.connect(new.listen)
            try:
                reply = await worker.call(
                    MessageType.SUBSCRIBE, m.Subscribe(["leases"], 4, "back", resume=wid)
                )
                assert reply.worker_id == wid
                with pytest.raises(TimeoutError):  # nothing is delivered again: the leases hold
                    await worker.push(0.5)
                assert (await worker.ack(*held)).errors == []
            finally:
                worker.close()
            after = await _jobs(new, ids)
            assert {(i.state, i.attempts) for i in after.values()} == {("succeeded", 1)}

        asyncio.run(resume())


def test_a_lease_nobody_resumes_ends_on_its_own_time_on_the_new_leader(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = _all_up(c)
        lease = 3.0
        (job_id,) = asyncio.run(_enqueue(leader, "gone", 1, lease))

        async def hold_then_kill() -> float:
            worker = await ProtoClient.connect(leader.listen)
            try:
                await worker.subscribe(["gone"], 1)
                (job,) = await worker.deliveries(1)
                await worker.call(MessageType.HEARTBEAT, m.Heartbeat([job.job_id], lease))
                until = time.time() + lease
                await asyncio.sleep(0.2)
                leader.kill()
                return until
            finally:
                worker.close()

        until = asyncio.run(hold_then_kill())
        new = c.leader(among=[x for x in c.members if x is not leader])

        async def redelivered() -> None:
            other = await ProtoClient.connect(new.listen)
            try:
                await other.subscribe(["gone"], 1)  # a new worker: no resume
                (again,) = await other.deliveries(1, timeout=30)
                assert again.job_id == job_id and again.attempt == 2
                assert time.time() >= until - 0.5  # not before the replicated lease ended
                assert (await other.ack(job_id)).errors == []
            finally:
                other.close()
            info = (await _jobs(new, [job_id]))[job_id]
            assert info.state == "succeeded" and [e.error for e in info.errors] == ["lease expired"]

        asyncio.run(redelivered())
