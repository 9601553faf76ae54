"""GET /api/stats/history against a real server: the counts survive a graceful restart, a SIGKILL,
a snapshot, a queue's deletion and a flipped byte in a snapshot's history chunk."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, enqueue

from spitfire.server import records as rec
from spitfire.wal.constants import RECORD_HEADER, RECORD_HEADER_SIZE
from spitfire.wal.format import align
from spitfire.wal.snapshot import list_snapshots, read_snapshot

#: 30 days in one point per day: every count the server keeps.
ALL = {"minutes": 43200, "step": 86400}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[HttpServer]:
    """A server of the test's own (restarted by the test), snapshotting a queue every 50 records."""
    server = HttpServer(tmp_path / "data", "--snapshot-every", "50")
    try:
        yield server.start()
    finally:
        server.stop()


def sums(client: httpx.Client, queue: str | None = None) -> tuple[int, int, int]:
    params: dict[str, str | int] = dict(ALL)
    if queue is not None:
        params["queue"] = queue
    r = client.get("/api/stats/history", params=params)
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    return (
        sum(p["enqueued"] for p in points),
        sum(p["succeeded"] for p in points),
        sum(p["failed"] for p in points),
    )


def work(client: httpx.Client, queue: str, jobs: int, fail: int) -> None:
    """Enqueue ``jobs`` jobs in one batch, then claim them all: fail the first ``fail`` (dead: out of
    attempts), ack the others."""
    r = client.post(
        f"/api/queues/{queue}/jobs:batch", json={"name": "h", "payloads": [None] * jobs, "max_attempts": 1}
    )
    assert r.status_code == 201, r.text
    done = 0
    for _ in range(jobs):  # bounded: one job at least per round
        claimed = client.post(f"/api/queues/{queue}/claim", json={"worker": "w", "limit": 100}).json()["jobs"]
        for job in claimed:
            if done < fail:
                r = client.post(f"/api/jobs/{job['id']}/fail", json={"worker": "w", "error": "boom"})
            else:
                r = client.post(f"/api/jobs/{job['id']}/ack", json={"worker": "w"})
            assert r.status_code == 200, r.text
            done += 1
        if done == jobs:
            return
    raise AssertionError(f"only {done} of {jobs} jobs were delivered")


def wait_for_snapshot(server: HttpServer, queue: str) -> Path:
    """The newest snapshot of ``queue``, once the maintenance timer wrote one (at most ~30 s)."""
    snaps = server.data_dir / "queues" / queue / "snapshots"
    tick = threading.Event()
    for _ in range(300):
        found = list_snapshots(snaps)
        if found:
            return found[-1][1]
        tick.wait(0.1)
    raise AssertionError(f"no snapshot of {queue!r} within 30 s")


