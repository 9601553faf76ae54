"""Unit and property tests of the index building blocks against simple reference models."""

from __future__ import annotations

import math
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spitfire.index.backoff import retry_delay, validate_backoff
from spitfire.index.history import History
from spitfire.index.idempotency import IdempotencyTable
from spitfire.index.ids import ID_LENGTH, IdGenerator, id_time, is_job_id
from spitfire.index.job import Backoff, BackoffKind, Job, JobState
from spitfire.index.pages import StateList
from spitfire.index.ready import ReadyQueue
from spitfire.index.table import JobTable
from spitfire.index.timers import DeadlineHeap, lease_of, run_at_of


def make(i: int, priority: int = 0, state: JobState = JobState.ENQUEUED, name: str = "h") -> Job:
    return Job(f"{i:024x}", "q", name, b"", state, float(i), priority, seq=i + 1)


# -- ids ------------------------------------------------------------------------------------------------


def test_ids_are_time_ordered_and_unique() -> None:
    gen = IdGenerator(random.Random(1))
    ids = [gen.next(1000.0 + i * 0.0004) for i in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_job_id(i) and len(i) == ID_LENGTH for i in ids)
    assert abs(id_time(ids[0]) - 1000.0) < 0.002


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 5000)), min_size=1, max_size=20),
)
@settings(max_examples=60, deadline=None)
def test_next_many_issues_the_ids_next_would(steps: list[tuple[int, int]]) -> None:
    one, many = IdGenerator(random.Random(7)), IdGenerator(random.Random(7))
    now = 1000.0
    for advance, count in steps:
        now += advance * 0.0007
        expected = [one.next(now) for _ in range(count)]
        assert many.next_many(now, count) == expected
    assert one.last == many.last


def test_ids_never_go_back_when_the_clock_steps_back() -> None:
    gen = IdGenerator()
    a = gen.next(2000.0)
    b = gen.next(1000.0)
    assert b > a


def test_observe_makes_later_ids_greater() -> None:
    gen = IdGenerator()
    seen = IdGenerator().next(5000.0)
    gen.observe(seen)
    assert gen.next(1.0) > seen
    gen.observe("not an id")


def test_ids_within_one_millisecond_count_across_the_cached_digits() -> None:
    gen = IdGenerator(random.Random(2))
    ids = [gen.next(1234.5678) for _ in range(3 * 4096 + 5)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i[:12] for i in ids} == {f"{1234567:012x}"}
    assert [int(i[12:18], 16) for i in ids] == list(range(len(ids)))


def test_ids_roll_into_the_next_millisecond_when_the_counter_is_full() -> None:
    gen = IdGenerator()
    gen.observe(f"{5000:012x}fffffe{0:06x}")
    a, b, c = gen.next(5.0), gen.next(5.0), gen.next(5.0)
    assert a[:18] == f"{5000:012x}ffffff"
    assert b[:18] == f"{5001:012x}000000" and c[:18] == f"{5001:012x}000001"
    assert a < b < c


@given(st.lists(st.floats(min_value=0, max_value=2e9, allow_nan=False), min_size=1, max_size=200))
def test_ids_increase_whatever_the_clock_does(times: list[float]) -> None:
    gen = IdGenerator()
    ids = [gen.next(t) for t in times]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


# -- ready ------------------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(0, 10), st.booleans()), max_size=60))
def test_ready_order_matches_a_sorted_reference(items: list[tuple[int, bool]]) -> None:
    ready = ReadyQueue()
    jobs = [make(i, p) for i, (p, _) in enumerate(items)]
    for job in jobs:
        ready.push(job)
    for job, (_, cancel) in zip(jobs, items, strict=True):
        if cancel:
            job.state = JobState.CANCELLED
            job.seq = -1
    expected = sorted(
        (j for j, (_, c) in zip(jobs, items, strict=True) if not c), key=lambda j: (-j.priority, j.seq)
    )
    out = []
    while (job := ready.pop()) is not None:
        out.append(job)
    assert out == expected
    assert ready.peek() is None


