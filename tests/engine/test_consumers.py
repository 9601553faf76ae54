"""Consumers (server/consumers.py): pop (at-most-once), claim / pending / ack (at-least-once), counts
and waiting for a ready job, on both storage backends and across restarts."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from engine_harness import T0, Harness, run

from spitfire.index.job import JobState
from spitfire.server import consumers as consumers_module
from spitfire.server.building import JobOptions
from spitfire.server.consumers import Consumers
from spitfire.server.engine import Engine
from spitfire.server.errors import ValidationError

_enc = msgspec.msgpack.encode


class Clock:
    """A settable clock (epoch seconds) for the consumers."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _open(harness: Harness, clock: Clock) -> tuple[Engine, Consumers]:
    engine = await harness.open(clock.now)
    return engine, Consumers(engine, clock)


@run
async def test_pop_takes_by_priority_then_fifo_and_finishes_the_jobs_for_good(harness: Harness) -> None:
    clock = Clock()
    engine, consumers = await _open(harness, clock)
    jobs, waiting = await consumers.push("q", [("q", _enc(i)) for i in range(3)])
    assert waiting == 3 and [j.state for j in jobs] == [JobState.ENQUEUED] * 3
    urgent, _ = await engine.enqueue("q", "q", _enc("urgent"), now=T0, options=JobOptions(priority=5))
    popped = await consumers.pop(["q"], 2, "pop")
    assert [j.id for j in popped] == [urgent.id, jobs[0].id]
    assert all(engine.get(j.id).state is JobState.SUCCEEDED for j in popped)
    assert consumers.waiting("q") == 2 and engine.held_by("pop") == []
    # At most once: a popped job stays done after a restart; the others are still there.
    engine = await harness.restart(T0 + 1)
    consumers = Consumers(engine, clock)
    assert engine.get(popped[1].id).state is JobState.SUCCEEDED
    assert [j.id for j in await consumers.pop(["q"], 10, "pop")] == [jobs[1].id, jobs[2].id]
    assert await consumers.pop(["q"], 1, "pop") == []


@run
async def test_push_names_runs_of_handlers_and_counts_waiting_jobs(harness: Harness) -> None:
    clock = Clock()
    _engine, consumers = await _open(harness, clock)
    jobs, waiting = await consumers.push("q", [("a", b"\x01"), ("a", b"\x02"), ("b", b"\x03")])
    assert waiting == 3 and [j.name for j in jobs] == ["a", "a", "b"]
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    counts = consumers.counts("q")
    assert counts is not None and counts["waiting"] == 3 and counts["total"] == 3
    assert consumers.counts("nothing-here") is None and consumers.waiting("nothing-here") == 0


@pytest.mark.parametrize(
    ("queue", "jobs", "field"),
    [
        ("bad name", [("n", b"\x01")], "queue"),
        ("q", [], "values"),
        ("q", [("a", b"\x01"), ("", b"\x02")], "name"),
    ],
)
@run
async def test_a_bad_push_writes_nothing(
    harness: Harness, queue: str, jobs: list[tuple[str, bytes]], field: str
) -> None:
    engine, consumers = await _open(harness, Clock())
    with pytest.raises(ValidationError) as caught:
        await consumers.push(queue, jobs)
    assert caught.value.field == field
    assert engine.stats().total_jobs == 0


@run
async def test_claim_leases_to_the_holder_and_ack_acts_for_it(harness: Harness) -> None:
    clock = Clock()
    engine, consumers = await _open(harness, clock)
    jobs, _ = await consumers.push("q", [("q", _enc(i)) for i in range(4)])
    first = await consumers.claim(["q"], 2, "redis:g/c1")
    second = await consumers.claim(["q"], 1, "redis:other/c2")
    assert [j.id for j in first] == [jobs[0].id, jobs[1].id] and second[0].id == jobs[2].id
    assert all(engine.get(j.id).state is JobState.RUNNING for j in first)
    assert [j.id for j in consumers.pending("q", "redis:g/c1")] == [jobs[0].id, jobs[1].id]
    assert [j.id for j in consumers.pending("q", "redis:g/c1", after=jobs[0].id)] == [jobs[1].id]
    assert consumers.pending("other", "redis:g/c1") == []
    counts = consumers.counts("q")
    assert counts is not None and counts["claimed"] == 3 and counts["waiting"] == 1
    # Only the group's holders, only this queue, each id once; unknown ids count 0.
    ids = [jobs[0].id, jobs[0].id, jobs[2].id, jobs[3].id, "nope"]
    assert await consumers.ack("q", ids, "redis:g/") == 1
    assert await consumers.ack("elsewhere", [jobs[1].id], "redis:g/") == 0
    assert engine.get(jobs[0].id).state is JobState.SUCCEEDED
    assert engine.get(jobs[2].id).state is JobState.RUNNING
    assert await consumers.ack("q", [jobs[0].id], "redis:g/") == 0  # acked already


