"""The HTTP API of DESIGN.md section 3 against a live spitfire-server: every route's success and
error cases (status codes, error shape, job JSON)."""

from __future__ import annotations

import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, enqueue

JOB_FIELDS = {
    "id", "queue", "name", "payload", "state", "priority", "created_at", "updated_at", "run_at", "attempts",
    "max_attempts", "backoff", "timeout", "idempotency_key", "headers", "errors", "result", "history",
    "lease_until", "worker", "progress",
}  # fmt: skip


def error_of(r: object, status: int, code: str | None = None) -> dict[str, object]:
    """Assert an error answer's status and shape; return its error object."""
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    err: dict[str, object] = r.json()["error"]  # type: ignore[attr-defined]
    assert isinstance(err["code"], str) and isinstance(err["message"], str)
    if code is not None:
        assert err["code"] == code, err
    return err


# -- enqueue ------------------------------------------------------------------------------------------


def test_enqueue_returns_every_field_and_get_finds_it(server: HttpServer, queue: str) -> None:
    body = {
        "name": "send_email",
        "payload": {"to": "a@b.c", "n": [1, 2.5, None, True]},
        "priority": 7,
        "delay_ms": 60_000,
        "max_attempts": 3,
        "backoff": {"kind": "fixed", "base": 2},
        "timeout_ms": 1500,
        "headers": {"trace": "t-1"},
    }
    r = server.http.post(f"/api/queues/{queue}/jobs", json=body)
    assert r.status_code == 201, r.text
    job = r.json()
    assert set(job) == JOB_FIELDS
    assert job["queue"] == queue and job["name"] == "send_email" and job["state"] == "scheduled"
    assert job["payload"] == body["payload"]
    assert job["priority"] == 7 and job["max_attempts"] == 3 and job["timeout"] == 1.5
    assert job["backoff"]["kind"] == "fixed" and job["backoff"]["base"] == 2
    assert job["run_at"] > time.time() + 50
    assert job["headers"] == {"trace": "t-1"}
    got = server.http.get(f"/api/jobs/{job['id']}").json()
    assert got["id"] == job["id"] and got["payload"] == body["payload"]


def test_payload_is_stored_as_msgpack_of_the_json_value(server: HttpServer, queue: str) -> None:
    """What a Python worker receives from an HTTP enqueue equals what the SDK sends."""
    job = enqueue(server.http, queue, payload={"to": "x"})
    r = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "msgpack"})
    (claimed,) = r.json()["jobs"]
    assert claimed["id"] == job["id"] and claimed["payload"] == {"to": "x"}
    assert msgspec.msgpack.encode({"to": "x"}) == msgspec.msgpack.encode(claimed["payload"])