def test_ready_skips_an_entry_of_an_old_incarnation() -> None:
    ready = ReadyQueue()
    job = make(1)
    ready.push(job)
    job.seq = 10  # left ENQUEUED and came back: pushed again with a new seq
    ready.push(job)
    assert ready.pop() is job
    job.state = JobState.RESERVED
    job.seq = 11
    assert ready.pop() is None


# -- deadlines ---------------------------------------------------------------------------------------------


@settings(max_examples=100)
@given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=50), st.floats(0, 100))
def test_deadline_heap_returns_due_live_jobs_in_order(items: list[tuple[float, bool]], now: float) -> None:
    heap = DeadlineHeap(run_at_of)
    jobs = []
    for i, (at, _) in enumerate(items):
        job = make(i, state=JobState.SCHEDULED)
        job.run_at = at
        heap.push(job)
        jobs.append(job)
    for job, (_, dead) in zip(jobs, items, strict=True):
        if dead:
            job.seq = -1
    due = heap.due(now)
    expected = sorted((j for j in jobs if j.seq >= 0 and j.run_at is not None and j.run_at <= now),
                      key=lambda j: (j.run_at, j.seq))  # fmt: skip
    assert due == expected
    rest = [j for j in jobs if j.seq >= 0 and j not in expected]
    nxt = heap.next_deadline()
    assert nxt == (min(j.run_at for j in rest if j.run_at is not None) if rest else None)


def test_lease_extension_supersedes_the_old_entry_and_compacts() -> None:
    heap = DeadlineHeap(lease_of)
    job = make(1, state=JobState.RESERVED)
    for i in range(3000):
        job.lease_until = 10.0 + i
        heap.push(job, live_count=1)
    assert len(heap) < 2100
    assert heap.due(100.0) == []
    assert heap.due(3009.0) == [job]


# -- idempotency ------------------------------------------------------------------------------------------


def test_a_key_is_held_until_released_then_expires_from_the_finish_time() -> None:
    keys = IdempotencyTable(retention=10.0)
    keys.add("a", "1", "h")
    keys.add("b", "2", "h")
    assert keys.get("a", now=1e12) == "1"  # held: the job exists
    assert keys.expire(1e12) == 0 and keys.next_expiry() is None
    keys.release("a", "1", finished_at=100.0, now=105.0)
    assert keys.entry("a") == ("1", "h", 110.0, 5) and keys.next_expiry() == 110.0
    assert keys.get("a", now=109.9) == "1" and keys.get("a", now=110.0) is None
    assert keys.expire(110.0) == 1
    assert "a" not in keys and "b" in keys
    keys.remove("b", "other")
    assert "b" in keys
    keys.remove("b", "2")
    assert "b" not in keys and len(keys) == 0


def test_a_key_released_after_its_window_is_dropped_at_once() -> None:
    keys = IdempotencyTable(retention=10.0)
    keys.add("a", "1", "h")
    keys.release("a", "1", finished_at=0.0, now=10.0)
    assert "a" not in keys and keys.next_expiry() is None


def test_releasing_a_key_that_names_another_job_changes_nothing() -> None:
    keys = IdempotencyTable(retention=10.0)
    keys.add("a", "2", "h")
    keys.release("a", "1", finished_at=0.0, now=1.0)
    assert keys.entry("a") == ("2", "h", math.inf, 0)


def test_key_reused_after_expiry_is_not_dropped_by_the_old_schedule_entry() -> None:
    keys = IdempotencyTable(retention=10.0)
    keys.add("a", "1", "h")
    keys.release("a", "1", finished_at=0.0, now=1.0)
    keys.remove("a", "1")  # gone (as if expired) while its schedule entry is still in the heap
    keys.add("a", "2", "h")
    assert keys.expire(10.0) == 0
    assert keys.items() == [("a", "2", "h", math.inf, 0)]


