"""POST /api/jobs:bulk and POST /api/jobs/{id}/requeue on a live server: over ids, over a filter,
what does not apply counts as failed, bad bodies change nothing, and a SIGKILL in the middle of a
large filter-bulk leaves every job done or untouched after a restart."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashhelpers import batch, error_of, kill_jobs, pages, wait_until
from httphelpers import HttpServer, enqueue, http_server


def _bulk(c: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/api/jobs:bulk", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _states(c: httpx.Client, ids: list[str]) -> list[str]:
    return [c.get(f"/api/jobs/{i}").json()["state"] for i in ids]


def test_bulk_over_ids(server: HttpServer, queue: str) -> None:
    c = server.http
    ids = batch(c, queue, [1, 2, 3, 4])
    dead = kill_jobs(c, queue, 2)
    out = _bulk(c, {"action": "retry", "ids": [*ids, "0" * 24]})
    assert out == {"matched": 4, "done": 2, "failed": 2}  # two were not dead; the unknown id is not counted
    assert _states(c, dead) == ["enqueued", "enqueued"]
    assert _bulk(c, {"action": "cancel", "ids": ids[:3]}) == {"matched": 3, "done": 3, "failed": 0}
    assert _bulk(c, {"action": "cancel", "ids": ids[:3]}) == {"matched": 3, "done": 0, "failed": 3}
    assert _bulk(c, {"action": "delete", "ids": ids[:1]}) == {"matched": 1, "done": 1, "failed": 0}
    error_of(c.get(f"/api/jobs/{ids[0]}"), 404)


def test_bulk_over_a_filter(server: HttpServer, queue: str) -> None:
    c = server.http
    qa, qb = f"{queue}-a", f"{queue}-b"
    a = batch(c, qa, list(range(5)), name="h1")
    b = batch(c, qb, list(range(3)), name="h1")
    kill_jobs(c, qa, 3)
    out = _bulk(c, {"action": "retry", "filter": {"queue": qa, "state": "dead"}})
    assert out == {"matched": 3, "done": 3, "failed": 0}
    assert set(_states(c, a)) == {"enqueued"}
    out = _bulk(c, {"action": "requeue", "filter": {"queue": qb, "state": ["enqueued"], "name": "h1"}})
    assert out == {"matched": 3, "done": 3, "failed": 0}
    listed = pages(c, "/api/jobs", 10, queue=qb, order="oldest")
    assert listed[:3] == b and len(listed) == 6
    copies = [c.get(f"/api/jobs/{i}").json() for i in listed[3:]]
    assert [j["payload"] for j in copies] == [0, 1, 2] and {j["name"] for j in copies} == {"h1"}
    out = _bulk(c, {"action": "cancel", "filter": {"queue": qb, "after": b[-1]}})
    assert out == {"matched": 3, "done": 3, "failed": 0}
    out = _bulk(c, {"action": "delete", "filter": {"queue": qb, "state": "cancelled"}})
    assert out["done"] == 3 and pages(c, "/api/jobs", 10, queue=qb, order="oldest") == b


def test_bulk_cancel_tells_the_worker_holding_the_job(server: HttpServer, queue: str) -> None:
    """A job claimed by an HTTP worker is cancelled there too: its later ack is refused."""
    c = server.http
    ids = batch(c, queue, [1])
    c.post(f"/api/queues/{queue}/claim", json={"worker": "holder"})
    assert _bulk(c, {"action": "cancel", "filter": {"queue": queue}})["done"] == 1
    error_of(c.post(f"/api/jobs/{ids[0]}/ack", json={"worker": "holder"}), 409)


def test_bad_bulk_bodies_are_422_and_change_nothing(server: HttpServer, queue: str) -> None:
    c = server.http
    ids = batch(c, queue, [1, 2])
    for body, field in [
        ({"action": "explode", "ids": ids}, "action"),
        ({"action": "retry"}, "ids"),
        ({"action": "retry", "ids": ids, "filter": {}}, "ids"),
        ({"action": "retry", "ids": []}, "ids"),
        ({"action": "retry", "ids": ["0" * 24] * 10_001}, "ids"),
        ({"action": "cancel", "filter": {"state": "exploded"}}, "filter.state"),
        ({"action": "cancel", "filter": {"queue": queue, "after": "yesterday"}}, "filter.after"),
        ({"action": "cancel", "filter": {"queue": queue, "colour": "red"}}, "filter"),
    ]:
        error_of(c.post("/api/jobs:bulk", json=body), 422, field)
    error_of(c.post("/api/jobs:bulk", content=b"{nope"), 400)
    error_of(c.post("/api/jobs:bulk", content=b" " * (2**20 + 1)), 413)
    unknown = {"action": "cancel", "ids": ["0" * 24] * 10_000}  # the most ids, none of them a job
    assert _bulk(c, unknown) == {"matched": 0, "done": 0, "failed": 0}
    assert _states(c, ids) == ["enqueued", "enqueued"]


def test_requeue_one_job(server: HttpServer, queue: str) -> None:
    c = server.http
    job = enqueue(c, queue, name="send", payload={"to": "x"}, priority=4, max_attempts=2, headers={"h": "v"})
    r = c.post(f"/api/jobs/{job['id']}/requeue")
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["id"] != job["id"] and new["state"] == "enqueued"
    for key in ("queue", "name", "payload", "priority", "max_attempts", "headers", "timeout"):
        assert new[key] == job[key], key
    error_of(c.post(f"/api/jobs/{'0' * 24}/requeue"), 404)


@pytest.mark.parametrize("action", ["cancel", "requeue"])
def test_sigkill_in_the_middle_of_a_filter_bulk(tmp_path: Path, action: str) -> None:
    """100,000 jobs, a bulk over all of them, SIGKILL once it is under way, restart: every job is
    done or untouched, none lost, none done twice."""
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
                    answer["r"] = own.post(
                        "/api/jobs:bulk", json={"action": action, "filter": {"queue": "big"}}
                    )
                except httpx.HTTPError as exc:  # the server is killed under it
                    answer["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()

        def under_way() -> bool:
            counts = c.get("/api/queues/big").json()
            return bool(counts["total"] > total if action == "requeue" else counts["counts"]["cancelled"])

        wait_until(under_way, 60, "the bulk action to start")
        assert srv.proc is not None
        srv.proc.kill()  # SIGKILL
        srv.proc.wait(15)
        thread.join(60)
        assert "r" not in answer, "the bulk finished before the kill: make it larger"
    with http_server(data) as srv:
        c = srv.http
        counts = c.get("/api/queues/big").json()
        if action == "cancel":
            assert counts["total"] == total
            done = counts["counts"]["cancelled"]
            assert 0 < done < total and counts["counts"]["enqueued"] == total - done
        else:
            copies = counts["total"] - total
            assert 0 < copies < total
            # The copies are the newest jobs: one per original, the first originals in id order
            # (whose payloads are 0, 1, ...), none twice, none skipped.
            payloads: list[int] = []
            cursor = None
            for _ in range(1000):  # bounded: at most 100 pages of 1,000
                if len(payloads) >= copies:
                    break
                params = {"queue": "big", "limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = c.get("/api/jobs", params=params).json()
                payloads += [j["payload"] for j in page["jobs"]]
                cursor = page["next_cursor"]
                assert cursor is not None
            assert payloads[:copies] == list(range(copies))[::-1]
            return
        # Finishing a cancel is sending it again: the rest are done, none twice.
        out = _bulk(c, {"action": action, "filter": {"queue": "big"}})
        assert (out["done"], out["failed"]) == (total - done, done)
        assert c.get("/api/queues/big").json()["counts"]["cancelled"] == total
