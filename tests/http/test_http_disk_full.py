"""A full disk over HTTP, on a real server whose data directory is a small tmpfs (DESIGN.md sections
3 and 4): enqueues answer 507 NO_SPACE with the JSON error shape while workers keep acking, /ready
reports the log (503), and once space is freed enqueues are accepted again."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, enqueue

#: 256 KiB payloads, eight to a request (a 2 MiB record): once the disk is full, the queue's small
#: open segment (1 MiB at first, each next one doubled) refuses them at once.
PAYLOAD = "x" * 2**18
BATCH = 8


@pytest.fixture
def small_fs(mount_tmpfs: Callable[[str], Path]) -> Path:
    """A real 160 MiB tmpfs: more than the queue's segments need, and more than /ready's floor."""
    return mount_tmpfs("160m")


@pytest.fixture
def server(small_fs: Path, tmp_path: Path) -> Iterator[HttpServer]:
    proc = HttpServer(small_fs / "data")
    proc.log_path = tmp_path / "server.log"  # not on the full disk: the log must stay writable
    try:
        yield proc.start()
    finally:
        proc.stop()


def _enqueue_until_refused(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    for _ in range(300):
        r = client.post(path, json=body)
        if r.status_code != 201:
            return r
    raise AssertionError("the disk never filled up")


def _rejections(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('spitfire_backpressure_rejections_total{protocol="http",reason="NO_SPACE"}'):
            return float(line.split()[-1])
    raise AssertionError("no NO_SPACE rejection series")


def test_a_full_disk_answers_507_while_acks_commit_and_recovers_when_space_is_freed(
    small_fs: Path, server: HttpServer, fill_disk: Callable[..., None]
) -> None:
    http = server.http
    held = enqueue(http, "disk", name="held")
    claim = http.post("/api/queues/disk/claim", json={"worker": "w", "limit": 1})
    assert claim.status_code == 200 and [j["id"] for j in claim.json()["jobs"]] == [held["id"]]
    assert http.get("/ready").status_code == 200

    fill_disk(small_fs / "filler")
    batch = {"name": "big", "payloads": [PAYLOAD] * BATCH}
    refused = _enqueue_until_refused(http, "/api/queues/disk/jobs:batch", batch)
    assert refused.status_code == 507, refused.text
    error = refused.json()["error"]
    assert error["code"] == "NO_SPACE" and "disk full" in error["message"]
    assert set(error) <= {"code", "message", "field", "retry_after"}
    # What is left of the segment's plain space still takes smaller records, until it does not.
    single = _enqueue_until_refused(http, "/api/queues/disk/jobs", {"name": "big", "payload": PAYLOAD})
    assert single.status_code == 507 and single.json()["error"]["code"] == "NO_SPACE"
    assert _rejections(http) >= 2

    ready = http.get("/ready")  # DESIGN.md: the log is not writable, so the server is not ready
    assert ready.status_code == 503 and "log" in ready.json()["checks"], ready.text
    assert http.get("/health").status_code == 200

    acked = http.post(f"/api/jobs/{held['id']}/ack", json={"worker": "w", "result": {"ok": True}})
    assert acked.status_code == 200, acked.text  # completions commit into the reserved space
    assert http.get(f"/api/jobs/{held['id']}").json()["state"] == "succeeded"

    (small_fs / "filler").unlink()
    deadline = time.monotonic() + 20  # the server retries allocating its next segment meanwhile
    while True:
        r = http.post("/api/queues/disk/jobs", json={"name": "after"})
        if r.status_code == 201:
            break
        assert r.status_code == 507 and time.monotonic() < deadline, r.text
        time.sleep(0.2)
    assert http.get(f"/api/jobs/{r.json()['id']}").json()["state"] == "enqueued"
    # A small job may fit below the open segment's reserve line before the server's retry has
    # allocated the next segment; /ready turns 200 once it has (the storage is no longer low on space).
    while http.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, http.get("/ready").text
        time.sleep(0.05)
    assert server.stop() == 0
    assert "Traceback" not in server.log()
