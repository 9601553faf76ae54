"""POST /api/queues/{queue}/purge and PUT /api/queues/{queue} on a live server: only the asked
states go, bad requests are 422/404 and change nothing, the durability mode survives a restart, and
a SIGKILL in the middle of a large purge leaves every job deleted or untouched."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from dashhelpers import batch, error_of, kill_jobs, wait_until
from httphelpers import HttpServer, http_server


def _purge(c: httpx.Client, queue: str, state: str | list[str]) -> dict[str, Any]:
    r = c.post(f"/api/queues/{queue}/purge", params={"state": state})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_purge_deletes_only_the_asked_states(server: HttpServer, queue: str) -> None:
    c = server.http
    ids = batch(c, queue, list(range(6)))
    dead = kill_jobs(c, queue, 2)
    c.post(f"/api/jobs/{ids[-1]}/cancel")
    assert _purge(c, queue, "dead,cancelled") == {"queue": queue, "matched": 3, "deleted": 3, "failed": 0}
    for job_id in [*dead, ids[-1]]:
        error_of(c.get(f"/api/jobs/{job_id}"), 404)
    counts = c.get(f"/api/queues/{queue}").json()["counts"]
    assert counts["enqueued"] == 3 and counts["dead"] == counts["cancelled"] == 0
    assert _purge(c, queue, ["enqueued", "succeeded"])["deleted"] == 3
    assert c.get(f"/api/queues/{queue}").json()["total"] == 0


def test_purge_tells_the_http_worker_holding_a_job(server: HttpServer, queue: str) -> None:
    c = server.http
    (job_id,) = batch(c, queue, [1])
    c.post(f"/api/queues/{queue}/claim", json={"worker": "holder"})
    assert _purge(c, queue, "running")["deleted"] == 1
    error_of(c.post(f"/api/jobs/{job_id}/ack", json={"worker": "holder"}), 404)


def test_bad_purges_and_updates_change_nothing(server: HttpServer, queue: str) -> None:
    c = server.http
    ids = batch(c, queue, [1, 2])
    error_of(c.post(f"/api/queues/{queue}/purge"), 422, "state")
    error_of(c.post(f"/api/queues/{queue}/purge", params={"state": "finished"}), 422, "state")
    error_of(c.post("/api/queues/no-such-queue-x/purge", params={"state": "dead"}), 404)
    for body, field in [({}, "durability"), ({"durability": "fast"}, "durability"),
                        ({"durability": "sync", "colour": "red"}, None)]:  # fmt: skip
        error_of(c.put(f"/api/queues/{queue}", json=body), 422, field)
    error_of(c.put(f"/api/queues/{queue}", content=b"{nope"), 400)
    q = c.get(f"/api/queues/{queue}").json()
    assert q["total"] == 2 and q["durability"] == "group"
    assert [c.get(f"/api/jobs/{i}").json()["state"] for i in ids] == ["enqueued", "enqueued"]


def test_put_durability_is_durable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data) as srv:
        r = srv.http.put("/api/queues/fresh", json={"durability": "sync"})
        assert r.status_code == 200, r.text
        assert r.json()["durability"] == "sync" and r.json()["total"] == 0  # created by the PUT
        assert srv.http.put("/api/queues/fresh", json={"durability": "async"}).json()["durability"] == "async"
    with http_server(data) as srv:
        assert srv.http.get("/api/queues/fresh").json()["durability"] == "async"


def test_sigkill_in_the_middle_of_a_purge(tmp_path: Path) -> None:
    """100,000 jobs, a purge of them all, SIGKILL once it is under way, restart: each job is there
    or gone, none half-deleted; purging again deletes exactly the rest."""
    total, per_batch = 100_000, 10_000
    data = tmp_path / "data"
    with http_server(data) as srv:
        c = srv.http
        for start in range(0, total, per_batch):
            batch(c, "big", list(range(start, start + per_batch)))
        answer: dict[str, Any] = {}

        def run() -> None:
            with httpx.Client(base_url=srv.url, timeout=120) as own:
                try:
                    answer["r"] = own.post("/api/queues/big/purge", params={"state": "enqueued"})
                except httpx.HTTPError as exc:  # the server is killed under it
                    answer["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda: c.get("/api/queues/big").json()["total"] < total, 60, "the purge to start")
        assert srv.proc is not None
        srv.proc.kill()  # SIGKILL
        srv.proc.wait(15)
        thread.join(60)
        assert "r" not in answer, "the purge finished before the kill: make it larger"
    with http_server(data) as srv:
        c = srv.http
        q = c.get("/api/queues/big").json()
        left = q["total"]
        assert 0 < left < total and q["counts"]["enqueued"] == left
        # The jobs left are the newest (a purge walks in id order): the payloads total - left ...
        page = c.get("/api/jobs", params={"queue": "big", "limit": 1, "order": "oldest"}).json()
        assert page["jobs"][0]["payload"] == total - left
        assert _purge(c, "big", "enqueued") == {"queue": "big", "matched": left, "deleted": left, "failed": 0}
        assert c.get("/api/queues/big").json()["total"] == 0
