"""`Engine.holder`: the worker holding a job's lease, for adapters whose outcomes name no worker."""

from __future__ import annotations

import pytest
from engine_harness import T0, Harness, run

from spitfire.server.errors import InvalidTransition, JobNotFound


@run
async def test_the_holder_is_the_worker_that_reserved_the_job(harness: Harness) -> None:
    engine = await harness.open()
    job, _ = await engine.enqueue("q", "j", b"\x80", now=T0)
    with pytest.raises(InvalidTransition, match=r"cannot ack job .*: it is enqueued"):
        engine.holder(job.id, "ack")
    (reserved,) = engine.reserve(["q"], "w1", T0 + 1)
    assert engine.holder(reserved.id, "ack") == "w1"
    engine.start(job.id, "w1", T0 + 1)
    assert engine.holder(job.id, "ack") == "w1"
    await engine.ack(job.id, engine.holder(job.id, "ack"), T0 + 2)
    with pytest.raises(InvalidTransition, match="it is succeeded"):
        engine.holder(job.id, "heartbeat")
    with pytest.raises(JobNotFound):
        engine.holder("no-such-job", "ack")


@run
async def test_a_released_job_has_no_holder_and_keeps_its_attempts_uncounted(harness: Harness) -> None:
    engine = await harness.open()
    job, _ = await engine.enqueue("q", "j", b"\x80", now=T0)
    engine.reserve(["q"], "w1", T0 + 1)
    await engine.release(job.id, engine.holder(job.id, "nack"), T0 + 2)
    assert engine.get(job.id).attempts == 0
    with pytest.raises(InvalidTransition):
        engine.holder(job.id, "nack")