def kill(server: HttpServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(15)
    server.stop()  # closes the client and the pipe; the process is gone


# -- the route --------------------------------------------------------------------------------------------


def test_the_shape_one_point_per_minute_up_to_now(server: HttpServer, queue: str) -> None:
    enqueue(server.http, queue)
    r = server.http.get("/api/stats/history", params={"queue": queue})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["step"] == 60 and len(body["points"]) == 60
    ats = [p["at"] for p in body["points"]]
    assert ats == sorted(ats) and all(at % 60 == 0 for at in ats) and ats[-1] - ats[0] == 59 * 60
    assert set(body["points"][0]) == {"at", "enqueued", "succeeded", "failed"}
    assert body["points"][-1]["enqueued"] + body["points"][-2]["enqueued"] == 1  # this minute (or the last)
    r = server.http.get("/api/stats/history", params={"minutes": 120, "step": 3600})
    assert r.json()["step"] == 3600 and 2 <= len(r.json()["points"]) <= 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"minutes": 0}, "minutes"),
        ({"minutes": 43201}, "minutes"),
        ({"minutes": "lots"}, "minutes"),
        ({"step": 90}, "step"),
        ({"step": 30}, "step"),
        ({"step": "1m"}, "step"),
    ],
)
def test_bad_parameters_are_a_422_naming_the_field(
    server: HttpServer, params: dict[str, object], field: str
) -> None:
    r = server.http.get("/api/stats/history", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_an_unknown_queue_is_a_404(server: HttpServer) -> None:
    r = server.http.get("/api/stats/history", params={"queue": "no-such-queue"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "QUEUE_NOT_FOUND"


# -- durability -------------------------------------------------------------------------------------------


def test_exact_across_a_graceful_restart_and_a_sigkill(fresh: HttpServer) -> None:
    work(fresh.http, "a", 30, 4)
    work(fresh.http, "b", 10, 0)
    assert sums(fresh.http) == (40, 36, 4) and sums(fresh.http, "a") == (30, 26, 4)
    fresh.stop()
    fresh.start()
    assert sums(fresh.http) == (40, 36, 4)
    work(fresh.http, "a", 20, 2)
    kill(fresh)  # every answer above came after its commit: nothing may be lost
    fresh.start()
    assert sums(fresh.http) == (60, 54, 6) and sums(fresh.http, "a") == (50, 44, 6)


def test_a_sigkill_mid_enqueue_counts_exactly_the_committed_jobs(fresh: HttpServer) -> None:
    """Enqueues in flight when the server dies: the count after the restart is the number of jobs
    the log holds (nothing counted that was not committed), at least the acknowledged ones."""
    acknowledged = 0
    stop = threading.Event()

    def producer() -> None:
        nonlocal acknowledged
        with httpx.Client(base_url=fresh.url, timeout=10) as client:
            for _ in range(2000):  # bounded; the kill ends it sooner
                if stop.is_set():
                    return
                try:
                    r = client.post("/api/queues/k/jobs:batch", json={"name": "h", "payloads": [None] * 10})
                except httpx.HTTPError:
                    return
                if r.status_code != 201:
                    return
                acknowledged += 10

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for t in threads:
        t.start()
    deadline_rounds = 0
    while acknowledged < 300 and deadline_rounds < 600:  # at most ~60 s
        threading.Event().wait(0.1)
        deadline_rounds += 1
    kill(fresh)
    stop.set()
    for t in threads:
        t.join(30)
    fresh.start()
    total = fresh.http.get("/api/stats").json()["total_jobs"]
    enqueued, _, _ = sums(fresh.http)
    assert enqueued == total >= acknowledged >= 300


def test_a_snapshot_then_a_restart(fresh: HttpServer) -> None:
    work(fresh.http, "a", 120, 20)  # 141 records: snapshots are written (every 50)
    wait_for_snapshot(fresh, "a")
    fresh.stop()
    fresh.start()
    assert sums(fresh.http) == sums(fresh.http, "a") == (120, 100, 20)
    work(fresh.http, "a", 10, 0)
    kill(fresh)
    fresh.start()
    assert sums(fresh.http) == (130, 110, 20)


def test_a_deleted_queue_stays_in_the_total(fresh: HttpServer) -> None:
    work(fresh.http, "gone", 12, 3)
    work(fresh.http, "kept", 5, 0)
    assert fresh.http.delete("/api/queues/gone").status_code == 200
    assert sums(fresh.http) == (17, 14, 3)
    assert fresh.http.get("/api/stats/history", params={"queue": "gone"}).status_code == 404
    kill(fresh)
    fresh.start()
    assert sums(fresh.http) == (17, 14, 3) and sums(fresh.http, "kept") == (5, 5, 0)
    fresh.stop()
    fresh.start()
    assert sums(fresh.http) == (17, 14, 3)


def _history_chunk_offset(path: Path) -> int:
    """Byte offset of the history chunk's body (chunk 1) in a snapshot file."""
    data = path.read_bytes()
    off = 0
    for _ in range(2):  # the header record, then chunk 0 (the meta)
        _, length, _ = RECORD_HEADER.unpack_from(data, off)
        off = align(off + RECORD_HEADER_SIZE + length)
    return off + RECORD_HEADER_SIZE


def test_a_flipped_byte_in_a_snapshots_history_chunk(fresh: HttpServer) -> None:
    work(fresh.http, "a", 120, 20)
    wait_for_snapshot(fresh, "a")
    fresh.stop()
    snaps = fresh.data_dir / "queues" / "a" / "snapshots"
    lsn, path = list_snapshots(snaps)[-1]
    chunks = read_snapshot(path, lsn)
    assert rec.meta_decoder.decode(chunks[0]).history
    assert rec.history_decoder.decode(chunks[1]).blocks  # the counts are there
    data = bytearray(path.read_bytes())
    data[_history_chunk_offset(path) + 20] ^= 0x01
    path.write_bytes(bytes(data))
    fresh.start()
    # The damaged snapshot is set aside (kept as .broken); the previous one and the log it keeps
    # give every count and every job back.
    assert sums(fresh.http) == (120, 100, 20)
    assert fresh.http.get("/api/stats").json()["total_jobs"] == 120
    assert any(name.endswith(".broken") for name in os.listdir(snaps))
