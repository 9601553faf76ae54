"""The dashboard's engine commands: listings across queues, bulk actions, requeue, possibly aborted
jobs; time is a parameter everywhere (``now``), on every storage backend."""

from __future__ import annotations

import pytest
from engine_harness import T0, Harness, run

from spitfire.index import listing
from spitfire.index.job import JobState
from spitfire.server.building import JobOptions
from spitfire.server.engine import Engine, JobFilter
from spitfire.server.errors import InvalidTransition, ValidationError

S = JobState


async def _fill(e: Engine, n: int, queue: str = "q", name: str = "h", at: float = T0) -> list[str]:
    ids = []
    for i in range(n):
        job, _ = await e.enqueue(queue, name, bytes([i % 256]), now=at + i)
        ids.append(job.id)
    return ids


async def _kill(e: Engine, job_id: str, now: float) -> None:
    """Make a job dead: deliver it (the queue's next in FIFO order) and fail it without retries."""
    (job,) = e.reserve([e.get(job_id).queue], "w", now, limit=1) or [None]
    assert job is not None and job.id == job_id
    await e.fail(job_id, "w", now, "boom", retryable=False)


def _page_all(e: Engine, f: JobFilter, limit: int, newest_first: bool = True) -> list[str]:
    out: list[str] = []
    cursor = None
    for _ in range(1000):
        jobs, cursor = e.list_all(f, cursor, limit, newest_first)
        out += [j.id for j in jobs]
        if cursor is None:
            return out
    raise AssertionError("paging did not end")


@run
async def test_list_across_queues_in_id_order_with_every_filter(harness: Harness) -> None:
    e = await harness.open()
    a = await _fill(e, 5, "qa", "ha", T0)
    b = await _fill(e, 5, "qb", "hb", T0 + 100)
    everything = a + b
    assert _page_all(e, JobFilter(), 3) == everything[::-1]
    assert _page_all(e, JobFilter(), 4, newest_first=False) == everything
    assert _page_all(e, JobFilter(queue="qb"), 2) == b[::-1]
    assert _page_all(e, JobFilter(name="ha"), 2) == a[::-1]
    assert _page_all(e, JobFilter(queue="qa", name="hb"), 2) == []
    assert _page_all(e, JobFilter(queue="nope"), 2) == []
    # Times: after/before are exclusive creation bounds, at millisecond precision.
    assert _page_all(e, JobFilter(after=T0 + 3), 10) == everything[3:][::-1]
    assert _page_all(e, JobFilter(before=T0 + 3), 10) == a[:3][::-1]
    assert _page_all(e, JobFilter(after=a[1], before=b[1]), 10) == everything[2:6][::-1]
    # States, gathered (few) or walked.
    await _kill(e, a[0], T0 + 200)
    await _kill(e, b[0], T0 + 201)
    assert _page_all(e, JobFilter(states=frozenset({S.DEAD})), 1) == [b[0], a[0]]
    assert _page_all(e, JobFilter(states=frozenset({S.DEAD}), queue="qa"), 1) == [a[0]]
    both = frozenset({S.DEAD, S.ENQUEUED})
    assert _page_all(e, JobFilter(states=both, queue="qb"), 2) == b[::-1]
    # q: a job id, an idempotency key or a handler name, combined with the rest.
    assert _page_all(e, JobFilter(q=b[2]), 10) == [b[2]]
    assert _page_all(e, JobFilter(q="hb", states=frozenset({S.ENQUEUED})), 2) == b[1:][::-1]
    keyed, _ = await e.enqueue("qa", "ha", b"", now=T0 + 300, idempotency_key="k-1")
    assert _page_all(e, JobFilter(q="k-1"), 10) == [keyed.id]
    assert _page_all(e, JobFilter(q="k-1", queue="qb"), 10) == []


@run
async def test_pages_do_not_shift_when_jobs_arrive(harness: Harness) -> None:
    e = await harness.open()
    ids = await _fill(e, 10)
    first, cursor = e.list_all(JobFilter(), None, 4)
    assert [j.id for j in first] == ids[::-1][:4] and cursor is not None
    await _fill(e, 5, at=T0 + 50)  # newer: above the first page, never on the next ones
    second, cursor = e.list_all(JobFilter(), cursor, 4)
    assert [j.id for j in second] == ids[::-1][4:8]
    third, cursor = e.list_all(JobFilter(), cursor, 4)
    assert [j.id for j in third] == ids[::-1][8:] and cursor is None


