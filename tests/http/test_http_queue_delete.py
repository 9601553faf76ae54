"""DELETE /api/queues/{queue}[?force=true] and --max-queues over HTTP, against a real server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, enqueue, http_server


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """A server that holds at most 3 queues."""
    with http_server(tmp_path_factory.mktemp("limited") / "data", "--max-queues", "3") as proc:
        yield proc


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    message: str = err["message"]
    return message


def test_delete_an_empty_queue_then_reuse_its_name(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue)
    claimed = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "w"}).json()["jobs"]
    assert [j["id"] for j in claimed] == [job["id"]]
    assert server.http.post(f"/api/jobs/{job['id']}/ack", json={"worker": "w"}).status_code == 200
    r = server.http.delete(f"/api/queues/{queue}")
    assert r.status_code == 200, r.text
    assert r.json() == {"queue": queue, "jobs": 1, "pending": 0}
    _error(server.http.get(f"/api/queues/{queue}"), 404, "QUEUE_NOT_FOUND")
    _error(server.http.get(f"/api/jobs/{job['id']}"), 404, "NOT_FOUND")
    assert queue not in [q["name"] for q in server.http.get("/api/queues").json()["queues"]]
    assert not (server.data_dir / "queues" / queue).exists()
    _error(server.http.delete(f"/api/queues/{queue}"), 404, "QUEUE_NOT_FOUND")
    again = enqueue(server.http, queue)
    assert server.http.get(f"/api/queues/{queue}").json()["total"] == 1 and again["id"] != job["id"]


def test_pending_jobs_need_force(server: HttpServer, queue: str) -> None:
    enqueue(server.http, queue)
    enqueue(server.http, queue, delay_ms=60_000)
    claimed = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "w"}).json()["jobs"]
    message = _error(server.http.delete(f"/api/queues/{queue}"), 409, "QUEUE_NOT_EMPTY")
    assert "2 pending job(s)" in message and "force" in message
    _error(server.http.delete(f"/api/queues/{queue}?force=false"), 409, "QUEUE_NOT_EMPTY")
    _error(server.http.delete(f"/api/queues/{queue}?force=maybe"), 422, "INVALID_ARGUMENT")
    assert server.http.get(f"/api/queues/{queue}").json()["total"] == 2
    r = server.http.delete(f"/api/queues/{queue}?force=true")
    assert r.status_code == 200 and r.json() == {"queue": queue, "jobs": 2, "pending": 2}
    # The HTTP worker's late ack of a dropped job is refused; nothing comes back.
    late = server.http.post(f"/api/jobs/{claimed[0]['id']}/ack", json={"worker": "w"})
    _error(late, 404, "NOT_FOUND")
    _error(server.http.get(f"/api/queues/{queue}"), 404, "QUEUE_NOT_FOUND")


def test_the_route_is_in_the_openapi_document(server: HttpServer) -> None:
    doc = server.http.get("/openapi.json").json()
    delete = doc["paths"]["/api/queues/{queue}"]["delete"]
    assert {"200", "404", "409"} <= set(delete["responses"])
    assert [p["name"] for p in delete["parameters"]] == ["queue", "force"]
    assert "QueueDeletedOut" in doc["components"]["schemas"]


def test_max_queues_answers_409_until_a_queue_is_deleted(limited: HttpServer) -> None:
    for name in ("a", "b", "c"):
        enqueue(limited.http, name)
    message = _error(limited.http.post("/api/queues/d/jobs", json={"name": "j"}), 409, "TOO_MANY_QUEUES")
    assert "limit of 3 queues" in message and "--max-queues" in message
    batch = limited.http.post("/api/queues/d/jobs:batch", json={"name": "j", "payloads": [1]})
    _error(batch, 409, "TOO_MANY_QUEUES")
    enqueue(limited.http, "a")  # existing queues go on
    assert limited.http.delete("/api/queues/b?force=1").status_code == 200
    enqueue(limited.http, "d")
    names = sorted(q["name"] for q in limited.http.get("/api/queues").json()["queues"])
    assert names == ["a", "c", "d"]
    assert sorted(os.listdir(limited.data_dir / "queues")) == ["a", "c", "d"]
