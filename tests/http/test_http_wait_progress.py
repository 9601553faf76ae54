"""GET /api/jobs/{id}?wait_ms= (answered when the job is final, or at wait_ms), progress in the job JSON
and as ``event: progress``, and the HTTP-worker defects fixed earlier (second ack's reason, stale
workers not active, a long poll on a queue not created yet), against a live server."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, enqueue, http_server
from test_http_api import error_of
from test_http_events import EventReader

import spitfire


def test_wait_ms_answers_when_the_job_is_final(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue, payload={"x": 1})
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(server.http.get, f"/api/jobs/{job['id']}", params={"wait_ms": 20_000})
        time.sleep(0.3)
        assert not waiting.done()
        server.http.post(f"/api/queues/{queue}/claim", json={"worker": "w"})
        server.http.post(f"/api/jobs/{job['id']}/ack", json={"worker": "w", "result": {"ok": True}})
        done = waiting.result(timeout=30)
    assert done.status_code == 200 and done.json()["state"] == "succeeded"
    assert done.json()["result"] == {"ok": True} and time.monotonic() - started < 15


def test_wait_ms_times_out_with_the_job_as_it_is(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue, delay_ms=3_600_000)
    started = time.monotonic()
    r = server.http.get(f"/api/jobs/{job['id']}", params={"wait_ms": 300})
    assert r.status_code == 200 and r.json()["state"] == "scheduled" and time.monotonic() - started >= 0.25
    for bad in ("30001", "-1", "x"):
        err = error_of(server.http.get(f"/api/jobs/{job['id']}", params={"wait_ms": bad}), 422)
        assert err["field"] == "wait_ms"
    error_of(server.http.get("/api/jobs/019b76daa800000000964b48", params={"wait_ms": 100}), 404)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(server.http.get, f"/api/jobs/{job['id']}", params={"wait_ms": 20_000})
        time.sleep(0.3)
        server.http.delete(f"/api/jobs/{job['id']}")
        error_of(waiting.result(timeout=30), 404)


def test_progress_in_the_job_json_and_the_event_stream(server: HttpServer, queue: str) -> None:
    app = spitfire.App(f"tcp://127.0.0.1:{server.tcp_port}")
    release = threading.Event()

    @app.job(queue=queue)
    def resize() -> None:
        spitfire.context().progress(0.4, "resized 4 of 10")
        release.wait(20)

    job_id = resize.enqueue()
    reader = EventReader(server, f"?queue={queue}")
    worker = spitfire.Worker(app, handle_signals=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        event, _ = reader.wait_for(lambda e: e["event"] == "progress", timeout=20)
        data = json.loads(event["data"])
        assert data["id"] == job_id and data["value"] == 0.4 and data["message"] == "resized 4 of 10"
        progress = server.http.get(f"/api/jobs/{job_id}").json()["progress"]
        assert progress["value"] == 0.4 and progress["message"] == "resized 4 of 10"
        assert progress["at"] <= time.time()
    finally:
        release.set()
        reader.close()
        spitfire.Client(app.url).wait(job_id, timeout=30)
        worker.stop()
        thread.join(30)
    assert server.http.get(f"/api/jobs/{job_id}").json()["progress"] is None


def test_second_ack_names_the_real_reason(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue)
    server.http.post(f"/api/queues/{queue}/claim", json={"worker": "twice"})
    assert server.http.post(f"/api/jobs/{job['id']}/ack", json={"worker": "twice"}).status_code == 200
    err = error_of(server.http.post(f"/api/jobs/{job['id']}/ack", json={"worker": "twice"}), 409)
    assert "already succeeded" in str(err["message"]) and "expired" not in str(err["message"])


def test_long_poll_on_a_queue_not_created_yet_waits(server: HttpServer, queue: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(
            server.http.post, f"/api/queues/{queue}/claim", json={"worker": "early", "wait_ms": 20_000}
        )
        time.sleep(0.3)
        assert not waiting.done()
        job = enqueue(server.http, queue)
        claimed = waiting.result(timeout=30)
    assert claimed.status_code == 200 and [j["id"] for j in claimed.json()["jobs"]] == [job["id"]]
    assert time.monotonic() - started < 15
    empty = server.http.post(f"/api/queues/{queue}-never/claim", json={"worker": "early"})
    assert empty.status_code == 200 and empty.json()["jobs"] == []
    error_of(server.http.post("/api/queues/bad%20name/claim", json={"worker": "early"}), 422)


@pytest.fixture
def quick_server(tmp_path: Path) -> object:
    with http_server(tmp_path / "data", "--heartbeat-interval", "0.2") as proc:
        yield proc


def test_quiet_http_workers_are_not_active_nor_counted(quick_server: HttpServer, queue: str) -> None:
    http = quick_server.http
    base = http.get("/api/stats").json()["workers"]
    failing = http.post("/api/queues/bad%20name/claim", json={"worker": "never"})
    assert failing.status_code == 422
    http.post(f"/api/queues/{queue}/claim", json={"worker": "quiet"})
    assert http.get("/api/stats").json()["workers"] == base + 1
    ids = {w["id"]: w for w in http.get("/api/workers").json()["workers"]}
    assert "http:never" not in ids and ids["http:quiet"]["active"] is True
    time.sleep(0.8)  # over 3 heartbeat intervals (0.6 s) without a request
    ids = {w["id"]: w for w in http.get("/api/workers").json()["workers"]}
    assert ids["http:quiet"]["active"] is False
    assert http.get("/api/stats").json()["workers"] == base
