"""Retention flags on a real spitfire-server: dead and cancelled jobs are forgotten like succeeded
ones, each after its own --retain-* duration, while their idempotency keys keep deduplicating."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import SERVER, enqueue, http_server

#: Longest a test waits for the maintenance tick to forget a job (it is due after ~0.3 s).
DEADLINE = 20.0


def wait_gone(client: httpx.Client, job_id: str) -> float:
    """Poll until the job answers 404 (no event announces an eviction); returns when it did."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if client.get(f"/api/jobs/{job_id}").status_code == 404:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still exists {DEADLINE} s after it should have been forgotten")


def fail_permanently(client: httpx.Client, queue: str, job_id: str) -> None:
    claimed = client.post(f"/api/queues/{queue}/claim", json={"worker": "w"}).json()["jobs"]
    assert [j["id"] for j in claimed] == [job_id]
    r = client.post(f"/api/jobs/{job_id}/fail", json={"worker": "w", "error": "boom", "retryable": False})
    assert r.status_code == 200 and r.json()["state"] == "dead", r.text


def test_dead_and_cancelled_jobs_are_forgotten_and_their_keys_still_deduplicate(tmp_path: Path) -> None:
    flags = ("--retain-dead", "300ms", "--retain-cancelled", "0.3s", "--retain-succeeded", "1h")
    with http_server(tmp_path / "data", *flags) as server:
        client = server.http
        dead = enqueue(client, "q", idempotency_key="k-dead", max_attempts=1)
        cancelled = enqueue(client, "q", idempotency_key="k-cancelled")
        kept = enqueue(client, "q")
        fail_permanently(client, "q", str(dead["id"]))
        assert client.post(f"/api/jobs/{cancelled['id']}/cancel").json()["state"] == "cancelled"
        wait_gone(client, str(dead["id"]))
        wait_gone(client, str(cancelled["id"]))
        assert client.get(f"/api/jobs/{kept['id']}").json()["state"] == "enqueued"
        counts = client.get("/api/queues").json()["queues"][0]["counts"]
        assert counts["dead"] == 0 and counts["cancelled"] == 0 and counts["enqueued"] == 1
        for key, job in (("k-dead", dead), ("k-cancelled", cancelled)):
            again = client.post("/api/queues/q/jobs", json={"name": "job", "idempotency_key": key})
            assert again.status_code == 200 and again.json()["id"] == job["id"], again.text


def test_the_count_limit_applies_to_each_finished_state(tmp_path: Path) -> None:
    with http_server(tmp_path / "data", "--retain-max-per-queue", "1") as server:
        client = server.http
        first, second = enqueue(client, "q"), enqueue(client, "q")
        for job in (first, second):
            assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
        dead = enqueue(client, "q", max_attempts=1)
        fail_permanently(client, "q", str(dead["id"]))
        wait_gone(client, str(first["id"]))  # the older of two cancelled jobs
        assert client.get(f"/api/jobs/{second['id']}").json()["state"] == "cancelled"
        assert client.get(f"/api/jobs/{dead['id']}").json()["state"] == "dead"  # one dead: kept


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--retain-dead", "7y"], "--retain-dead '7y' is not a duration"),
        (["--retain-succeeded=-1h"], "--retain-succeeded '-1h' is negative"),
        (["--retain-max-per-queue", "-1"], "--retain-max-per-queue -1: must be 0"),
    ],
)
def test_bad_retention_flags_stop_the_server_with_a_message(argv: list[str], message: str) -> None:
    result = subprocess.run([*SERVER, *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
