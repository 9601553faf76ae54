"""The crash-resilient queue's walk-through: 201 once durable, 200 for a repeated key, 429 + Retry-After
under backpressure."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from httphelpers import HttpServer, http_server


def test_create_job_201_then_200_for_the_same_key(compat: httpx.Client, server: HttpServer) -> None:
    key = f"welcome-New-user-{uuid.uuid4().hex[:8]}"
    body = {
        "type": "email",
        "payload": {"email": "user@example.com"},
        "max_retries": 3,
        "idempotency_key": key,
    }
    r = compat.post("/createJob", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"job_id", "status"} and created["status"] == "pending"
    again = compat.post("/createJob", json=body)
    assert again.status_code == 200 and again.json() == created
    job = server.http.get(f"/api/jobs/{created['job_id']}").json()
    assert (job["queue"], job["name"], job["max_attempts"]) == ("default", "email", 4)
    assert job["payload"] == {"email": "user@example.com"}


def test_curl_style_form_content_type_is_still_json(compat: httpx.Client) -> None:
    """curl -d sends application/x-www-form-urlencoded; the body is JSON all the same."""
    r = compat.post(
        "/createJob",
        content=b'{"type": "email", "payload": {}}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 201, r.text


def test_bad_fields(compat: httpx.Client) -> None:
    for data, field in (
        (b'{"type": "e", "max_retries": -1}', "max_retries"),
        (b'{"type": "e", "max_retries": "3"}', "max_retries"),
        (b'{"type": "e", "idempotency_key": ""}', "idempotency_key"),
        (b'{"type": "e\\u0001"}', "type"),
        (b'{"payload": {}}', None),
    ):
        r = compat.post("/createJob", content=data)
        assert r.status_code == 422, (data, r.text)
        if field is not None:
            assert r.json()["error"]["field"] == field


def test_backpressure_is_429_with_retry_after(tmp_path: Path) -> None:
    with (
        http_server(tmp_path / "data", "--compat-http", "127.0.0.1:0", "--max-queue-jobs", "2") as proc,
        httpx.Client(base_url=proc.compat_url, timeout=30) as compat,
    ):
        for i in range(2):
            assert compat.post("/createJob", json={"type": "e", "payload": i}).status_code == 201
        r = compat.post("/createJob", json={"type": "e", "payload": 3})
        assert r.status_code == 429 and r.json()["error"]["code"] == "BUSY"
        assert int(r.headers["retry-after"]) >= 1
        # Vesper and simplequeue enqueues are refused alike; reads go on.
        assert compat.post("/jobs", json={"type": "e"}).status_code == 429
        assert compat.get("/stats").json()["jobs"]["pending"] == 2
        # Counted as the main port's refusals are, in the /metrics both listeners serve.
        metrics = compat.get("/metrics").text
        assert re.search(
            r'spitfire_backpressure_rejections_total\{protocol="http",reason="BUSY"\} 2\.0', metrics
        )