@run
async def test_listing_refuses_bad_arguments_by_name(harness: Harness) -> None:
    e = await harness.open()
    await _fill(e, 1)
    cases = [
        (JobFilter(after="yesterday"), "after"),
        (JobFilter(before=-1.0), "before"),
        (JobFilter(before=float("nan")), "before"),
        (JobFilter(states=frozenset()), "state"),
        (JobFilter(queue=""), "queue"),
    ]
    for f, field in cases:
        with pytest.raises(ValidationError) as info:
            e.list_all(f)
        assert info.value.field == field
    with pytest.raises(ValidationError) as info:
        e.list_all(JobFilter(), "not-a-cursor")
    assert info.value.field == "cursor"
    with pytest.raises(ValidationError) as info:
        e.list_all(JobFilter(), None, 1001)
    assert info.value.field == "limit"


def test_walk_stops_after_its_budget_with_a_cursor() -> None:
    """A page walks at most its budget and says where it stopped; pages go on from there."""
    from spitfire.index.ids import IdGenerator
    from spitfire.index.job import Job

    gen = IdGenerator()
    jobs = [Job(gen.next(T0 + i), "q", "h", b"", S.ENQUEUED, T0 + i) for i in range(100)]
    wanted = {jobs[3].id, jobs[90].id}
    found: list[str] = []
    cursor = None
    for _ in range(100):
        page, cursor = listing.walk(
            jobs, lambda j: True, lambda j: j.id in wanted, None, cursor, 10, True, budget=7
        )
        assert len(page) <= 10
        found += [j.id for j in page]
        if cursor is None:
            break
    assert found == [jobs[90].id, jobs[3].id]


@run
async def test_bulk_over_ids_counts_what_does_not_apply_as_failed(harness: Harness) -> None:
    e = await harness.open()
    ids = await _fill(e, 4)
    await _kill(e, ids[0], T0 + 10)
    res = await e.bulk("retry", T0 + 20, ids=[ids[0], ids[1], "0" * 24, ids[0]])
    assert (res.matched, res.done, res.failed) == (2, 1, 1)
    assert e.get(ids[0]).state is S.ENQUEUED
    res = await e.bulk("cancel", T0 + 21, ids=ids)
    assert (res.matched, res.done, res.failed) == (4, 4, 0)
    res = await e.bulk("delete", T0 + 22, ids=ids[:2])
    assert res.done == 2 and e.stats().total_jobs == 2
    with pytest.raises(ValidationError) as info:
        await e.bulk("explode", T0, ids=ids)  # type: ignore[arg-type]
    assert info.value.field == "action"
    with pytest.raises(ValidationError) as info:
        await e.bulk("retry", T0, ids=[])
    assert info.value.field == "ids"


@run
async def test_bulk_over_a_filter_in_chunks_and_not_over_jobs_it_creates(harness: Harness) -> None:
    e = await harness.open()
    ids = await _fill(e, 25)
    for job_id in ids[:12]:
        await _kill(e, job_id, T0 + 100)
    dead = JobFilter(states=frozenset({S.DEAD}))
    res = await e.bulk("requeue", T0 + 200, filter=JobFilter(), chunk=4)
    assert (res.matched, res.done, res.failed) == (25, 25, 0)  # not the 25 new ones
    assert e.stats().total_jobs == 50
    res = await e.bulk("retry", T0 + 201, filter=dead, chunk=5)
    assert (res.matched, res.done) == (12, 12)
    assert e.list_all(dead) == ([], None)
    # The requeued copies keep queue, name, payload and options under new ids.
    copy = e.list_all(JobFilter(after=ids[-1]), None, 1, newest_first=False)[0][0]
    assert copy.id not in ids and copy.payload == e.get(ids[0]).payload and copy.name == "h"


@run
async def test_bulk_cancel_and_delete_name_the_workers_to_tell(harness: Harness) -> None:
    e = await harness.open()
    ids = await _fill(e, 3)
    held = e.reserve(["q"], "w1", T0 + 10, limit=2)
    res = await e.bulk("cancel", T0 + 11, filter=JobFilter(queue="q"))
    assert res.revoked == {"w1": sorted(j.id for j in held)}
    assert e.held_by("w1") == []
    res = await e.bulk("delete", T0 + 12, ids=ids)
    assert res.done == 3 and res.revoked == {}


@run
async def test_bulk_is_durable_chunk_by_chunk(harness: Harness) -> None:
    e = await harness.open()
    ids = await _fill(e, 30)
    await e.bulk("cancel", T0 + 50, filter=JobFilter(), chunk=7)
    e = await harness.restart(T0 + 60)
    assert all(e.get(i).state is S.CANCELLED for i in ids)


