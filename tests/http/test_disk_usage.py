"""Disk use of a real spitfire-server (items 6 and 7): a queue holding one job costs at most
2 MiB (segments start at 1 MiB and double), a new queue refused for lack of space leaves no
directory and the server restarts on the full disk, and /ready answers 503 whenever enqueues would
get NO_SPACE, even with free space left on the disk."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "http"))
from httphelpers import HttpServer, enqueue

MiB = 2**20
#: /ready's own free-space floor (server/runtime.py READY_MIN_FREE): the tests stay above it when
#: they check that the storage's low-on-space state alone turns /ready to 503.
READY_MIN_FREE = 16 * MiB
#: ``start(data_dir, log_dir=None)``: a started server, stopped at the end of the test.
Starter = Callable[..., HttpServer]


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` as `du` counts them (st_blocks * 512, directories included)."""
    total = os.lstat(path).st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


@pytest.fixture
def started() -> Iterator[Starter]:
    """Start servers on a data directory; every one is stopped (by PID) at the end."""
    servers: list[HttpServer] = []

    def start(data_dir: Path, log_dir: Path | None = None) -> HttpServer:
        server = HttpServer(data_dir)
        if log_dir is not None:  # keep the log off a full disk
            server.log_path = log_dir / f"server-{len(servers)}.log"
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def test_fifty_queues_holding_one_job_each_cost_at_most_2_mib_each(tmp_path: Path, started: Starter) -> None:
    data = tmp_path / "data"
    server = started(data)
    for i in range(50):
        enqueue(server.http, f"q{i}", payload={"n": i})
    queues = data / "queues"
    assert len(os.listdir(queues)) == 50
    sizes = {name: disk_usage(queues / name) for name in os.listdir(queues)}
    assert max(sizes.values()) <= 2 * MiB, sizes
    assert disk_usage(queues) <= 50 * 2 * MiB  # was 50 * 64 MiB = 3.2 GB
    assert server.stop() == 0
    # A restart reads every queue back (each segment's size comes from its header).
    server = started(data)
    r = server.http.get("/api/queues/q7/jobs")
    assert r.status_code == 200 and len(r.json()["jobs"]) == 1, r.text


def test_a_new_queue_refused_for_lack_of_space_leaves_no_directory_and_the_server_restarts(
    mount_tmpfs: Callable[[str], Path], tmp_path: Path, started: Starter, fill_disk: Callable[..., None]
) -> None:
    fs = mount_tmpfs("24m")
    data = fs / "data"
    server = started(data, tmp_path)
    enqueue(server.http, "old")
    fill_disk(fs / "filler")
    r = server.http.post("/api/queues/new/jobs", json={"name": "job"})
    assert r.status_code == 507 and r.json()["error"]["code"] == "NO_SPACE", r.text
    assert sorted(os.listdir(data / "queues")) == ["old"]
    ready = server.http.get("/ready")
    assert ready.status_code == 503 and "log" in ready.json()["checks"], ready.text
    assert server.stop() == 0

    # An older build left an empty queues/<q>/wal/ after such a refusal: it must not stop start-up
    # on the full disk either.
    (data / "queues" / "legacy" / "wal").mkdir(parents=True)
    server = started(data, tmp_path)
    assert [q["name"] for q in server.http.get("/api/queues").json()["queues"]] == ["old"]
    assert server.http.get("/api/queues/old/jobs").json()["jobs"][0]["state"] == "enqueued"

    (fs / "filler").unlink()
    for queue in ("new", "legacy"):
        enqueue(server.http, queue)
    assert sorted(os.listdir(data / "queues")) == ["legacy", "new", "old"]
    deadline = time.monotonic() + 20  # the server's probe allocation runs every second
    while server.http.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, server.http.get("/ready").text
        time.sleep(0.05)
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_ready_is_503_while_segments_cannot_be_allocated_though_space_is_left(
    mount_tmpfs: Callable[[str], Path],
    tmp_path: Path,
    started: Starter,
    fill_disk: Callable[..., None],
    free_bytes: Callable[[Path], int],
) -> None:
    fs = mount_tmpfs("96m")  # segments of 1 + 2 + 4 + 8 + 16 MiB, then 32 MiB once freed
    data = fs / "data"
    server = started(data, tmp_path)
    http = server.http
    wal = data / "queues" / "big" / "wal"
    batch = {"name": "big", "payloads": ["x" * 65536] * 8}  # about 512 KiB a record

    # Grow the queue's segments (1, 2, 4, 8 MiB...) until a 16 MiB one has been prepared.
    def largest_segment() -> int:
        return max((p.stat().st_size for p in wal.glob("*.seg")), default=0)

    for _ in range(200):
        assert http.post("/api/queues/big/jobs:batch", json=batch).status_code == 201
        if largest_segment() >= 16 * MiB:
            break
    assert largest_segment() == 16 * MiB
    assert http.get("/ready").status_code == 200
    # Leave 20 MiB: more than /ready's floor, less than the 32 MiB segment that comes next.
    fill_disk(fs / "filler", leave=20 * MiB)
    refused = None
    for _ in range(200):
        r = http.post("/api/queues/big/jobs:batch", json=batch)
        if r.status_code != 201:
            refused = r
            break
    assert refused is not None and refused.status_code == 507, refused and refused.text
    assert free_bytes(fs) > READY_MIN_FREE  # statvfs alone would call the server ready
    ready = http.get("/ready")
    assert ready.status_code == 503 and "disk full" in ready.json()["checks"]["log"], ready.text

    (fs / "filler").unlink()
    deadline = time.monotonic() + 20  # the preparer retries every second
    while http.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "still not ready after space was freed"
        time.sleep(0.05)
    assert http.post("/api/queues/big/jobs:batch", json=batch).status_code == 201
    assert server.stop() == 0
