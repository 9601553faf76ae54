"""The live-event ring of the dashboard (`dashboard/live.py`): a batch takes one ring entry yet gives
one event per job, with its own id, wherever the batch sits in the ring and wherever a reader resumes."""

from __future__ import annotations

import json
import re

from spitfire.dashboard.live import RING_SIZE, Client, LiveEvents
from spitfire.index.job import Job, JobState


def _jobs(prefix: str, count: int, queue: str = "q") -> list[Job]:
    return [
        Job(f"{prefix}{i:06d}", queue, "h", b"", JobState.ENQUEUED, 5.0, 0, None, 3, None, 30.0, None, None,
            updated_at=5.0)
        for i in range(count)
    ]  # fmt: skip


def _events(live: LiveEvents, after: int, queue: str | None = None) -> list[tuple[int, dict[str, object]]]:
    client = Client(after, queue, None)  # never connected: the observer schedules no wake-ups
    out: list[tuple[int, dict[str, object]]] = []
    while client.cursor < live.seq:
        text = live.read(client).decode()
        for n, data in re.findall(r"id: (\d+)\nevent: job\ndata: (.*)\n\n", text):
            out.append((int(n), json.loads(data)))
    return out


def test_batch_events_are_numbered_per_job_and_resume_inside_the_batch() -> None:
    live = LiveEvents()
    single = _jobs("s", 1)[0]
    live.observe(single, False)
    batch = _jobs("b", 10)
    live.observe_batch(batch)
    live.observe_batch(_jobs("o", 3, queue="other"))
    events = _events(live, 0)
    assert [n for n, _ in events] == list(range(1, 15))
    assert [e["id"] for _, e in events[:11]] == [single.id, *(j.id for j in batch)]
    assert events[1][1] == {"id": batch[0].id, "queue": "q", "name": "h", "state": "enqueued", "at": 5.0,
                            "attempts": 0}  # fmt: skip
    assert [e["id"] for _, e in _events(live, 6)][:5] == [j.id for j in batch[5:]]  # resume at event 6
    assert [e["id"] for _, e in _events(live, 3, queue="q")] == [j.id for j in batch[2:]]
    assert live.counters["q"][0] == 11 and live.counters["other"][0] == 3


def test_a_batch_wraps_around_the_end_of_the_ring() -> None:
    live = LiveEvents()
    live.seq = RING_SIZE - 4  # the next batch's slots wrap past the ring's end
    batch = _jobs("w", 10)
    live.observe_batch(batch)
    events = _events(live, RING_SIZE - 4)
    assert [n for n, _ in events] == list(range(RING_SIZE - 3, RING_SIZE + 7))
    assert [e["id"] for _, e in events] == [j.id for j in batch]


def test_a_batch_larger_than_the_ring_keeps_its_newest_events() -> None:
    live = LiveEvents()
    batch = _jobs("x", RING_SIZE + 5)
    live.observe_batch(batch)
    last = _events(live, live.seq - 3)
    assert [e["id"] for _, e in last] == [j.id for j in batch[-3:]]
    assert [n for n, _ in last] == [RING_SIZE + 3, RING_SIZE + 4, RING_SIZE + 5]
