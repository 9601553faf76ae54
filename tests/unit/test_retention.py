"""Retention of finished jobs and the life of idempotency keys (QueueIndex), time as a parameter.

PROTOCOL.md (ENQUEUE ``idempotency_key``): while a job with the key exists in the queue, and for 24 h
after it finished, enqueueing again returns that job. Deleting the job forgets the key.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spitfire.index.history import (
    DEFAULT_RETAIN_DEAD,
    DEFAULT_RETAIN_MAX_PER_STATE,
    DEFAULT_RETAIN_SUCCEEDED,
    Retention,
)
from spitfire.index.idempotency import DEFAULT_RETENTION
from spitfire.index.job import Job, JobState
from spitfire.index.queue import QueueIndex
from spitfire.index.table import JobTable

S = JobState
HOUR = 3600.0
FINISHED = (S.SUCCEEDED, S.DEAD, S.CANCELLED)


def new_job(i: int, now: float, key: str | None = None) -> Job:
    return Job(f"{i:024x}", "q", "h", b"", S.ENQUEUED, now, idempotency_key=key, updated_at=now)


def finish(index: QueueIndex, job: Job, state: JobState, now: float) -> None:
    job.updated_at = now  # what the engine's transition does
    index.move(job, state)


def tick(index: QueueIndex, now: float) -> list[Job]:
    """What Engine.tick does with retention: evict, then expire keys."""
    evicted = index.evict(now)
    index.keys.expire(now)
    return evicted


def dedupes(index: QueueIndex, key: str, job: Job, now: float) -> bool:
    """The engine's check (Engine._existing): the entry names the job and has not expired."""
    entry = index.keys.entry(key)
    return entry is not None and entry[0] == job.id and not entry[2] <= now


def test_defaults_are_the_documented_ones() -> None:
    r = Retention()
    assert (r.succeeded, r.dead, r.max_per_state, r.keys) == (24 * HOUR, 7 * 24 * HOUR, 100_000, 24 * HOUR)
    assert (r.succeeded, r.dead) == (DEFAULT_RETAIN_SUCCEEDED, DEFAULT_RETAIN_DEAD)
    assert DEFAULT_RETAIN_MAX_PER_STATE == 100_000 and DEFAULT_RETENTION == 24 * HOUR


def test_a_job_pending_for_48_hours_still_deduplicates() -> None:
    index = QueueIndex("q", JobTable())
    job = new_job(1, 0.0, key="k")
    index.add(job)
    for now in (HOUR, 24 * HOUR, 24 * HOUR + 1, 48 * HOUR):
        assert tick(index, now) == []
        assert dedupes(index, "k", job, now)


@pytest.mark.parametrize("state", FINISHED)
def test_a_finished_job_deduplicates_for_24_hours_after_it_finished_then_not(state: JobState) -> None:
    # Retention forgets the finished job at once (count 0): the key alone carries the window.
    index = QueueIndex("q", JobTable(), retention=Retention(max_per_state=0))
    job = new_job(1, 0.0, key="k")
    index.add(job)
    finished_at = 30 * HOUR  # pending for longer than the key window first
    finish(index, job, state, finished_at)
    assert tick(index, finished_at + 1) == [job] and not index.contains(job)
    assert dedupes(index, "k", job, finished_at + 1)
    assert dedupes(index, "k", job, finished_at + 24 * HOUR - 0.001)
    tick(index, finished_at + 24 * HOUR - 0.001)
    assert "k" in index.keys
    assert not dedupes(index, "k", job, finished_at + 24 * HOUR)
    tick(index, finished_at + 24 * HOUR)
    assert "k" not in index.keys and len(index.keys) == 0


def test_with_the_defaults_a_succeeded_job_and_its_key_go_24_hours_after_it_finished() -> None:
    index = QueueIndex("q", JobTable())
    job = new_job(1, 0.0, key="k")
    index.add(job)
    finish(index, job, S.SUCCEEDED, 10.0)
    assert index.next_deadline() == 10.0 + 24 * HOUR
    assert tick(index, 10.0 + 24 * HOUR - 1) == [] and dedupes(index, "k", job, 10.0 + 24 * HOUR - 1)
    assert tick(index, 10.0 + 24 * HOUR) == [job]
    assert "k" not in index.keys and index.total == 0


def test_a_dead_job_kept_for_7_days_deduplicates_while_it_exists() -> None:
    index = QueueIndex("q", JobTable())
    job = new_job(1, 0.0, key="k")
    index.add(job)
    finish(index, job, S.DEAD, 0.0)
    assert tick(index, 6 * 24 * HOUR) == [] and dedupes(index, "k", job, 6 * 24 * HOUR)
    assert tick(index, 7 * 24 * HOUR) == [job]
    assert "k" not in index.keys  # it finished more than 24 h ago


def test_a_retried_dead_job_holds_its_key_again() -> None:
    index = QueueIndex("q", JobTable(), retention=Retention(dead=HOUR))
    job = new_job(1, 0.0, key="k")
    index.add(job)
    finish(index, job, S.DEAD, 0.0)
    job.updated_at = 10.0
    index.move(job, S.ENQUEUED)  # a user retried it before retention forgot it
    assert tick(index, 100 * HOUR) == [] and dedupes(index, "k", job, 100 * HOUR)


def test_deleting_a_job_forgets_its_key() -> None:
    index = QueueIndex("q", JobTable())
    job = new_job(1, 0.0, key="k")
    index.add(job)
    finish(index, job, S.SUCCEEDED, 1.0)
    index.remove(job, forget_key=True)
    assert "k" not in index.keys and index.total == 0


