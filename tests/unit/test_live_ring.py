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


def _batched(live: LiveEvents, client: Client) -> list[tuple[int, str, dict[str, object]]]:
    text = live.read_batched(client).decode()
    return [
        (int(n), kind, json.loads(data))
        for n, kind, data in re.findall(r"id: (\d+)\nevent: (\w+)\ndata: (.*)\n\n", text)
    ]


def test_a_batched_reader_gets_one_jobs_event_with_the_ids_and_queues_of_the_changes() -> None:
    live = LiveEvents()
    client = Client(0, None, None, batched=True)
    live.observe(_jobs("s", 1)[0], False)
    live.observe_batch(_jobs("b", 3))
    live.publish("stats", {"total": 4})
    live.observe_batch(_jobs("o", 2, queue="other"))
    events = _batched(live, client)
    assert events == [
        (5, "stats", {"total": 4}),
        (7, "jobs", {"ids": ["s000000", "b000000", "b000001", "b000002", "o000000", "o000001"],
                     "queues": ["q", "other"], "more": False}),
    ]  # fmt: skip
    assert client.cursor == 7
    assert live.read_batched(client) == b""  # nothing new


def test_a_batched_reader_looks_at_a_bounded_number_of_changes_and_says_more() -> None:
    from spitfire.dashboard.live import BATCH_IDS

    live = LiveEvents()
    client = Client(0, None, None, batched=True)
    live.observe_batch(_jobs("x", 3 * RING_SIZE))  # far more than the ring holds: never "too slow"
    [(n, kind, data)] = _batched(live, client)
    assert (n, kind, data["more"]) == (3 * RING_SIZE, "jobs", True)
    assert data["ids"] == [f"x{i:06d}" for i in range(3 * RING_SIZE - BATCH_IDS, 3 * RING_SIZE)]
    live.tick()
    assert not client.dropped


def test_a_batched_reader_of_one_queue_sees_only_its_changes_and_more_only_for_it() -> None:
    from spitfire.dashboard.live import BATCH_IDS

    live = LiveEvents()
    client = live.connect(None, "q", None, batched=True)[0]
    live.observe_batch(_jobs("q", 2))
    live.observe_batch(_jobs("o", 2 * BATCH_IDS, queue="other"))  # pushes q's changes out of the window
    [(_, _, data)] = _batched(live, client)
    assert data == {"ids": [], "queues": [], "more": True}  # q changed, but its ids are not looked at
    live.observe_batch(_jobs("o", 2 * BATCH_IDS, queue="other"))
    assert live.read_batched(client) == b": filtered\n\n"  # only other queues changed
