"""Unit tests of the adapters' pure parts: status maps, counts, times, the bounded claimer registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spitfire.compat import common, crq, vesper
from spitfire.compat.common import FORGET_AFTER, Claimers, rfc3339
from spitfire.index.job import JobState


def test_every_state_has_a_status_in_both_apis() -> None:
    assert set(vesper.STATUS) == set(JobState) == set(crq.STATUS)
    assert {vesper.STATUS[s] for s in (JobState.ENQUEUED, JobState.SCHEDULED, JobState.RETRYING)} == {
        "pending"
    }
    assert (vesper.STATUS[JobState.DEAD], vesper.STATUS[JobState.CANCELLED]) == ("dlq", "failed")


def test_counts_by_vesper_status() -> None:
    got = vesper.counts(
        {"enqueued": 2, "retrying": 1, "running": 3, "succeeded": 4, "dead": 5, "cancelled": 6}
    )
    assert (got.pending, got.processing, got.done, got.dlq, got.failed, got.total) == (3, 3, 4, 5, 6, 21)


def test_rfc3339_is_utc_with_microseconds() -> None:
    assert rfc3339(1705314600.25) == "2024-01-15T10:30:00.250000Z"
    assert datetime.fromisoformat(rfc3339(0.0)) == datetime(1970, 1, 1, tzinfo=UTC)


def test_the_claimer_registry_is_bounded_and_forgets_idle_claimers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "MAX_CLAIMERS", 3)
    claimers = Claimers()
    for i in range(10):
        claimers.seen(f"simplequeue:w{i}", "10.0.0.1", 100.0 + i, "t")
    assert list(claimers.claimers) == ["simplequeue:w7", "simplequeue:w8", "simplequeue:w9"]
    claimers.seen("simplequeue:w7", "10.0.0.2", 200.0)  # seen again: the most recent now
    assert list(claimers.claimers)[-1] == "simplequeue:w7"
    holding = {"simplequeue:w8"}

    def held_by(wid: str) -> list[object]:
        return [object()] if wid in holding else []

    assert [c.id for c in claimers.active(205.0, 30.0, held_by)] == ["simplequeue:w8", "simplequeue:w7"]
    later = 200.0 + FORGET_AFTER + 1
    assert [c.id for c in claimers.active(later, 30.0, held_by)] == ["simplequeue:w8"]
    assert set(claimers.claimers) == {"simplequeue:w8"}  # the idle ones holding nothing are forgotten


def test_a_claimer_remembers_at_most_1000_topics() -> None:
    claimers = Claimers()
    for i in range(1500):
        claimers.seen("simplequeue:w", "h", 1.0, f"t{i}")
    assert len(claimers.claimers["simplequeue:w"].topics) == 1000
