"""Seed a live server through its HTTP API with jobs in every interesting state, for the browser
tests and the screenshots: succeeded (with a result), dead (with an error and a traceback),
retrying, scheduled, enqueued and cancelled jobs over a few queues, one paused queue, and two
recurring schedules (where the server has them)."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

TRACEBACK = """Traceback (most recent call last):
  File "app/jobs.py", line 42, in send_email
    smtp.send(message)
  File "app/smtp.py", line 17, in send
    raise ConnectionRefusedError("smtp.example.com:587 refused the connection")
ConnectionRefusedError: smtp.example.com:587 refused the connection"""


@dataclass
class Seeded:
    """The ids the tests look for."""

    dead: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)
    enqueued: list[str] = field(default_factory=list)


def _enqueue(client: httpx.Client, queue: str, name: str, **fields: object) -> str:
    r = client.post(f"/api/queues/{queue}/jobs", json={"name": name, **fields})
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    return job_id


def _claim(client: httpx.Client, queue: str, worker: str, limit: int) -> list[str]:
    r = client.post(f"/api/queues/{queue}/claim", json={"worker": worker, "limit": limit})
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["jobs"]]


def seed(client: httpx.Client) -> Seeded:
    """Jobs in several states over the queues emails, reports and thumbnails (paused)."""
    out = Seeded()
    for i in range(6):
        payload = {"to": f"user{i}@example.com", "template": "welcome"}
        _enqueue(client, "emails", "send_email", payload=payload)
    for job_id in _claim(client, "emails", "mailer-1", 4):
        r = client.post(f"/api/jobs/{job_id}/ack", json={"worker": "mailer-1", "result": {"sent": True}})
        assert r.status_code == 200, r.text
        out.succeeded.append(job_id)
    for i in range(5):
        _enqueue(client, "reports", "build_report", payload={"report": "daily", "day": i + 1}, max_attempts=1)
    for job_id in _claim(client, "reports", "reporter-1", 3):
        r = client.post(
            f"/api/jobs/{job_id}/fail",
            json={"worker": "reporter-1", "error": "ConnectionRefusedError: smtp.example.com:587 refused",
                  "traceback": TRACEBACK, "retryable": False},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        out.dead.append(job_id)
    _enqueue(client, "reports", "build_report", payload={"report": "weekly"}, delay_ms=3_600_000)
    _enqueue(client, "thumbnails", "resize", payload={"image": "cat.png", "sizes": [64, 128]})
    cancel = _enqueue(client, "thumbnails", "resize", payload={"image": "dog.png"})
    assert client.post(f"/api/jobs/{cancel}/cancel").status_code == 200
    assert client.post("/api/queues/thumbnails/pause").status_code == 200
    out.enqueued.append(_enqueue(client, "emails", "send_email", payload={"to": "last@example.com"}))
    schedules = (("nightly-report", "0 3 * * *", "Europe/Berlin"), ("digest", "30 9 * * 1-5", "UTC"))
    for name, cron, tz in schedules:
        body = {"name": name, "cron": cron, "timezone": tz, "queue": "reports", "job": "build_report"}
        r = client.post("/api/schedules", json=body)
        assert r.status_code in (200, 201, 404, 405), r.text  # 404/405: a server without schedules
    return out
