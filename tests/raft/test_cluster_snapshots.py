"""Raft snapshots with real processes on loopback: a cluster compacts its journals while jobs flow,
a member that was down meanwhile catches up from the leader's snapshot and then leads with every
acknowledged job, and a member survives a SIGKILL while it writes a snapshot and a flipped byte in
its newest snapshot."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from clusterhelpers import WAIT, Cluster, Member, ProtoClient, ServerError, cluster
from clusterhelpers import enqueue_jobs as _enqueue
from clusterhelpers import job_states as _states

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType
from spitfire.raft.compaction import JOURNAL_SEGMENT_SIZE
from spitfire.wal.snapshot import list_snapshots

pytestmark = pytest.mark.timeout(600)

#: 512 bytes of payload (a msgpack bin), so that 50,000 jobs write ~25 MiB of entries.
PAYLOAD = b"\xc5\x02\x00" + bytes(range(256)) * 2
PER_CALL = 500
#: Finished jobs a queue keeps (the rest are forgotten, as in a long-running system): each engine
#: snapshot then holds about this many jobs, whatever went through before.
RETAIN = ["--retain-max-per-queue", "1000"]
#: These tests check snapshots, not failover times: a longer lease keeps a leader through the loop
#: stalls of a shared, loaded machine (a stall past the lease deposes it and cuts its clients).
PATIENT = ["--election-timeout", "600ms"]


def journal_bytes(member: Member) -> int:
    """Bytes the segments of the member's Raft journal take on disk (preallocated: their size)."""
    return sum(p.stat().st_size for p in (member.data_dir / "meta" / "raft" / "wal").glob("*.seg"))


def snapshots_dir(member: Member) -> Path:
    return member.data_dir / "meta" / "raft" / "snapshots"


