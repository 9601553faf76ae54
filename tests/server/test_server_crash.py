"""SIGKILL the server under producer load, again and again: no acknowledged job is ever lost.

Each round starts the server on the same data dir, checks that the jobs acknowledged in the
previous round (and a sample of older ones) exist, then runs a producer (single enqueues with 64 in
flight plus batches) and SIGKILLs the server at a random moment. At the end every acknowledged job
exists and a worker processes them all.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import pytest
from protoclient import ProtoClient, ServerProcess, run

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType

QUEUE = "crash"
IN_FLIGHT = 64


async def _check_exist(c: ProtoClient, job_ids: list[str]) -> None:
    """Every id names a job (GETs pipelined in chunks)."""
    for start in range(0, len(job_ids), 2000):
        chunk = job_ids[start : start + 2000]
        answers = await asyncio.gather(*(c.start(MessageType.GET, m.JobRef(j)) for j in chunk))
        missing = [j for j, a in zip(chunk, answers, strict=True) if a.type is not MessageType.JOB]
        assert not missing, f"{len(missing)} acknowledged jobs lost, e.g. {missing[:3]}"


async def _produce(c: ProtoClient, acked: list[str], lane: int) -> None:
    """Enqueue until the connection dies; record what the server acknowledged."""
    n = 0
    while True:
        n += 1
        if lane == 0 and n % 4 == 0:
            msg: m.Enqueue | m.EnqueueMany = m.EnqueueMany(QUEUE, "batch", [b"\x01" * 40] * 50)
            mtype = MessageType.ENQUEUE_MANY
        else:
            msg, mtype = m.Enqueue(QUEUE, "single", b"\x02" * 100), MessageType.ENQUEUE
        try:
            r = await c.start(mtype, msg)
        except ConnectionError:
            return
        if r.type is MessageType.ENQUEUED:
            acked.append(r.message.job_id)
        elif r.type is MessageType.ENQUEUED_MANY:
            acked.extend(r.message.job_ids)
        else:
            raise AssertionError(f"unexpected answer {r}")


async def _round(srv: ServerProcess, acked: list[str], checked: int, rng: random.Random) -> None:
    c = await ProtoClient.connect(srv.port)
    # What the last round acknowledged, plus a sample of older rounds (all are checked at the end).
    older = rng.sample(acked[:checked], min(checked, 2000))
    await _check_exist(c, acked[checked:] + older)
    loop = asyncio.get_running_loop()
    loop.call_later(rng.uniform(0.05, 0.3), os.kill, srv.pid, signal.SIGKILL)
    await asyncio.gather(*(_produce(c, acked, lane) for lane in range(IN_FLIGHT)))
    await c.closed.wait()


async def _drain(srv: ServerProcess, acked: list[str]) -> None:
    """A worker runs every job, and every acknowledged job is among them."""
    c = await ProtoClient.connect(srv.port)
    await _check_exist(c, acked)
    total = (await c.stats(QUEUE)).queues[0].counts["enqueued"]
    w = await ProtoClient.connect(srv.port)
    await w.subscribe([QUEUE], 1000)
    ran: set[str] = set()
    while len(ran) < total:
        r = await w.push()
        assert r.type is MessageType.DELIVER
        ids = [j.job_id for j in r.message.jobs]
        assert (await w.ack(*ids)).errors == []
        w.send(MessageType.CREDIT, m.Credit(len(ids)))
        ran.update(ids)
    assert ran >= set(acked)
    # Succeeded jobs leave history past 10,000 per queue, so count what is left to run instead.
    counts = (await c.stats(QUEUE)).queues[0].counts
    assert counts["enqueued"] == counts["reserved"] == counts["running"] == 0, counts
    c.close()
    w.close()


def _crash_loop(tmp_path: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    data = tmp_path / "data"
    acked: list[str] = []
    checked = 0
    for _ in range(kills):
        srv = ServerProcess(data)
        try:
            srv.start()
            before = len(acked)
            run(_round(srv, acked, checked, rng))
            checked = before
            assert srv.proc is not None and srv.proc.wait(30) == -signal.SIGKILL
        finally:
            srv.kill()
    assert acked, "the producer never got an answer"
    srv = ServerProcess(data)
    try:
        srv.start()
        run(_drain(srv, acked))
        assert srv.terminate() == 0
        assert "Traceback" not in srv.log()
    finally:
        srv.kill()


def test_sigkill_under_load_loses_no_acknowledged_job(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=10, seed=1)


@pytest.mark.slow
def test_sigkill_under_load_many_times(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=60, seed=2)