@run
async def test_a_claim_is_not_logged_and_an_expired_one_is_delivered_again(harness: Harness) -> None:
    clock = Clock()
    engine, consumers = await _open(harness, clock)
    (job,), _ = await consumers.push("q", [("q", b"\x01")])
    await consumers.claim(["q"], 1, "redis:g/c")
    clock.now = T0 + 3600
    await engine.tick(clock.now)  # the lease (60 s) ran out: back in the queue, attempt counted
    assert engine.get(job.id).state is JobState.ENQUEUED and engine.get(job.id).attempts == 1
    assert await consumers.ack("q", [job.id], "redis:g/") == 0
    again = await consumers.claim(["q"], 1, "redis:g/c2")
    assert [j.id for j in again] == [job.id]
    engine = await harness.restart(clock.now + 1)  # the claim was never logged: ready again
    assert engine.get(job.id).state is JobState.ENQUEUED


@run
async def test_a_waiting_pop_is_woken_by_a_push_and_a_cancelled_one_leaves_nothing(harness: Harness) -> None:
    clock = Clock()
    _engine, consumers = await _open(harness, clock)
    waiter = asyncio.ensure_future(consumers.pop(["a", "b"], 1, "pop", wait=30.0))
    for _ in range(100):
        if consumers.waiters:
            break
        await asyncio.sleep(0)
    assert consumers.waiters == 2  # one wait on each queue
    (job,), _ = await consumers.push("b", [("b", b"\x01")])
    popped = await asyncio.wait_for(waiter, 10)
    assert [j.id for j in popped] == [job.id] and consumers.waiters == 0
    gone = asyncio.ensure_future(consumers.pop(["a"], 1, "pop", wait=30.0))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert consumers.waiters == 0
    await consumers.push("a", [("a", b"\x02")])
    assert consumers.waiting("a") == 1  # the cancelled pop took nothing
    assert await consumers.pop(["a"], 1, "pop", wait=0.01) != []


@run
async def test_close_ends_every_wait(harness: Harness) -> None:
    _engine, consumers = await _open(harness, Clock())
    waiters = [
        asyncio.ensure_future(consumers.claim(["q"], 1, f"redis:g/{i}", wait=float("inf"))) for i in range(3)
    ]
    await asyncio.sleep(0)
    consumers.close()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == [[], [], []]
    assert await consumers.pop(["q"], 1, "pop", wait=30.0) == []  # closed: no new waits


@pytest.mark.parametrize(
    ("queues", "limit", "holder", "field"),
    [
        ([], 1, "h", "queue"),
        (["bad name"], 1, "h", "queue"),
        (["q"], 0, "h", "count"),
        (["q"], 1001, "h", "count"),
        (["q"], 1, "", "consumer"),
    ],
)
@run
async def test_bad_takes_are_refused(
    harness: Harness, queues: list[str], limit: int, holder: str, field: str
) -> None:
    _, consumers = await _open(harness, Clock())
    for take in (consumers.pop, consumers.claim):
        with pytest.raises(ValidationError) as caught:
            await take(queues, limit, holder)
        assert caught.value.field == field


@run
async def test_concurrent_pushes_each_count_the_jobs_before_them(harness: Harness) -> None:
    _, consumers = await _open(harness, Clock())
    pushes = [consumers.push("fresh", [("fresh", b"\x01")] * size) for size in (1, 2, 3)]
    results = await asyncio.gather(*pushes)
    assert [waiting for _, waiting in results] == [1, 3, 6]
    assert consumers.waiting("fresh") == 6 and consumers._pushing == {}


@run
async def test_one_take_holds_at_most_max_take_bytes_but_always_one_job(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, consumers = await _open(harness, Clock())
    big = b"\xc4" + b"x" * 1000  # (not valid msgpack, and it need not be)
    await consumers.push("big", [("big", big)] * 40)
    monkeypatch.setattr(consumers_module, "MAX_TAKE_BYTES", 10_000)
    popped = await consumers.pop(["big"], 1000, "pop")
    claimed = await consumers.claim(["big"], 1000, "redis:g/c")
    assert len(popped) == 10 and len(claimed) == 10  # 10 x 1001 bytes reach the budget
    monkeypatch.setattr(consumers_module, "MAX_TAKE_BYTES", 500)
    assert len(await consumers.pop(["big"], 1000, "pop")) == 1  # one job over the budget comes alone
    assert consumers.waiting("big") == 19