def test_idempotency_key_header_and_field(server: HttpServer, queue: str) -> None:
    url = f"/api/queues/{queue}/jobs"
    first = server.http.post(url, json={"name": "a"}, headers={"Idempotency-Key": "k-1"})
    again = server.http.post(url, json={"name": "a"}, headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    by_field = server.http.post(url, json={"name": "a", "idempotency_key": "k-1"})
    assert by_field.status_code == 200 and by_field.json()["id"] == first.json()["id"]
    clash = server.http.post(
        url, json={"name": "a", "idempotency_key": "k-2"}, headers={"Idempotency-Key": "k-1"}
    )
    assert error_of(clash, 422)["field"] == "idempotency_key"


def test_bad_input_answers_400_or_422_naming_the_field(server: HttpServer, queue: str) -> None:
    url = f"/api/queues/{queue}/jobs"
    error_of(server.http.post(url, content=b'{"name": '), 400, "BAD_JSON")
    error_of(server.http.post(url, content=b"[1, 2"), 400)
    cases = [
        ({"name": 5}, "name"),
        ({"name": "a", "priority": 11}, "priority"),
        ({"name": "a", "priority": "high"}, "priority"),
        ({"name": "a", "delay_ms": -1}, "delay_ms"),
        ({"name": "a", "max_attempts": 0}, "max_attempts"),
        ({"name": "a", "backoff": {"kind": "random"}}, "backoff.kind"),
        ({"name": "a", "headers": {"k": 1}}, "headers"),
        ({"name": "a", "delay_ms": 10, "run_at": time.time() + 100}, "delay"),
        ({"name": "bad\x00name"}, "name"),
        ({}, "name"),
    ]
    for body, field in cases:
        err = error_of(server.http.post(url, json=body), 422)
        assert err["field"] == field, (body, err)
    err = error_of(server.http.post(url, json={"name": "a", "colour": "red"}), 422)
    assert "colour" in str(err["message"])
    error_of(server.http.get(f"/api/queues/{queue}"), 404)  # nothing was created, not even the queue
    for bad in ("-dash", "%C3%9D%25", "x" * 129):  # not a directory name the storage can hold
        for path in (f"/api/queues/{bad}/jobs", f"/api/queues/{bad}/jobs:batch"):
            body = {"name": "a", "payloads": [1]} if path.endswith("batch") else {"name": "a"}
            assert error_of(server.http.post(path, json=body), 422)["field"] == "queue"


def test_too_large_answers_413(server: HttpServer, queue: str) -> None:
    """The fixture's server takes payloads up to 4096 bytes and bodies up to ~72 KiB."""
    err = error_of(
        server.http.post(f"/api/queues/{queue}/jobs", json={"name": "a", "payload": "x" * 5000}), 413
    )
    assert err["code"] == "PAYLOAD_TOO_LARGE" and err["field"] == "payload"
    huge = b'{"name": "a", "payload": "' + b"y" * 200_000 + b'"}'
    error_of(server.http.post(f"/api/queues/{queue}/jobs", content=huge), 413, "TOO_LARGE")


def test_batch_enqueue(server: HttpServer, queue: str) -> None:
    url = f"/api/queues/{queue}/jobs:batch"
    r = server.http.post(url, json={"name": "b", "payloads": [{"i": i} for i in range(5)], "priority": 2})
    assert r.status_code == 201, r.text
    out = r.json()
    assert len(out["ids"]) == 5 and out["created"] == [True] * 5
    job = server.http.get(f"/api/jobs/{out['ids'][3]}").json()
    assert job["payload"] == {"i": 3} and job["priority"] == 2
    keyed = {"name": "b", "payloads": [1, 2], "idempotency_keys": ["x", "y"]}
    assert server.http.post(url, json=keyed).status_code == 201
    again = server.http.post(url, json=keyed)
    assert again.status_code == 200 and again.json()["created"] == [False, False]
    assert error_of(server.http.post(url, json={"name": "b", "payloads": []}), 422)["field"] == "payloads"
    mismatch = {"name": "b", "payloads": [1, 2], "idempotency_keys": ["x"]}
    assert error_of(server.http.post(url, json=mismatch), 422)["field"] == "idempotency_keys"


# -- jobs ---------------------------------------------------------------------------------------------


def test_unknown_job_answers_404(server: HttpServer) -> None:
    for method, path in [
        ("GET", "/api/jobs/nope"),
        ("DELETE", "/api/jobs/nope"),
        ("POST", "/api/jobs/nope/retry"),
        ("POST", "/api/jobs/nope/cancel"),
    ]:
        error_of(server.http.request(method, path), 404, "NOT_FOUND")
    error_of(server.http.get("/api/no/such/route"), 404, "ROUTE_NOT_FOUND")
    wrong = server.http.put("/api/jobs/nope")
    error_of(wrong, 405, "METHOD_NOT_ALLOWED")
    assert wrong.headers["allow"] == "GET, DELETE"
    assert server.http.get("/api/queues/q/pause").headers["allow"] == "POST"


def test_cancel_retry_delete(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue)
    r = server.http.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    error_of(server.http.post(f"/api/jobs/{job['id']}/cancel"), 409, "INVALID_STATE")
    r = server.http.post(f"/api/jobs/{job['id']}/retry")
    assert r.status_code == 200 and r.json()["state"] == "enqueued"
    error_of(server.http.post(f"/api/jobs/{job['id']}/retry"), 409, "INVALID_STATE")
    history = [t["state"] for t in r.json()["history"]]
    assert history == ["enqueued", "cancelled", "enqueued"]
    assert server.http.delete(f"/api/jobs/{job['id']}").status_code == 200
    error_of(server.http.get(f"/api/jobs/{job['id']}"), 404)


def test_search_by_id_key_and_name(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue, name=f"{queue}-handler", idempotency_key=f"{queue}-key")
    for q in (job["id"], f"{queue}-key", f"{queue}-handler"):
        r = server.http.get("/api/jobs", params={"q": q})
        assert r.status_code == 200 and [j["id"] for j in r.json()["jobs"]] == [job["id"]], q
    assert server.http.get("/api/jobs", params={"q": "nothing-like-this"}).json()["jobs"] == []
    # Without q it lists every job (GET /api/jobs is also the cross-queue listing).
    assert job["id"] in [j["id"] for j in server.http.get("/api/jobs", params={"limit": 1000}).json()["jobs"]]
    assert error_of(server.http.get("/api/jobs", params={"q": "x", "limit": 0}), 422)["field"] == "limit"


# -- queues -------------------------------------------------------------------------------------------


def test_list_by_state_with_cursor_pagination(server: HttpServer, queue: str) -> None:
    ids = [enqueue(server.http, queue, payload=i)["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, object] = {"state": "enqueued", "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = server.http.get(f"/api/queues/{queue}/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        enqueue(server.http, queue, payload="inserted while paging")  # newer: never on a later page
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    oldest = server.http.get(f"/api/queues/{queue}/jobs", params={"order": "oldest", "limit": 1}).json()
    assert oldest["jobs"][0]["id"] == ids[0]
    assert error_of(server.http.get(f"/api/queues/{queue}/jobs?state=done"), 422)["field"] == "state"
    assert error_of(server.http.get(f"/api/queues/{queue}/jobs?limit=x"), 422)["field"] == "limit"
    error_of(server.http.get(f"/api/queues/{queue}/jobs?cursor=zz"), 422)
    error_of(server.http.get("/api/queues/no-such-queue/jobs"), 404, "QUEUE_NOT_FOUND")


def test_queues_counts_pause_and_resume(server: HttpServer, queue: str) -> None:
    enqueue(server.http, queue)
    enqueue(server.http, queue, delay_ms=60_000)
    queues = {q["name"]: q for q in server.http.get("/api/queues").json()["queues"]}
    q = queues[queue]
    assert q["counts"]["enqueued"] == 1 and q["counts"]["scheduled"] == 1 and q["total"] == 2
    assert q["paused"] is False and q["latency"] >= 0
    r = server.http.post(f"/api/queues/{queue}/pause")
    assert r.status_code == 200 and r.json()["paused"] is True
    claimed = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "p"}).json()
    assert claimed["jobs"] == []  # a paused queue delivers nothing
    assert server.http.get(f"/api/queues/{queue}").json()["paused"] is True
    assert server.http.post(f"/api/queues/{queue}/resume").json()["paused"] is False
    for action in ("pause", "resume"):
        error_of(server.http.post(f"/api/queues/no-such-queue/{action}"), 404, "QUEUE_NOT_FOUND")
    # A claim on a queue not created yet finds nothing (a long poll waits for its first job).
    assert server.http.post("/api/queues/no-such-queue/claim").json()["jobs"] == []
    error_of(server.http.get("/api/queues/no-such-queue"), 404)


# -- the HTTP worker API ------------------------------------------------------------------------------


def test_claim_heartbeat_ack(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue, payload={"x": 1}, timeout_ms=30_000)
    r = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "ack-w", "limit": 5})
    assert r.status_code == 200
    claim = r.json()
    assert claim["worker"] == "http:ack-w"
    (got,) = claim["jobs"]
    assert got["id"] == job["id"] and got["state"] == "running" and got["attempts"] == 1
    hb = server.http.post(f"/api/jobs/{job['id']}/heartbeat", json={"worker": "ack-w", "lease_ms": 120_000})
    assert hb.status_code == 200 and hb.json()["lease_until"] > time.time() + 100
    error_of(server.http.post(f"/api/jobs/{job['id']}/ack", json={"worker": "other"}), 409, "STALE_LEASE")
    done = server.http.post(
        f"/api/jobs/{job['id']}/ack", json={"worker": "http:ack-w", "result": {"ok": [1]}}
    )
    assert done.status_code == 200
    assert done.json()["state"] == "succeeded" and done.json()["result"] == {"ok": [1]}
    error_of(server.http.post(f"/api/jobs/{job['id']}/ack", json={"worker": "ack-w"}), 409)
    error_of(server.http.post(f"/api/jobs/{job['id']}/retry"), 409, "INVALID_STATE")
    states = [t["state"] for t in server.http.get(f"/api/jobs/{job['id']}").json()["history"]]
    assert states == ["enqueued", "reserved", "running", "succeeded"]
    workers = server.http.get("/api/workers").json()["workers"]
    assert any(w["id"] == "http:ack-w" and w["kind"] == "http" and queue in w["queues"] for w in workers)


