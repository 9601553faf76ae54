"""QueueIndex: transitions keep every structure and count consistent (property test vs a model)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spitfire.index.history import Retention
from spitfire.index.job import Job, JobState
from spitfire.index.queue import QueueIndex
from spitfire.index.table import JobTable

S = JobState


def new_index() -> QueueIndex:
    retention = Retention(succeeded=50.0, dead=50.0, cancelled=50.0, max_per_state=2, keys=10.0)
    return QueueIndex("q", JobTable(), retention=retention)


def job(i: int, state: JobState = S.ENQUEUED, priority: int = 0, key: str | None = None) -> Job:
    return Job(f"{i:024x}", "q", "h", b"x" * (i % 5), state, 0.0, priority, idempotency_key=key)


def test_counts_pages_and_ready_follow_transitions() -> None:
    index = new_index()
    a, b, c = job(1), job(2, priority=5), job(3, S.SCHEDULED)
    c.run_at = 10.0
    for j in (a, b, c):
        index.add(j)
    assert index.counts[S.ENQUEUED] == 2 and index.counts[S.SCHEDULED] == 1
    assert index.pop_ready() is b
    b.lease_until = 5.0
    index.move(b, S.RESERVED)
    assert index.expired(4.0) == [] and index.expired(5.0) == [b]
    assert index.due(9.0) == [] and index.due(10.0) == [c]
    assert index.page(S.ENQUEUED, None, 10)[0] == [a]
    assert index.next_deadline() is None
    index.remove(a, forget_key=True)
    assert index.pop_ready() is None and index.total == 2 and not index.contains(a)


def test_history_eviction_keeps_the_key() -> None:
    index = new_index()
    jobs = [job(i, key=f"k{i}") for i in range(4)]
    for j in jobs:
        index.add(j)
        j.updated_at = 1.0
        index.move(j, S.SUCCEEDED)
    assert index.evict(2.0) == jobs[:2]
    assert index.table.get(jobs[0].id) is None
    assert index.keys.get("k0") == jobs[0].id
    assert index.evict(51.0) == jobs[2:]
    assert index.total == 0


states = st.sampled_from(list(JobState))


PENDING = {S.SCHEDULED, S.ENQUEUED, S.RESERVED, S.RUNNING, S.RETRYING}


@settings(max_examples=80)
@given(st.lists(st.tuples(st.integers(0, 7), states), max_size=60), st.integers(0, 5))
def test_counts_and_pages_match_a_reference_model(moves: list[tuple[int, JobState]], batch: int) -> None:
    index = new_index()
    # A batch added at once (enqueue_many) first; its jobs are ids 100.. and never move.
    added = [job(100 + i, S.ENQUEUED if i % 2 else S.SCHEDULED) for i in range(batch)]
    for j in added:
        j.run_at = None if j.state is S.ENQUEUED else 5.0
    index.add_many(added)
    batch_bytes = sum((100 + i) % 5 for i in range(batch))
    model: dict[int, JobState] = {}
    jobs: dict[int, Job] = {}
    for i, state in moves:
        if i not in jobs:
            jobs[i] = j = job(i)
            index.add(j)
            model[i] = S.ENQUEUED
        elif state is S.CANCELLED and i % 3 == 0:
            index.remove(jobs.pop(i), forget_key=True)
            del model[i]
            continue
        j = jobs[i]
        j.run_at = 1.0
        j.lease_until = 1.0
        index.move(j, state)
        model[i] = state
    pending = [i for i, m in model.items() if m in PENDING]
    assert index.pending == len(pending) + batch
    assert index.pending_bytes == sum(i % 5 for i in pending) + batch_bytes
    assert (index.table.pending_jobs, index.table.pending_bytes) == (index.pending, index.pending_bytes)
    for s in JobState:
        want = sorted(i for i, m in model.items() if m is s)
        want_batch = sum(1 for i in range(batch) if (S.ENQUEUED if i % 2 else S.SCHEDULED) is s)
        assert index.counts[s] == len(want) + want_batch
        got, _ = index.page(s, None, 100, newest_first=False)
        assert sorted(int(j.id, 16) for j in got if int(j.id, 16) < 100) == want
    listed, count = index.jobs_view()
    live = index.live_jobs(listed, 0, count)
    assert live == [j for j in listed[:count] if index.contains(j)]
    assert sorted(int(j.id, 16) for j in live) == sorted([*model, *range(100, 100 + batch)])
