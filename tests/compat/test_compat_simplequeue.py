"""simplequeue's walk-through against a live server's --compat-http listener: statuses and shapes."""

from __future__ import annotations

import uuid

import httpx
import pytest
from httphelpers import HttpServer


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def status(compat: httpx.Client, topic: str) -> dict[str, int]:
    r = compat.get(f"/topics/{topic}/status")
    assert r.status_code == 200, r.text
    body: dict[str, int] = r.json()
    return body


def test_the_walk_through(compat: httpx.Client, topic: str, server: HttpServer) -> None:
    base = f"/topics/{topic}"
    assert status(compat, topic) == {"pending": 0, "claimed": 0, "completed": 0, "total": 0}
    r = compat.post(f"{base}/enqueue", json={"id": "job-1", "payload": {"item": "book"}})
    assert r.status_code == 201 and r.json() == {"id": "job-1"}
    generated = compat.post(f"{base}/enqueue", json={"payload": {"item": "pen"}})
    assert generated.status_code == 201
    other = generated.json()["id"]
    assert other and other != "job-1"
    assert status(compat, topic) == {"pending": 2, "claimed": 0, "completed": 0, "total": 2}

    claim = compat.post(f"{base}/claim", json={"worker_id": "worker-1"})
    assert claim.status_code == 200
    assert claim.json() == {"id": "job-1", "payload": {"item": "book"}, "attempts": 1}
    assert status(compat, topic)["claimed"] == 1
    assert compat.post(f"{base}/heartbeat", json={"job_id": "job-1"}).status_code == 200
    ack = compat.post(f"{base}/ack", json={"job_id": "job-1"})
    assert ack.status_code == 200 and ack.json() == {"status": "ok"}
    assert status(compat, topic) == {"pending": 1, "claimed": 0, "completed": 1, "total": 2}

    second = compat.post(f"{base}/claim", json={"worker_id": "worker-2"})
    assert second.json() == {"id": other, "payload": {"item": "pen"}, "attempts": 1}
    # The lease is held by the claiming worker, in the engine.
    job = server.http.get(f"/api/jobs/{other}").json()
    assert (job["state"], job["worker"], job["name"]) == ("running", "simplequeue:worker-2", topic)
    assert compat.post(f"{base}/nack", json={"job_id": other}).status_code == 200
    assert status(compat, topic)["pending"] == 1
    again = compat.post(f"{base}/claim", json={"worker_id": "worker-1"}).json()
    assert again == {"id": other, "payload": {"item": "pen"}, "attempts": 1}  # the nack's claim not counted
    assert compat.post(f"{base}/ack", json={"job_id": other}).status_code == 200
    empty = compat.post(f"{base}/claim", json={"worker_id": "worker-1"})
    assert empty.status_code == 204 and empty.content == b""
    assert status(compat, topic) == {"pending": 0, "claimed": 0, "completed": 2, "total": 2}
    health = compat.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_an_id_enqueued_twice_is_one_job(compat: httpx.Client, topic: str) -> None:
    first = compat.post(f"/topics/{topic}/enqueue", json={"id": "same", "payload": 1})
    second = compat.post(f"/topics/{topic}/enqueue", json={"id": "same", "payload": 2})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == {"id": "same"}
    assert status(compat, topic)["total"] == 1


def test_ids_are_per_topic(compat: httpx.Client, topic: str) -> None:
    other = topic + "-b"
    compat.post(f"/topics/{topic}/enqueue", json={"id": "x", "payload": "a"})
    compat.post(f"/topics/{other}/enqueue", json={"id": "x", "payload": "b"})
    claimed = compat.post(f"/topics/{other}/claim", json={"worker_id": "w"}).json()
    assert claimed["payload"] == "b"
    # "x" of the first topic is not claimed: acking it there is refused, and the other's lease stays.
    refused = compat.post(f"/topics/{topic}/ack", json={"job_id": "x"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE"
    assert compat.post(f"/topics/{other}/ack", json={"job_id": "x"}).status_code == 200


def test_unknown_jobs_and_topics(compat: httpx.Client, topic: str) -> None:
    for verb in ("ack", "nack", "heartbeat"):
        r = compat.post(f"/topics/{topic}/{verb}", json={"job_id": "nope"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", r.text
    for bad in ("a.b", "a:b", "-a", "x" * 129, "%C3%A9"):
        r = compat.post(f"/topics/{bad}/enqueue", json={"payload": 1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "topic", (bad, r.text)
        assert compat.get(f"/topics/{bad}/status").status_code == 422
    claim = compat.post(f"/topics/{topic}/claim", json={})
    assert claim.status_code == 422 and claim.json()["error"]["field"] == "worker_id"


def test_a_job_an_sdk_worker_holds_is_not_acked_for_it(
    compat: httpx.Client, topic: str, server: HttpServer
) -> None:
    """A topic is a Spitfire queue: an SDK or HTTP worker of the main API may take its jobs, and the
    simplequeue routes act only for claims made through them."""
    compat.post(f"/topics/{topic}/enqueue", json={"id": "j", "payload": 1})
    (held,) = server.http.post(f"/api/queues/{topic}/claim", json={"worker": "main"}).json()["jobs"]
    assert held["name"] == topic and held["idempotency_key"] == "j"
    for verb in ("ack", "nack", "heartbeat"):
        r = compat.post(f"/topics/{topic}/{verb}", json={"job_id": "j"})
        assert r.status_code == 409 and "http:main" in r.json()["error"]["message"], r.text
    assert server.http.get(f"/api/jobs/{held['id']}").json()["worker"] == "http:main"
