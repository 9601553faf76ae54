"""Small helpers of the dashboard API tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def error_of(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """Assert an error answer's status (and the field it names); return its error object."""
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    if field is not None:
        assert error.get("field") == field, error
    return error


def batch(
    client: httpx.Client, queue: str, payloads: list[Any], name: str = "job", **fields: Any
) -> list[str]:
    """Enqueue one batch; returns the new ids."""
    r = client.post(f"/api/queues/{queue}/jobs:batch", json={"name": name, "payloads": payloads, **fields})
    assert r.status_code == 201, r.text
    ids: list[str] = r.json()["ids"]
    return ids


def kill_jobs(client: httpx.Client, queue: str, count: int) -> list[str]:
    """Claim ``count`` jobs of the queue (FIFO) and fail them for good: they are dead."""
    r = client.post(f"/api/queues/{queue}/claim", json={"worker": "killer", "limit": count})
    assert r.status_code == 200, r.text
    ids = [j["id"] for j in r.json()["jobs"]]
    assert len(ids) == count
    for job_id in ids:
        f = client.post(
            f"/api/jobs/{job_id}/fail", json={"worker": "killer", "error": "x", "retryable": False}
        )
        assert f.status_code == 200 and f.json()["state"] == "dead", f.text
    return ids


def pages(client: httpx.Client, path: str, limit: int, **params: Any) -> list[str]:
    """Every job id of a listing, page by page (bounded)."""
    out: list[str] = []
    cursor = None
    for _ in range(10_000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = client.get(path, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        out += [j["id"] for j in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the listing did not end")


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "the condition") -> Any:
    """Poll ``check`` until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
