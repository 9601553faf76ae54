"""The ``delays`` backoff: an explicit list of retry delays (index/backoff.py), checked and deterministic."""

from __future__ import annotations

import msgspec
import pytest
from engine_harness import T0, Harness, run

from spitfire.index.backoff import MAX_DELAYS, retry_delay, validate_backoff
from spitfire.index.job import Backoff, BackoffKind, JobState
from spitfire.protocol import messages as m
from spitfire.server.building import JobOptions
from spitfire.server.errors import ValidationError

DELAYS = Backoff(BackoffKind.DELAYS, delays=(1.0, 5.0, 30.0, 300.0))


def test_each_retry_waits_its_delay_and_the_last_one_repeats() -> None:
    assert [retry_delay(DELAYS, n) for n in range(1, 7)] == [1.0, 5.0, 30.0, 300.0, 300.0, 300.0]
    assert retry_delay(Backoff(BackoffKind.DELAYS, cap=2.0, delays=(10.0,)), 1) == 10.0  # no cap
    jittered = Backoff(BackoffKind.DELAYS, jitter=True, delays=(10.0,))
    assert retry_delay(jittered, 1, lambda: 0.0) == 5.0 and retry_delay(jittered, 1, lambda: 0.999) < 10.0


@pytest.mark.parametrize(
    "bad",
    [
        Backoff(BackoffKind.DELAYS),
        Backoff(BackoffKind.DELAYS, delays=()),
        Backoff(BackoffKind.DELAYS, delays=(-1.0,)),
        Backoff(BackoffKind.DELAYS, delays=(float("nan"),)),
        Backoff(BackoffKind.DELAYS, delays=(1.0,) * (MAX_DELAYS + 1)),
        Backoff(BackoffKind.FIXED, delays=(1.0,)),
    ],
)
def test_bad_delays_name_the_field(bad: Backoff) -> None:
    problem = validate_backoff(bad)
    assert problem is not None and problem.startswith("delays:")


def test_old_five_element_backoffs_still_decode() -> None:
    old = msgspec.msgpack.encode(["fixed", 2.0, 1.0, 60.0, False])
    assert msgspec.msgpack.decode(old, type=m.Backoff).delays is None
    on_disk = msgspec.msgpack.encode([2, 2.0, 1.0, 60.0, False])
    assert msgspec.msgpack.decode(on_disk, type=Backoff).delays is None
    assert m.Backoff.of_delays([1, 5]) == m.Backoff("delays", delays=[1.0, 5.0])


@run
async def test_a_failed_job_with_delays_retries_at_each_delay(harness: Harness) -> None:
    e = await harness.open()
    await e.enqueue("q", "h", b"", now=T0, options=JobOptions(backoff=DELAYS, max_attempts=4))
    for attempt, delay in enumerate([1.0, 5.0, 30.0], start=1):
        now = T0 + 1000 * attempt
        (got,) = e.reserve(["q"], "w", now)
        failed = await e.fail(got.id, "w", now, "boom")
        assert failed.state is JobState.RETRYING and failed.run_at == now + delay
        e._promote(e.state.queues["q"], now + delay)


@run
async def test_an_enqueue_with_bad_delays_changes_nothing(harness: Harness) -> None:
    e = await harness.open()
    with pytest.raises(ValidationError) as err:
        await e.enqueue("q", "h", b"", now=T0, options=JobOptions(backoff=Backoff(BackoffKind.DELAYS)))
    assert err.value.field == "backoff.delays" and e.queues() == []