def test_fail_retry_and_dead(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue, max_attempts=2, backoff={"kind": "fixed", "base": 60})
    server.http.post(f"/api/queues/{queue}/claim", json={"worker": "f"})
    r = server.http.post(
        f"/api/jobs/{job['id']}/fail", json={"worker": "f", "error": "E: x", "traceback": "tb"}
    )
    assert r.status_code == 200
    failed = r.json()
    assert failed["state"] == "retrying" and failed["run_at"] > time.time() + 50
    assert failed["errors"] == [
        {"attempt": 1, "at": failed["errors"][0]["at"], "error": "E: x", "traceback": "tb"}
    ]
    other = enqueue(server.http, queue, name="perm")
    server.http.post(f"/api/queues/{queue}/claim", json={"worker": "f"})
    dead = server.http.post(
        f"/api/jobs/{other['id']}/fail", json={"worker": "f", "error": "no", "retryable": False}
    )
    assert dead.json()["state"] == "dead"
    assert server.http.post(f"/api/jobs/{other['id']}/retry").json()["state"] == "enqueued"
    err = error_of(server.http.post(f"/api/jobs/{job['id']}/fail", json={"worker": "f"}), 422)
    assert err["field"] == "error"
    error_of(server.http.post(f"/api/jobs/{job['id']}/heartbeat", json={"worker": "f"}), 409)
    error_of(server.http.post("/api/jobs/nope/ack", json={"worker": "f"}), 404)
    error_of(server.http.post(f"/api/jobs/{job['id']}/ack", json={}), 422)


