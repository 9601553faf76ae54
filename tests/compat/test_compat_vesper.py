"""Vesper's walk-through against a live server's --compat-http listener: statuses and JSON shapes."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import httpx
from httphelpers import HttpServer

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
JOB_FIELDS = {"job_id", "type", "queue", "priority", "payload", "status", "retries", "error"}
JOB_FIELDS |= {"created_at", "updated_at"}


def test_post_jobs_answers_201_with_the_vesper_job_and_the_same_key_gives_the_same_job(
    compat: httpx.Client, server: HttpServer
) -> None:
    key = f"k-{uuid.uuid4().hex}"
    body = {"type": "resize_image", "priority": 7, "payload": {"image_url": "cat.png", "width": 640}}
    r = compat.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    job = r.json()
    assert set(job) == JOB_FIELDS
    assert job["type"] == "resize_image" and job["priority"] == 7 and job["queue"] == "default"
    assert job["payload"] == {"image_url": "cat.png", "width": 640}
    assert (job["status"], job["retries"], job["error"]) == ("pending", 0, "")
    assert RFC3339.match(job["created_at"]) and RFC3339.match(job["updated_at"])
    datetime.fromisoformat(job["created_at"])  # parses as a date-time
    again = compat.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["job_id"] == job["job_id"]
    # The same job on the main API: a Spitfire job with the type as its handler name.
    ours = server.http.get(f"/api/jobs/{job['job_id']}").json()
    assert (ours["queue"], ours["name"], ours["idempotency_key"], ours["state"]) == (
        "default", "resize_image", key, "enqueued",
    )  # fmt: skip


def test_get_job_is_200_and_an_unknown_id_is_404(compat: httpx.Client) -> None:
    queue = f"v-{uuid.uuid4().hex[:8]}"
    job = compat.post("/jobs", json={"type": "t", "queue": queue}).json()
    r = compat.get(f"/jobs/{job['job_id']}")
    assert r.status_code == 200 and r.json() == job
    missing = compat.get("/jobs/no-such-job")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_priority_higher_first_and_fifo_within_one(compat: httpx.Client, server: HttpServer) -> None:
    queue = f"prio-{uuid.uuid4().hex[:8]}"
    ids = [compat.post("/jobs", json={"type": "t", "queue": queue, "priority": p}).json()["job_id"]
           for p in (1, 9, 1, 9)]  # fmt: skip
    claimed = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "w", "limit": 4}).json()["jobs"]
    assert [j["id"] for j in claimed] == [ids[1], ids[3], ids[0], ids[2]]
    assert {compat.get(f"/jobs/{i}").json()["status"] for i in ids} == {"processing"}


def test_workers_stats_health_ready_metrics(compat: httpx.Client) -> None:
    workers = compat.get("/workers")
    assert workers.status_code == 200
    body = workers.json()
    assert set(body) == {"total_workers", "machines", "workers"}
    assert body["total_workers"] == len(body["workers"])
    stats = compat.get("/stats").json()
    assert set(stats) == {"total_jobs", "jobs", "queues", "total_workers", "uptime_seconds"}
    assert set(stats["jobs"]) == {"pending", "processing", "done", "dlq", "failed", "total"}
    assert compat.get("/health").status_code == 200
    ready = compat.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = compat.get("/metrics")
    assert metrics.status_code == 200 and "spitfire_jobs" in metrics.text


def test_bad_bodies_are_4xx_naming_the_field(compat: httpx.Client) -> None:
    cases = [
        (b"{not json", 400, None),
        (b'{"type": 5}', 422, "type"),
        (b'{"type": "a\\u0000b"}', 422, "type"),  # the engine's rule, named as the client sent it
        (b'{"type": "t", "priority": 11}', 422, "priority"),
        (b'{"type": "t", "queue": "../etc"}', 422, "queue"),
        (b'{"type": "t", "unknown": 1}', 422, None),
        (b"[]", 422, None),
    ]
    for data, status, field in cases:
        r = compat.post("/jobs", content=data)
        assert r.status_code == status, (data, r.text)
        if field is not None:
            assert r.json()["error"]["field"] == field, (data, r.text)
    empty_key = compat.post("/jobs", json={"type": "t"}, headers={"Idempotency-Key": ""})
    assert empty_key.status_code == 422
