"""Request-dedupe tokens in the engine: a resend answers the first attempt's jobs, across restarts and
snapshots, and a token never becomes an idempotency key (server/dedupe.py)."""

from __future__ import annotations

import asyncio

import pytest
from engine_harness import T0, Harness, run

from spitfire.index.job import JobState
from spitfire.server.building import JobOptions
from spitfire.server.config import EngineConfig
from spitfire.server.dedupe import TOKEN_TTL
from spitfire.server.errors import ValidationError

TOKEN = bytes(range(16))
OTHER = bytes(range(1, 17))


@run
async def test_a_resent_enqueue_answers_the_first_job(harness: Harness) -> None:
    e = await harness.open()
    job, created = await e.enqueue("q", "h", b"\x01", now=T0, request_token=TOKEN)
    again, created_again = await e.enqueue("q", "h", b"\x01", now=T0 + 5, request_token=TOKEN)
    assert created and created_again and again.id == job.id
    other, _ = await e.enqueue("q", "h", b"\x01", now=T0 + 5, request_token=OTHER)
    assert other.id != job.id
    assert e.stats().queues["q"].counts[JobState.ENQUEUED.label] == 2
    # Not an idempotency key: the job has none, and the token is nowhere in its record.
    assert e.get(job.id).idempotency_key is None


@run
async def test_a_resent_batch_answers_the_first_jobs_with_their_keys(harness: Harness) -> None:
    e = await harness.open()
    await e.enqueue("q", "h", b"", now=T0, idempotency_key="old")
    payloads = [b"\x01", b"\x02", b"\x03", b"\x04"]
    keys = ["old", None, "new", "new"]
    jobs, created = await e.enqueue_batch(
        "q", "h", payloads, now=T0, idempotency_keys=keys, request_token=TOKEN
    )
    again, created_again = await e.enqueue_batch(
        "q", "h", payloads, now=T0 + 1, idempotency_keys=keys, request_token=TOKEN
    )
    assert [j.id for j in again] == [j.id for j in jobs]
    assert created_again == created == [False, True, True, False]
    plain, _ = await e.enqueue_batch("q", "h", payloads[:2], now=T0, request_token=OTHER)
    plain_again, none = await e.enqueue_batch("q", "h", payloads[:2], now=T0 + 1, request_token=OTHER)
    assert [j.id for j in plain_again] == [j.id for j in plain] and none is None
    assert e.stats().queues["q"].total == 1 + 2 + 2


@run
async def test_tokens_survive_a_restart_and_a_snapshot(harness: Harness) -> None:
    e = await harness.open()
    one, _ = await e.enqueue("q", "h", b"", now=T0, request_token=TOKEN)
    many, _ = await e.enqueue_batch("q", "h", [b"", b""], now=T0, request_token=OTHER)
    e = await harness.restart(T0 + 1)
    assert (await e.enqueue("q", "h", b"", now=T0 + 2, request_token=TOKEN))[0].id == one.id
    await e.snapshot("q")
    e = await harness.restart(T0 + 3)
    again, _ = await e.enqueue_batch("q", "h", [b"", b""], now=T0 + 4, request_token=OTHER)
    assert [j.id for j in again] == [j.id for j in many]
    assert (await e.enqueue("q", "h", b"", now=T0 + 4, request_token=TOKEN))[0].id == one.id
    assert e.stats().queues["q"].total == 3


@run
async def test_a_token_expires_after_its_ttl(harness: Harness) -> None:
    e = await harness.open()
    first, _ = await e.enqueue("q", "h", b"", now=T0, request_token=TOKEN)
    later, created = await e.enqueue("q", "h", b"", now=T0 + TOKEN_TTL, request_token=TOKEN)
    assert created and later.id != first.id


@run
async def test_a_token_of_another_request_is_refused(harness: Harness) -> None:
    e = await harness.open()
    await e.enqueue("q", "h", b"", now=T0, request_token=TOKEN)
    for queue, name in (("other", "h"), ("q", "other")):
        with pytest.raises(ValidationError) as info:
            await e.enqueue(queue, name, b"", now=T0, request_token=TOKEN)
        assert info.value.field == "request_token"
    with pytest.raises(ValidationError) as info:
        await e.enqueue_batch("other", "h", [b""], now=T0, request_token=TOKEN)
    assert info.value.field == "request_token"


@pytest.mark.parametrize("bad", [b"", b"x" * 65, "a string", 7])
def test_a_malformed_token_is_refused_and_changes_nothing(bad: object, harness: Harness) -> None:
    async def main() -> None:
        e = await harness.open()
        try:
            for call in (
                e.enqueue("q", "h", b"", now=T0, request_token=bad),  # type: ignore[arg-type]
                e.enqueue_batch("q", "h", [b""], now=T0, request_token=bad),  # type: ignore[arg-type]
            ):
                with pytest.raises(ValidationError) as info:
                    await call
                assert info.value.field == "request_token"
            assert e.stats().queues == {}
        finally:
            await harness.close()

    asyncio.run(main())


@run
async def test_a_resend_while_the_first_attempt_commits_waits_for_it(harness: Harness) -> None:
    e = await harness.open(config=EngineConfig())
    first = asyncio.ensure_future(e.enqueue("q", "h", b"", now=T0, request_token=TOKEN))
    second = asyncio.ensure_future(e.enqueue("q", "h", b"", now=T0, request_token=TOKEN))
    (a, _), (b, _) = await asyncio.gather(first, second)
    assert a.id == b.id
    assert e.stats().queues["q"].total == 1


@run
async def test_a_token_with_options_takes_the_slow_path_and_keeps_them(harness: Harness) -> None:
    e = await harness.open()
    job, _ = await e.enqueue(
        "q", "h", b"", now=T0, options=JobOptions(priority=3, delay=10.0), request_token=TOKEN
    )
    assert job.state is JobState.SCHEDULED and job.priority == 3
    again, _ = await e.enqueue("q", "h", b"", now=T0 + 1, request_token=TOKEN)
    assert again is job