def test_http_lease_expires_and_the_job_is_delivered_again(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue, timeout_ms=300)
    first = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "slow"}).json()
    assert [j["id"] for j in first["jobs"]] == [job["id"]]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        again = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "fast"}).json()["jobs"]
        if again:
            break
        time.sleep(0.1)
    assert [j["id"] for j in again] == [job["id"]]
    assert again[0]["attempts"] == 2 and again[0]["errors"][0]["error"] == "lease expired"
    error_of(server.http.post(f"/api/jobs/{job['id']}/ack", json={"worker": "slow"}), 409, "STALE_LEASE")


def test_claim_long_polls_until_a_job_is_ready(server: HttpServer, queue: str) -> None:
    enqueue(server.http, queue, name="first")
    server.http.post(f"/api/queues/{queue}/claim", json={"worker": "lp"})  # the queue exists, now empty
    started = time.monotonic()
    empty = server.http.post(f"/api/queues/{queue}/claim", json={"worker": "lp", "wait_ms": 300})
    assert empty.json()["jobs"] == [] and time.monotonic() - started >= 0.25
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(
            server.http.post, f"/api/queues/{queue}/claim", json={"worker": "lp", "wait_ms": 20_000}
        )
        time.sleep(0.3)
        job = enqueue(server.http, queue, name="second")
        claimed = waiting.result(timeout=30).json()["jobs"]
    assert [j["id"] for j in claimed] == [job["id"]]
    assert time.monotonic() - started < 15
    assert (
        error_of(server.http.post(f"/api/queues/{queue}/claim", json={"wait_ms": 60_000}), 422)["field"]
        == "wait_ms"
    )


# -- overview and operations --------------------------------------------------------------------------


def test_stats_workers_schedules(server: HttpServer, queue: str) -> None:
    enqueue(server.http, queue)
    stats = server.http.get("/api/stats").json()
    assert stats["total_jobs"] >= 1 and stats["totals"]["enqueued"] >= 1 and stats["queues"] >= 1
    assert set(stats["counts"]) >= {"enqueued", "succeeded", "dead"}
    assert isinstance(server.http.get("/api/workers").json()["workers"], list)
    assert server.http.get("/api/schedules").json() == {"schedules": []}


