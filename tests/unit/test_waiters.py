"""`server.waiting.Waiters` and `ProgressBoard`: bounded memory (per owner and in total, BUSY past
it), every waiter answered once (final, deleted or timed out) or dropped with its owner, and nothing
left behind in the indexes."""

from __future__ import annotations

import asyncio

import pytest

from spitfire.index.job import Job, JobState
from spitfire.server.errors import Overloaded, ValidationError
from spitfire.server.waiting import ProgressBoard, Waiters


def _job(i: int, state: JobState = JobState.ENQUEUED) -> Job:
    return Job(f"{i:024x}", "q", "h", b"", state, 0.0)


def _empty(w: Waiters) -> bool:
    return w.count == 0 and not w._by_job and not w._by_owner


def test_caps_refuse_busy_and_dropping_an_owner_frees_its_share() -> None:
    async def body() -> None:
        jobs = {j.id: j for j in (_job(i) for i in range(10))}
        w = Waiters(jobs.get, per_owner=3, total=5)
        answers: list[tuple[Job | None, bool]] = []

        def done(job: Job | None, deleted: bool) -> None:
            answers.append((job, deleted))

        for i in range(3):
            w.add(jobs[f"{i:024x}"], "a", 60, done)
        with pytest.raises(Overloaded):
            w.add(_job(0), "a", 60, done)  # the owner's cap
        w.add(_job(3), "b", 60, done)
        w.add(_job(4), "b", 60, done)
        with pytest.raises(Overloaded):
            w.add(_job(5), "c", 60, done)  # the total cap
        assert w.count == 5
        assert w.drop_owner("a") == 3 and w.count == 2 and not answers
        w.add(_job(5), "c", 60, done)  # room again
        w.drop_owner("b")
        w.drop_owner("c")
        assert _empty(w) and not answers

    asyncio.run(body())


def test_final_deleted_and_timeouts_answer_once() -> None:
    async def body() -> None:
        running = _job(1, JobState.RUNNING)
        jobs = {running.id: running}
        w = Waiters(jobs.get)
        answers: list[tuple[str | None, bool]] = []

        def done(job: Job | None, deleted: bool) -> None:
            answers.append((None if job is None else job.state.label, deleted))

        w.add(running, "a", 60, done)
        w.add(running, "b", 60, done)
        w.settled(running, False)  # still running: nothing
        running.state = JobState.SUCCEEDED
        w.settled(running, False)
        assert answers == [("succeeded", False), ("succeeded", False)] and _empty(w)
        w.add(running, "a", 60, done)  # final already: at once, nothing kept
        assert answers[-1] == ("succeeded", False) and _empty(w)
        later = _job(2)
        jobs[later.id] = later
        w.add(later, "a", 60, done)
        w.settled(later, True)
        assert answers[-1] == ("enqueued", True) and _empty(w)
        w.add(later, "a", 0.05, done)
        await asyncio.sleep(0.2)
        assert answers[-1] == ("enqueued", False) and _empty(w)
        for bad in (-1, 3601, float("inf"), float("nan"), True):
            with pytest.raises(ValidationError):
                w.add(later, "a", bad, done)  # type: ignore[arg-type]
        assert _empty(w)

    asyncio.run(body())


def test_progress_is_bounded_by_jobs_not_final() -> None:
    board = ProgressBoard()
    heard: list[str] = []
    board.listener = lambda job, p: heard.append(job.id)
    job = _job(1, JobState.RUNNING)
    board.report(job, 0.5, "half", 1.0)
    board.report(job, 0.75, None, 2.0)
    assert len(board) == 1 and board.get(job.id) is not None and board.get(job.id).value == 0.75  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        board.report(job, 2.0, None, 3.0)
    with pytest.raises(ValidationError):
        board.report(job, None, "x" * 1001, 3.0)
    job.state = JobState.DEAD
    board.settled(job, False)
    assert len(board) == 0 and heard == [job.id, job.id]