@run
async def test_requeue_makes_a_new_job_with_the_same_options(harness: Harness) -> None:
    e = await harness.open()
    opts = JobOptions(priority=7, max_attempts=9, timeout=12.0, headers={"a": "b"})
    job, _ = await e.enqueue("q", "h", b"payload", now=T0, options=opts, idempotency_key="key")
    new = await e.requeue(job.id, T0 + 5)
    assert new.id != job.id and new.id > job.id and new.state is S.ENQUEUED
    assert (new.queue, new.name, new.payload, new.priority, new.max_attempts, new.timeout, new.headers) == (
        "q", "h", b"payload", 7, 9, 12.0, {"a": "b"},
    )  # fmt: skip
    assert new.idempotency_key is None and e.get(job.id).state is S.ENQUEUED
    e = await harness.restart(T0 + 6)
    assert e.get(new.id).payload == b"payload"
    with pytest.raises(InvalidTransition):
        await e.retry(new.id, T0 + 7)


@run
async def test_possibly_aborted_lists_leases_of_workers_gone_or_quiet(harness: Harness) -> None:
    e = await harness.open()
    await _fill(e, 4)
    e.reserve(["q"], "alive", T0 + 10, limit=1)
    quiet = e.reserve(["q"], "quiet", T0 + 11, limit=1)
    gone = e.reserve(["q"], "gone", T0 + 12, limit=2)  # not connected any more
    seen = {"alive": T0 + 29.0, "quiet": T0 + 15.5}
    # At T0 + 30 with 15 s of silence allowed: "quiet" is still within it, "gone" is not connected.
    assert [j.id for j in e.possibly_aborted(seen, T0 + 30, 15.0)] == [j.id for j in gone]
    # A second later "quiet" has been silent for 15.5 s: its job too, oldest lease first.
    got = [j.id for j in e.possibly_aborted(seen, T0 + 31, 15.0)]
    assert got == [quiet[0].id, *(j.id for j in gone)]
    assert len(e.possibly_aborted(seen, T0 + 31, 15.0, limit=1)) == 1
    # Once a job is acked it is no longer held by anyone.
    await e.ack(quiet[0].id, "quiet", T0 + 32)
    assert [j.id for j in e.possibly_aborted(seen, T0 + 33, 15.0)] == [j.id for j in gone]


@pytest.mark.parametrize("seed", range(5))
def test_the_table_keeps_id_order_when_commits_land_out_of_order(seed: int) -> None:
    """Jobs of several queues applied out of id order (one queue's commit lands first), alone or as
    batches: the all-jobs and by-name lists the listings bisect stay in id order."""
    import random

    from spitfire.index.ids import IdGenerator
    from spitfire.index.job import Job
    from spitfire.index.table import JobTable

    rng = random.Random(seed)
    gen = IdGenerator(rng)
    ids = [gen.next(T0 + i / 1000) for i in range(3000)]
    jobs = [Job(i, "q", rng.choice("abc"), b"", S.ENQUEUED, T0) for i in ids]
    runs: list[list[Job]] = []
    i = 0
    while i < len(jobs):
        n = rng.randint(1, 40)
        runs.append(jobs[i : i + n])
        i += n
    for k in range(0, len(runs) - 1, 2):
        if rng.random() < 0.5:
            runs[k], runs[k + 1] = runs[k + 1], runs[k]
    table = JobTable()
    for run_ in runs:
        if len(run_) == 1 or rng.random() < 0.5:
            for job in run_:
                table.add(job)
        else:
            table.add_many(run_)
    assert [j.id for j in table.all_in_order()] == ids
    for name in "abc":
        assert [j.id for j in table.name_in_order(name)] == [j.id for j in jobs if j.name == name]


@run
async def test_after_a_restart_listings_across_queues_are_in_id_order(harness: Harness) -> None:
    """Recovery loads queue by queue; the listings still see every job in creation order."""
    e = await harness.open()
    ids = []
    for i in range(30):
        job, _ = await e.enqueue(f"q{i % 3}", "h", b"", now=T0 + i)
        ids.append(job.id)
    e = await harness.restart(T0 + 100)
    assert _page_all(e, JobFilter(), 7) == ids[::-1]
    assert _page_all(e, JobFilter(name="h"), 7, newest_first=False) == ids
    more, _ = await e.enqueue("q1", "h", b"", now=T0 + 101)
    assert e.list_all(JobFilter(), None, 1)[0] == [more]
