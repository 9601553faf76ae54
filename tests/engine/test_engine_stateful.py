"""Random operation sequences with random restarts must match a reference model of job states.

Runs on the file engine when `spitfire.wal.FileStorage` exists, on MemoryStorage until then.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from engine_harness import T0, file_storage_factory
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from spitfire.index.job import Backoff, BackoffKind, JobState
from spitfire.server.building import JobOptions
from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.server.errors import InvalidTransition, QueueNotEmpty, QueueNotFound, StaleLease
from spitfire.wal.api import Storage
from spitfire.wal.memory import MemoryState, MemoryStorage

S = JobState
TIMEOUT = 30.0
RETRY_DELAY = 5.0
MAX_ATTEMPTS = 2
WORKERS = ("w1", "w2")


@dataclass
class ModelJob:
    state: JobState
    priority: int
    attempts: int = 0
    #: attempts as the log (or last snapshot) knows them: what a restart brings back
    logged_attempts: int = 0
    run_at: float | None = None
    lease_until: float | None = None
    worker: str | None = None


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        make = file_storage_factory(Path(self.tmp.name) / "data")
        if make is None:
            state = MemoryState()
            make = lambda: MemoryStorage(state)  # noqa: E731
        self.make_storage: callable[[], Storage] = make  # type: ignore[valid-type]
        self.now = T0
        self.model: dict[str, ModelJob] = {}
        self.engine: Engine | None = None

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        if self.engine is not None:
            self.run(self.engine.close())
        self.loop.close()
        self.tmp.cleanup()

    async def _open(self) -> Engine:
        config = EngineConfig(retain_max_per_queue=10_000, snapshot_chunk=4)
        engine = Engine(self.make_storage(), config)
        await engine.open(self.now)
        return engine

    @initialize()
    def start(self) -> None:
        self.engine = self.run(self._open())

    @property
    def e(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def held(self) -> list[str]:
        return sorted(j for j, m in self.model.items() if m.state in (S.RESERVED, S.RUNNING))

    # -- rules ----------------------------------------------------------------------------------------

    @rule(priority=st.integers(0, 3), delay=st.sampled_from([None, 3.0, 20.0]))
    def enqueue(self, priority: int, delay: float | None) -> None:
        job, created = self.run(
            self.e.enqueue(
                "q", "h", b"p", now=self.now,
                options=JobOptions(
                    priority=priority, delay=delay, max_attempts=MAX_ATTEMPTS, timeout=TIMEOUT,
                    backoff=Backoff(BackoffKind.FIXED, base=RETRY_DELAY),
                ),
            )
        )  # fmt: skip
        assert created
        state = S.SCHEDULED if delay else S.ENQUEUED
        self.model[job.id] = ModelJob(state, priority, run_at=self.now + delay if delay else None)

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def reserve(self, worker: str, limit: int) -> None:
        got = self.e.reserve(["q"], worker, self.now, limit)
        ready = [m for m in self.model.values() if m.state is S.ENQUEUED]
        assert len(got) == min(limit, len(ready))
        prios = sorted((m.priority for m in ready), reverse=True)
        assert [j.priority for j in got] == prios[: len(got)]
        for job in got:
            m = self.model[job.id]
            assert m.state is S.ENQUEUED
            m.state, m.worker, m.lease_until = S.RESERVED, worker, self.now + TIMEOUT
            m.attempts += 1
            assert job.attempts == m.attempts

    @precondition(lambda self: self.held())
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.held()))
        m = self.model[job_id]
        self.run(self.e.ack(job_id, m.worker or "", self.now))
        m.state, m.worker, m.lease_until = S.SUCCEEDED, None, None
        m.logged_attempts = m.attempts

    @precondition(lambda self: self.held())
    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        job_id = data.draw(st.sampled_from(self.held()))
        m = self.model[job_id]
        self.run(self.e.fail(job_id, m.worker or "", self.now, "boom", retryable=retryable))
        m.worker, m.lease_until = None, None
        m.logged_attempts = m.attempts
        if not retryable or m.attempts >= MAX_ATTEMPTS:
            m.state, m.run_at = S.DEAD, None
        else:
            m.state, m.run_at = S.RETRYING, self.now + RETRY_DELAY

    @precondition(lambda self: self.held())
    @rule(data=st.data())
    def stale_ack_is_rejected(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.held()))
        m = self.model[job_id]
        other = "w2" if m.worker == "w1" else "w1"
        try:
            self.run(self.e.ack(job_id, other, self.now))
        except StaleLease:
            return
        raise AssertionError("an ack from a worker without the lease was accepted")

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.model)))
        m = self.model[job_id]
        try:
            _, worker = self.run(self.e.cancel(job_id, self.now))
        except InvalidTransition:
            assert m.state in (S.SUCCEEDED, S.DEAD, S.CANCELLED)
            return
        assert worker == m.worker
        m.state, m.worker, m.lease_until, m.run_at = S.CANCELLED, None, None, None
        m.logged_attempts = m.attempts

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.model)))
        m = self.model[job_id]
        try:
            self.run(self.e.retry(job_id, self.now))
        except InvalidTransition:
            assert m.state not in (S.DEAD, S.CANCELLED)
            return
        m.state, m.attempts, m.logged_attempts = S.ENQUEUED, 0, 0

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.model)))
        self.run(self.e.delete(job_id, self.now))
        del self.model[job_id]

    @rule(force=st.booleans())
    def delete_queue(self, force: bool) -> None:
        pending = sum(1 for m in self.model.values() if m.state not in (S.SUCCEEDED, S.DEAD, S.CANCELLED))
        if "q" not in self.e.queues():
            assert not self.model
            with pytest.raises(QueueNotFound):
                self.run(self.e.delete_queue("q", self.now, force=force))
            return
        if pending and not force:
            with pytest.raises(QueueNotEmpty):
                self.run(self.e.delete_queue("q", self.now))
            return
        deletion = self.run(self.e.delete_queue("q", self.now, force=force))
        held = sorted(j for j, m in self.model.items() if m.worker is not None)
        assert sorted(j for ids in deletion.revoked.values() for j in ids) == held
        assert (deletion.jobs, deletion.pending) == (len(self.model), pending)
        self.model.clear()

    @rule(worker=st.sampled_from(WORKERS))
    def heartbeat(self, worker: str) -> None:
        self.e.heartbeat(worker, self.now)
        for m in self.model.values():
            if m.worker == worker:
                m.lease_until = max(m.lease_until or 0.0, self.now + TIMEOUT)

    @rule(step=st.sampled_from([1.0, 4.0, 10.0, 31.0]))
    def advance(self, step: float) -> None:
        self.now += step
        self.run(self.e.tick(self.now))
        self._model_tick()

    def _model_tick(self) -> None:
        for m in self.model.values():
            if m.state in (S.SCHEDULED, S.RETRYING) and m.run_at is not None and m.run_at <= self.now:
                m.state, m.run_at = S.ENQUEUED, None
        for m in self.model.values():
            if m.state in (S.RESERVED, S.RUNNING) and m.lease_until is not None and m.lease_until <= self.now:
                m.worker, m.lease_until = None, None
                m.logged_attempts = m.attempts
                m.state = S.DEAD if m.attempts >= MAX_ATTEMPTS else S.ENQUEUED

    @rule()
    def snapshot(self) -> None:
        if "q" in self.e.queues():
            self.run(self.e.snapshot("q"))
            for m in self.model.values():
                m.logged_attempts = m.attempts

    @rule()
    def restart(self) -> None:
        self.run(self.e.close())
        self.engine = self.run(self._open())
        for m in self.model.values():
            if m.state in (S.RESERVED, S.RUNNING):
                m.state, m.worker, m.lease_until = S.ENQUEUED, None, None
            m.attempts = m.logged_attempts
        self._model_tick()

    # -- invariants -----------------------------------------------------------------------------------

    @invariant()
    def states_match(self) -> None:
        if self.engine is None:
            return
        for job_id, m in self.model.items():
            job = self.e.get(job_id)
            assert job.state is m.state, (job_id, job.state, m.state)
            assert job.attempts == m.attempts, (job_id, job.attempts, m.attempts)
            assert job.worker == m.worker
        assert self.e.stats().total_jobs == len(self.model)
        if "q" in self.e.queues():
            counts = self.e.queue_stats("q").counts
            for s in JobState:
                assert counts[s.label] == sum(1 for m in self.model.values() if m.state is s)


EngineMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)
TestEngineStateful = EngineMachine.TestCase