async def _flow(member: Member, queue: str, total: int, every_call: object = None) -> list[str]:
    """Enqueue ``total`` jobs, PER_CALL at a time, each batch taken and acked by a worker."""
    producer = await ProtoClient.connect(member.listen)
    worker = await ProtoClient.connect(member.listen)
    ids: list[str] = []
    try:
        await worker.subscribe([queue], PER_CALL)
        for _ in range(total // PER_CALL):
            done = await producer.call(
                MessageType.ENQUEUE_MANY, m.EnqueueMany(queue, "job", [PAYLOAD] * PER_CALL)
            )
            ids.extend(done.job_ids)
            jobs = await worker.deliveries(PER_CALL)
            assert (await worker.ack(*[j.job_id for j in jobs])).errors == []
            worker.send(MessageType.CREDIT, m.Credit(PER_CALL))
            worker.flush()
            if callable(every_call):
                every_call()
    finally:
        producer.close()
        worker.close()
        await asyncio.sleep(0)
    return ids


def _flow_on_leader(c: Cluster, queue: str, total: int, every_call: object = None) -> list[str]:
    """`_flow` on whoever leads, in steps of 5,000 jobs: a leader deposed under the load (its loop
    stalled past the lease on this shared machine) cuts its clients, and the flow goes on at the
    next leader. Returns the ids of the jobs of the steps that completed."""
    ids: list[str] = []
    deadline = time.monotonic() + 10 * WAIT
    while len(ids) < total and time.monotonic() < deadline:
        try:
            ids += asyncio.run(_flow(c.leader(), queue, min(5_000, total - len(ids)), every_call))
        except (ServerError, ConnectionError, OSError):
            continue
    return ids


def _caught_up(c: Cluster, member: Member) -> None:
    leader = c.leader()
    commit = c.wait("the leader's commit index", lambda: (leader.me() or {}).get("commit_index"))
    c.wait(
        f"{member.node_id} applies up to {commit}",
        lambda: (member.me() or {}).get("applied_index", 0) >= commit,
    )


def _make_leader(c: Cluster, member: Member) -> None:
    """Kill whichever other member leads, restarting the one killed before, until ``member``
    leads (a bounded number of elections)."""
    for _ in range(12):
        leader = c.leader()
        if leader is member:
            return
        for other in c.members:
            if not other.alive:
                other.start()
                _caught_up(c, other)
        leader.kill()
    raise AssertionError(f"{member.node_id} never won an election; logs:\n{c.logs()}")


@pytest.mark.parametrize("driver", ["loop", pytest.param("thread", marks=pytest.mark.slow)])  # --raft-driver
def test_a_cluster_compacts_under_load_and_a_member_down_catches_up_from_a_snapshot(
    tmp_path: Path, driver: str
) -> None:
    extra = ["--snapshot-every", "2000", *RETAIN, *PATIENT, "--raft-driver", driver]
    with cluster(tmp_path, extra=extra) as c:
        leader = c.leader()
        down, other = [x for x in c.members if x is not leader]
        down.kill()
        peak = {leader.node_id: 0, other.node_id: 0}

        def sample() -> None:
            for x in (leader, other):
                peak[x.node_id] = max(peak[x.node_id], journal_bytes(x))

        started = time.monotonic()
        flowed = _flow_on_leader(c, "flow", 50_000, sample)
        elapsed = time.monotonic() - started
        assert len(flowed) == 50_000
        # ~25 MiB of payloads went through; each journal stayed within a few segments (the one
        # being written, the one prepared next, those the previous snapshot still needs).
        bound = 4 * JOURNAL_SEGMENT_SIZE
        print(f"50,000 jobs in {elapsed:.1f} s; journal peak bytes {peak} (bound {bound})")
        for x in (leader, other):  # the newest two snapshots, and one being written at most
            assert len(list(snapshots_dir(x).iterdir())) <= 3, list(snapshots_dir(x).iterdir())
        assert all(v <= bound for v in peak.values()), peak
        now = c.leader()
        view = {n["id"]: n for n in (now.cluster() or {"nodes": []})["nodes"]}
        assert view[now.node_id]["snapshot_index"] > 0
        assert not (leader.data_dir / "meta" / "raft" / "wal" / "0000000000000000.seg").exists()

        # Jobs left waiting: they must be on whoever leads later.
        waiting = asyncio.run(_enqueue(c.leader(), "waiting", 20))
        down.start()
        _caught_up(c, down)
        assert "installed the leader's raft snapshot" in down.log_text(), down.log_text()[-3000:]

        _make_leader(c, down)
        states = asyncio.run(_states(down, waiting + flowed[-PER_CALL:]))
        assert all(states[i] == "enqueued" for i in waiting), states
        assert all(s == "succeeded" for i, s in states.items() if i not in waiting), states
        more = asyncio.run(_enqueue(down, "waiting", 1))
        assert asyncio.run(_states(down, more)) == {more[0]: "enqueued"}


@pytest.mark.parametrize("driver", ["loop", pytest.param("thread", marks=pytest.mark.slow)])  # --raft-driver
def test_a_member_survives_a_sigkill_during_a_snapshot_write_and_a_flipped_byte(
    tmp_path: Path, driver: str
) -> None:
    extra = ["--snapshot-every", "1000", *RETAIN, *PATIENT, "--raft-driver", driver]
    with cluster(tmp_path, extra=extra) as c:
        leader = c.leader()
        victim = next(x for x in c.members if x is not leader)
        killed_writing = False

        def kill_while_writing() -> None:
            nonlocal killed_writing
            if killed_writing:
                return
            # The next snapshot's ``.tmp`` is written within ~1000 records: watch for it.
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline:
                if any(p.suffix == ".tmp" for p in snapshots_dir(victim).glob("*.tmp")):
                    victim.kill()
                    killed_writing = True
                    return

        flowed = _flow_on_leader(c, "flow", 20_000, kill_while_writing)
        if not killed_writing:  # never caught in the act on this machine: kill it now
            victim.kill()
        victim.start()
        _caught_up(c, victim)
        assert not list(snapshots_dir(victim).glob("*.tmp"))

        _flow_on_leader(c, "more", 5_000)  # another queue: "flow" keeps its last jobs
        _caught_up(c, victim)
        victim.kill()
        snaps = list_snapshots(snapshots_dir(victim))
        assert len(snaps) >= 2, snaps  # the newest two (a third until the older ones are dropped)
        newest = snaps[-1][1]
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0x10
        newest.write_bytes(bytes(data))
        victim.start()
        _caught_up(c, victim)
        assert newest.with_name(newest.name + ".broken").exists()
        _make_leader(c, victim)
        states = asyncio.run(_states(victim, flowed[-PER_CALL:]))
        assert set(states.values()) == {"succeeded"}, states
        print(f"killed while writing a snapshot: {killed_writing}")


def _ack_history(member: Member, total: int) -> None:
    asyncio.run(_flow(member, "history", total))


def _takeover(root: Path, every: str, history: int) -> float | None:
    """Seconds from the SIGKILL of the leader, after ``history`` jobs went through, to the first
    write a new leader acknowledged; None when no new leader served within `WAIT`."""
    with cluster(root, extra=["--snapshot-every", every, *RETAIN]) as c:
        try:
            _flow_on_leader(c, "history", history)
            leader = c.leader()
        except AssertionError:  # no leader served for `WAIT`: each new one deposed while taking over
            print(f"--snapshot-every {every}, {history} jobs: no leader kept serving while they flowed")
            return None
        for x in c.members:
            _caught_up(c, x)
        leader.kill()
        killed = time.monotonic()
        survivors = [x for x in c.members if x is not leader]
        while time.monotonic() - killed < WAIT:
            try:
                new = c.leader(timeout=max(0.1, WAIT - (time.monotonic() - killed)), among=survivors)
                asyncio.run(_enqueue(new, "after", 1))
            except (AssertionError, ServerError, ConnectionError, OSError):
                continue  # deposed while taking over, or stepped down: look again
            took = time.monotonic() - killed
            line = [ln for ln in new.log_text().splitlines() if "leading term" in ln]
            print(f"--snapshot-every {every}, {history} jobs: {took:.3f} s; {line[-1][24:] if line else ''}")
            return took
        print(f"--snapshot-every {every}, {history} jobs: no new leader served within {WAIT:.0f} s")
        return None


@pytest.mark.slow
def test_takeover_time_with_a_long_history_with_and_without_snapshots(tmp_path: Path) -> None:
    """A/B, alternated in one run: without snapshots (the whole log replayed) and with them."""
    results: dict[str, list[float | None]] = {}
    for run, (every, history) in enumerate(
        [("0", 20_000), ("2000", 20_000)] * 2 + [("0", 100_000), ("2000", 100_000)]
    ):
        took = _takeover(tmp_path / f"run{run}", every, history)
        results.setdefault(f"every={every} jobs={history}", []).append(took)
    print(results)
    assert all(t is not None for k, ts in results.items() if "every=2000" in k for t in ts), results