def test_restore_holds_the_keys_of_loaded_jobs_and_drops_held_keys_of_missing_ones() -> None:
    loaded = {"1"}
    keys = IdempotencyTable(retention=10.0, exists=loaded.__contains__)
    keys.restore("old-format", "1", "h", 5.0)  # written as created_at + retention: job still here
    keys.restore("evicted", "2", "h", 7.0)
    keys.restore("dangling", "3", "h", math.inf)
    assert keys.entry("old-format") == ("1", "h", math.inf, 0)
    assert keys.entry("evicted") == ("2", "h", 7.0, 5) and keys.next_expiry() == 7.0
    assert "dangling" not in keys


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "release", "remove"]), st.sampled_from("abcde"), st.floats(0, 10)),
        max_size=60,
    )
)
def test_keys_match_a_reference_model(ops: list[tuple[str, str, float]]) -> None:
    """Model: a key names its job while held, or until finished_at + retention once released."""
    keys = IdempotencyTable(retention=5.0)
    model: dict[str, tuple[str, float]] = {}  # key -> (job id, expires_at)
    now = 0.0
    serial = 0
    for op, key, step in ops:
        now += step
        keys.expire(now)
        model = {k: v for k, v in model.items() if v[1] > now}
        if op == "add" and key not in model:
            serial += 1
            keys.add(key, str(serial), "h")
            model[key] = (str(serial), math.inf)
        elif op == "release" and key in model and model[key][1] == math.inf:
            finished = now - step / 2  # the job finished a moment ago
            keys.release(key, model[key][0], finished, now)
            if finished + 5.0 > now:
                model[key] = (model[key][0], finished + 5.0)
            else:
                del model[key]
        elif op == "remove" and key in model:
            keys.remove(key, model[key][0])
            del model[key]
        for k in "abcde":
            want = model[k][0] if k in model and model[k][1] > now else None
            assert keys.get(k, now) == want
        assert {k: (j, e) for k, j, _, e, _ in keys.items()} == model


def test_the_key_dict_shrinks_when_most_keys_are_gone() -> None:
    keys = IdempotencyTable(retention=1.0)
    for i in range(20_000):
        keys.add(f"k{i}", str(i), "h")
    full = sys.getsizeof(keys._keys)
    for i in range(19_990):
        keys.release(f"k{i}", str(i), finished_at=0.0, now=5.0)
    assert len(keys) == 10
    assert sys.getsizeof(keys._keys) * 10 < full  # sized for a few thousand, not 20,000


def test_the_job_table_shrinks_when_most_jobs_are_gone() -> None:
    table = JobTable()
    jobs = [make(i) for i in range(20_000)]
    table.add_many(jobs)
    full = sys.getsizeof(table._by_id)
    for job in jobs[10:]:
        table.remove(job)
    assert len(table) == 10 and table.get(jobs[0].id) is jobs[0]
    assert sys.getsizeof(table._by_id) * 10 < full


# -- history ----------------------------------------------------------------------------------------------


def test_history_evicts_by_count_then_age() -> None:
    history = History(JobState.SUCCEEDED, max_count=3, max_age=100.0)
    jobs = [make(i, state=JobState.SUCCEEDED) for i in range(5)]
    for job in jobs:
        job.updated_at = float(job.seq)
        history.push(job)
    assert history.next_expiry(live_count=5) == jobs[0].updated_at  # over the count: due now
    evicted = history.evict(now=10.0, live_count=5)
    assert evicted == jobs[:2]
    assert history.next_expiry(live_count=3) == jobs[2].updated_at + 100.0
    assert history.evict(now=104.5, live_count=3) == jobs[2:4]


