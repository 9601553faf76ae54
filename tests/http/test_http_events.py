"""GET /api/events (Server-Sent Events) against a live server: job events arrive within a second,
Last-Event-ID resumes, the queue filter, and a stalled client neither slows enqueues nor stays."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, enqueue


class EventReader:
    """A raw-socket SSE client: parses ``id``/``event``/``data`` blocks as they arrive."""

    def __init__(self, server: HttpServer, query: str = "", last_event_id: str | None = None) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
        self.sock.sendall(f"GET /api/events{query} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"text/event-stream" in head

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("stream closed")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def next_event(self) -> dict[str, str]:
        """The next event (chunked transfer framing lines are skipped)."""
        while True:
            block = self._until(b"\n\n").decode()
            event: dict[str, str] = {}
            for line in block.split("\n"):
                key, sep, value = line.partition(": ")
                if sep and key in ("id", "event", "data"):
                    event[key] = value
            if "event" in event:
                return event

    def wait_for(self, predicate: object, timeout: float) -> tuple[dict[str, str], float]:
        """The first event satisfying ``predicate`` and when it arrived (monotonic)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while time.monotonic() < deadline:
            event = self.next_event()
            if predicate(event):  # type: ignore[operator]
                return event, time.monotonic()
        raise TimeoutError("no matching event")

    def close(self) -> None:
        self.sock.close()


def is_job(job_id: object, state: str = "enqueued") -> object:
    def match(event: dict[str, str]) -> bool:
        if event["event"] != "job":
            return False
        data = json.loads(event["data"])
        return bool(data["id"] == job_id and data["state"] == state)

    return match


def test_an_enqueue_shows_up_within_one_second(server: HttpServer, queue: str) -> None:
    reader = EventReader(server)
    try:
        sent = time.monotonic()
        job = enqueue(server.http, queue, name="live")
        event, arrived = reader.wait_for(is_job(job["id"]), timeout=5)
        assert arrived - sent < 1.0
        data = json.loads(event["data"])
        assert data["queue"] == queue and data["name"] == "live" and int(event["id"]) > 0
        stats, _ = reader.wait_for(lambda e: e["event"] == "stats", timeout=5)
        counters = json.loads(stats["data"])
        assert counters["totals"]["enqueued"] >= 1 and "counts" in counters
    finally:
        reader.close()


def test_last_event_id_resumes_after_a_disconnect(server: HttpServer, queue: str) -> None:
    reader = EventReader(server, f"?queue={queue}")
    first = enqueue(server.http, queue)
    event, _ = reader.wait_for(is_job(first["id"]), timeout=5)
    reader.close()
    missed = [enqueue(server.http, queue)["id"] for _ in range(3)]
    resumed = EventReader(server, f"?queue={queue}", last_event_id=event["id"])
    try:
        got = []
        while len(got) < 3:
            e, _ = resumed.wait_for(lambda e: e["event"] == "job", timeout=5)
            got.append(json.loads(e["data"])["id"])
            assert int(e["id"]) > int(event["id"])
        assert got == missed
    finally:
        resumed.close()
    stale = EventReader(server, last_event_id="999999999")
    try:
        assert stale.next_event()["event"] == "reset"
    finally:
        stale.close()


def test_a_batch_gives_one_event_per_job_and_resumes_from_its_middle(server: HttpServer, queue: str) -> None:
    """A batch's jobs share one ring entry in the server, yet each has its own event id, in order,
    and Last-Event-ID pointing inside the batch resumes with exactly the jobs after it."""
    reader = EventReader(server, f"?queue={queue}")
    r = server.http.post(f"/api/queues/{queue}/jobs:batch", json={"name": "b", "payloads": list(range(50))})
    assert r.status_code == 201, r.text
    ids = r.json()["ids"]
    events = []
    while len(events) < len(ids):
        e, _ = reader.wait_for(lambda e: e["event"] == "job", timeout=5)
        events.append(e)
    reader.close()
    assert [json.loads(e["data"])["id"] for e in events] == ids
    numbers = [int(e["id"]) for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(ids)))
    first = json.loads(events[0]["data"])
    assert first["queue"] == queue and first["name"] == "b" and first["state"] == "enqueued"
    after = enqueue(server.http, queue)["id"]
    resumed = EventReader(server, f"?queue={queue}", last_event_id=events[19]["id"])
    try:
        got = []
        while len(got) < len(ids) - 20 + 1:
            e, _ = resumed.wait_for(lambda e: e["event"] == "job", timeout=5)
            got.append((int(e["id"]), json.loads(e["data"])["id"]))
        assert [job for _, job in got] == [*ids[20:], after]
        assert [n for n, _ in got[:-1]] == numbers[20:]
    finally:
        resumed.close()


def test_queue_filter(server: HttpServer, queue: str) -> None:
    reader = EventReader(server, f"?queue={queue}-a")
    try:
        enqueue(server.http, f"{queue}-b")
        wanted = enqueue(server.http, f"{queue}-a")
        event, _ = reader.wait_for(lambda e: e["event"] == "job", timeout=5)
        assert json.loads(event["data"])["id"] == wanted["id"]
    finally:
        reader.close()


def _enqueue_seconds(server: HttpServer, queue: str, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        enqueue(server.http, queue, payload=i)
    return time.perf_counter() - started


def _stream_clients(server: HttpServer) -> float:
    for line in server.http.get("/metrics").text.splitlines():
        if line.startswith("spitfire_event_stream_clients "):
            return float(line.split()[1])
    raise AssertionError("no spitfire_event_stream_clients metric")


def test_a_stalled_client_does_not_slow_enqueues_and_is_dropped(server: HttpServer, queue: str) -> None:
    baseline = _enqueue_seconds(server, queue, 100)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = server.url.removeprefix("http://").split(":")
    stalled.connect((host, int(port)))
    stalled.sendall(b"GET /api/events HTTP/1.1\r\nHost: t\r\n\r\n")  # and never reads
    try:
        deadline = time.monotonic() + 10
        while _stream_clients(server) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Far more events than its socket and the server's ring can hold.
        for _ in range(9):
            body = {"name": "flood", "payloads": list(range(10_000))}
            assert server.http.post(f"/api/queues/{queue}/jobs:batch", json=body).status_code == 201
        with_stalled = _enqueue_seconds(server, queue, 100)
        assert with_stalled < 3 * baseline + 1.0, (baseline, with_stalled)
        deadline = time.monotonic() + 20
        while _stream_clients(server) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _stream_clients(server) == 0
        assert "event-stream client dropped" in server.log()
    finally:
        stalled.close()


def test_a_batched_reader_gets_jobs_events_naming_the_changes(server: HttpServer, queue: str) -> None:
    reader = EventReader(server, "?jobs=batched")
    try:
        ids = {enqueue(server.http, queue, name="live")["id"] for _ in range(3)}
        seen: set[str] = set()

        def batch(event: dict[str, str]) -> bool:
            if event["event"] == "job":
                raise AssertionError("a batched reader got an event: job")
            if event["event"] == "jobs":
                data = json.loads(event["data"])
                assert queue in data["queues"] and data["more"] is False
                seen.update(data["ids"])
            return ids <= seen

        reader.wait_for(batch, timeout=5)
    finally:
        reader.close()


def test_an_unknown_jobs_mode_is_a_422_naming_it(server: HttpServer) -> None:
    response = server.http.get("/api/events", params={"jobs": "all"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "jobs"