def test_each_finished_state_has_its_own_age() -> None:
    retention = Retention(succeeded=10.0, dead=20.0, cancelled=30.0)
    index = QueueIndex("q", JobTable(), retention=retention)
    jobs = {state: new_job(i, 0.0) for i, state in enumerate(FINISHED)}
    for state, job in jobs.items():
        index.add(job)
        finish(index, job, state, 0.0)
    assert index.next_deadline() == 10.0
    assert tick(index, 10.0) == [jobs[S.SUCCEEDED]]
    assert index.next_deadline() == 20.0
    assert tick(index, 20.0) == [jobs[S.DEAD]]
    assert tick(index, 29.9) == []
    assert tick(index, 30.0) == [jobs[S.CANCELLED]]
    assert index.total == 0 and index.next_deadline() is None


def test_the_count_limit_applies_to_each_finished_state_separately() -> None:
    index = QueueIndex("q", JobTable(), retention=Retention(max_per_state=2))
    by_state: dict[JobState, list[Job]] = {state: [] for state in FINISHED}
    serial = 0
    for t in range(4):
        for state in FINISHED:
            serial += 1
            job = new_job(serial, 0.0)
            index.add(job)
            finish(index, job, state, float(t))
            by_state[state].append(job)
    assert index.next_deadline() == 0.0  # over the limit: due at once
    evicted = tick(index, 5.0)
    assert sorted(j.id for j in evicted) == sorted(j.id for s in FINISHED for j in by_state[s][:2])
    for state in FINISHED:
        assert index.count(state) == 2
        assert index.page(state, None, 10, newest_first=False)[0] == by_state[state][2:]


def test_retention_is_validated() -> None:
    with pytest.raises(ValueError, match=r"Retention\.dead"):
        Retention(dead=-1.0)
    with pytest.raises(ValueError, match=r"Retention\.succeeded"):
        Retention(succeeded=math.inf)
    with pytest.raises(ValueError, match=r"Retention\.keys"):
        Retention(keys=0.0)
    with pytest.raises(ValueError, match=r"Retention\.max_per_state"):
        Retention(max_per_state=-1)


def test_evicting_everything_leaves_the_structures_small() -> None:
    """A burst of a million finished jobs must not pin its memory once retention forgot them."""
    table = JobTable()
    index = QueueIndex("q", table, retention=Retention(dead=1.0, max_per_state=10))
    n = 20_000
    for i in range(n):
        job = new_job(i, 0.0, key=f"k{i}")
        index.add(job)
        finish(index, job, S.DEAD, 0.0)
    tick(index, 100.0)  # the jobs age out (1 s); their keys stay for the 24 h key window
    assert index.total == 0 and len(table) == 0
    assert len(index.history(S.DEAD)) == 0
    assert len(index.states[S.DEAD]) < 2 * 1024 + 2
    _, count = index.jobs_view()
    assert count < 2 * 1024 + 2
    assert len(index.keys) == n  # keys outlive the jobs for their window...
    tick(index, 24 * HOUR)
    assert len(index.keys) == 0  # ...then go


# -- a reference model ----------------------------------------------------------------------------------

RET = Retention(succeeded=5.0, dead=9.0, cancelled=7.0, max_per_state=2, keys=6.0)
AGE = {S.SUCCEEDED: RET.succeeded, S.DEAD: RET.dead, S.CANCELLED: RET.cancelled}

ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "finish", "finish", "tick", "tick", "retry", "delete"]),
        st.integers(0, 5),  # which job (and key) the operation is about
        st.sampled_from(FINISHED),
        st.floats(0.0, 4.0),  # how much time passes first
    ),
    min_size=5,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_retention_and_keys_match_a_reference_model(steps: list[tuple[str, int, JobState, float]]) -> None:
    index = QueueIndex("q", JobTable(), retention=RET)
    jobs: dict[int, Job] = {}  # slot -> the live job of that slot
    finished: dict[int, tuple[JobState, float, int]] = {}  # slot -> (state, at, order)
    keys: dict[str, tuple[str, float]] = {}  # key -> (job id, expires_at)
    now, serial, order = 0.0, 0, 0
    for op, slot, state, step in steps:
        now += step
        key = f"k{slot}"
        if op in ("add", "finish") and slot not in jobs and key not in keys:
            serial += 1
            jobs[slot] = job = new_job(serial, now, key=key)
            index.add(job)
            keys[key] = (job.id, math.inf)
        if op == "finish" and slot in jobs and slot not in finished:
            finish(index, jobs[slot], state, now)
            order += 1
            finished[slot] = (state, now, order)
        elif op == "retry" and slot in finished:
            del finished[slot]
            jobs[slot].updated_at = now
            index.move(jobs[slot], S.ENQUEUED)
        elif op == "delete" and slot in jobs:
            index.remove(jobs.pop(slot), forget_key=True)
            finished.pop(slot, None)
            del keys[key]
        elif op == "tick":
            tick(index, now)
            # Model: per state, forget those aged out and the oldest beyond the count limit.
            for s in FINISHED:
                kept = sorted((v[2], sl) for sl, v in finished.items() if v[0] is s)
                aged = [sl for _, sl in kept if finished[sl][1] <= now - AGE[s]]
                young = [sl for _, sl in kept if sl not in aged]
                for sl in aged + young[: max(0, len(young) - RET.max_per_state)]:
                    at = finished.pop(sl)[1]
                    job = jobs.pop(sl)
                    keys[job.idempotency_key or ""] = (job.id, at + RET.keys)
            keys = {k: v for k, v in keys.items() if v[1] > now}
        assert {j.id for j in index.jobs()} == {j.id for j in jobs.values()}
        assert {k: (j, e) for k, j, _, e, _ in index.keys.items()} == keys
        for s in FINISHED:
            assert index.count(s) == sum(1 for v in finished.values() if v[0] is s)