def test_health_ready_metrics_openapi(server: HttpServer, queue: str) -> None:
    enqueue(server.http, queue)
    assert server.http.get("/health").json()["status"] == "ok"
    ready = server.http.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = server.http.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert f'spitfire_jobs{{queue="{queue}",state="enqueued"}} 1.0' in text
    assert f'spitfire_jobs_enqueued_total{{queue="{queue}"}} 1.0' in text
    assert f'spitfire_wal_segments{{queue="{queue}"}} 1.0' in text
    for name in ("spitfire_http_enqueue_seconds_bucket", "spitfire_connections", "spitfire_workers"):
        assert name in text
    doc = server.http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/queues/{queue}/jobs", "/api/queues/{queue}/jobs:batch", "/api/events", "/metrics"):
        assert path in doc["paths"]
    assert "JobOut" in doc["components"]["schemas"]
    assert server.http.get("/").status_code == 200


def test_nothing_in_the_log_went_wrong(server: HttpServer) -> None:
    assert "Traceback" not in server.log()


def test_grafana_dashboard_uses_only_exported_metrics(server: HttpServer, queue: str) -> None:
    enqueue(server.http, queue)
    text = server.http.get("/metrics").text
    board = json.loads((Path(__file__).parents[2] / "dashboard" / "grafana" / "spitfire.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(?:spitfire|process)_[a-z_]+", e)}
    assert len(names) > 10
    for name in names:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert f"# TYPE {base} " in text or f"# TYPE {name} " in text, name


def test_engine_errors_map_to_the_design_statuses() -> None:
    """507 cannot be produced on demand against a real disk; the mapping is checked directly."""
    from spitfire.dashboard.errors import response_for
    from spitfire.server.errors import (
        InvalidTransition,
        JobNotFound,
        NoSpace,
        Overloaded,
        PayloadTooLarge,
        StaleLease,
        ValidationError,
    )

    cases = [
        (NoSpace("q"), 507, "NO_SPACE"),
        (Overloaded("full", 0.5), 429, "BUSY"),
        (PayloadTooLarge(10, 5), 413, "PAYLOAD_TOO_LARGE"),
        (ValidationError("priority", "bad"), 422, "INVALID_ARGUMENT"),
        (JobNotFound("x"), 404, "NOT_FOUND"),
        (InvalidTransition("x", "succeeded", "retry"), 409, "INVALID_STATE"),
        (StaleLease("x", "w", None), 409, "STALE_LEASE"),
    ]
    for exc, status, code in cases:
        response = response_for(exc)
        assert response.status == status
        assert json.loads(response.content.body)["error"]["code"] == code
    assert response_for(Overloaded("full", 0.5)).get_first_header(b"retry-after") == b"1"


def test_sdk_and_http_see_the_same_payloads(server: HttpServer, queue: str) -> None:
    """A job enqueued by the Python SDK reads as JSON over HTTP, and the reverse."""
    import spitfire

    with spitfire.Client(f"tcp://127.0.0.1:{server.tcp_port}") as client:
        sdk_id = client.enqueue(queue, "from_sdk", {"to": "a@b.c", "n": [1, 2]}, priority=4)
        over_http = server.http.get(f"/api/jobs/{sdk_id}").json()
        assert over_http["payload"] == {"to": "a@b.c", "n": [1, 2]} and over_http["priority"] == 4
        http_job = enqueue(server.http, queue, name="from_http", payload={"to": "x@y.z"})
        job = client.get(str(http_job["id"]))
        assert job.payload == {"to": "x@y.z"}
        assert job.raw_payload == msgspec.msgpack.encode({"to": "x@y.z"})


def test_a_delays_backoff_is_kept_and_shown(server: HttpServer, queue: str) -> None:
    job = enqueue(server.http, queue, backoff={"kind": "delays", "delays": [1, 5, 30, 300]})
    assert job["backoff"]["kind"] == "delays" and job["backoff"]["delays"] == [1.0, 5.0, 30.0, 300.0]
    for bad in ({"kind": "delays"}, {"kind": "delays", "delays": []}, {"kind": "fixed", "delays": [1]}):
        r = server.http.post(f"/api/queues/{queue}/jobs", json={"name": "job", "backoff": bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == "backoff.delays", r.text