def test_history_skips_jobs_that_left_the_state() -> None:
    history = History(JobState.DEAD, max_count=1, max_age=100.0)
    a, b = make(1, state=JobState.DEAD), make(2, state=JobState.DEAD)
    history.push(a)
    history.push(b)
    a.seq = 0
    assert history.evict(now=0.0, live_count=1) == []
    assert len(history) == 1


def test_history_drops_stale_entries_when_they_outnumber_live_ones() -> None:
    history = History(JobState.DEAD, max_count=10, max_age=100.0)
    job = make(1, state=JobState.DEAD)
    for seq in range(1, 5000):  # one job retried and dead again and again
        job.seq = seq
        history.push(job, live_count=1)
    assert len(history) <= 2 * 1024 + 2


def test_only_finished_states_have_a_history() -> None:
    with pytest.raises(ValueError, match="not a finished state"):
        History(JobState.ENQUEUED)


# -- pages ------------------------------------------------------------------------------------------------


@settings(max_examples=100)
@given(st.lists(st.booleans(), max_size=80), st.integers(1, 7), st.booleans())
def test_paging_visits_every_live_job_once(dead: list[bool], limit: int, newest_first: bool) -> None:
    lst = StateList()
    jobs = [make(i) for i in range(len(dead))]
    for job in jobs:
        lst.append(job)
    for job, d in zip(jobs, dead, strict=True):
        if d:
            job.seq = -5
            lst.left()
    live = [j for j in jobs if j.seq > 0]
    expected = list(reversed(live)) if newest_first else live
    seen: list[Job] = []
    cursor = None
    while True:
        page, cursor = lst.page(cursor, limit, newest_first)
        seen.extend(page)
        if cursor is None:
            break
    assert seen == expected


def test_paging_is_stable_under_concurrent_inserts() -> None:
    lst = StateList()
    jobs = [make(i) for i in range(10)]
    for job in jobs:
        lst.append(job)
    page, cursor = lst.page(None, 4)
    assert page == jobs[9:5:-1]
    for i in range(10, 15):
        lst.append(make(i))
    page2, _ = lst.page(cursor, 4)
    assert page2 == jobs[5:1:-1]


def test_state_list_compacts_when_dead_outnumber_live() -> None:
    lst = StateList()
    jobs = [make(i) for i in range(3000)]
    for job in jobs:
        lst.append(job)
    for job in jobs[:2000]:
        job.seq = 0
        lst.left()
    assert len(lst) < 3000
    assert lst.page(None, 5000)[0] == list(reversed(jobs[2000:]))


# -- table -----------------------------------------------------------------------------------------------


def test_table_by_name_newest_first_with_paging() -> None:
    table = JobTable()
    jobs = [make(i, name="a" if i % 2 else "b") for i in range(10)]
    for job in jobs:
        table.add(job)
    a = [j for j in jobs if j.name == "a"]
    assert table.by_name("a", 3) == a[::-1][:3]
    assert table.by_name("a", 10, before=a[2].id) == [a[1], a[0]]
    table.remove(a[4])
    assert a[4] not in table.by_name("a", 10)
    assert table.get(a[4].id) is None and len(table) == 9
    assert table.by_name("zzz", 3) == []


# -- backoff ----------------------------------------------------------------------------------------------


def test_backoff_delays() -> None:
    assert [retry_delay(None, n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert retry_delay(Backoff(cap=5.0), 10) == 5.0
    assert retry_delay(Backoff(BackoffKind.FIXED, base=3.0), 7) == 3.0
    assert retry_delay(Backoff(BackoffKind.LINEAR, base=2.0), 3) == 6.0
    assert retry_delay(Backoff(), 10**9) == 3600.0
    jittered = retry_delay(Backoff(base=8.0, jitter=True), 1, lambda: 0.5)
    assert jittered == 6.0
    assert validate_backoff(Backoff(factor=0.5)) is not None
    assert validate_backoff(Backoff(base=-1)) is not None
    assert validate_backoff(Backoff()) is None
