"""Malformed and hostile requests to the compatibility listener get 4xx, change nothing, and the server
goes on serving; with --auth-token every route but the health checks needs the Bearer token."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from httphelpers import HttpServer, http_server

ROUTES = [
    "/jobs",
    "/createJob",
    "/topics/t-hostile/enqueue",
    "/topics/t-hostile/claim",
    "/topics/t-hostile/ack",
]
BODIES = [
    b"", b"{", b"null", b"[]", b"\xff\xfe", b'{"type": "\x00"}', b"[" * 10_000 + b"]" * 10_000,
    b'{"type": ["x"]}', b'{"type": "t", "priority": 1e999}', b'{"worker_id": 7}', b'{"job_id": {}}',
    b'{"type": "t", "payload": ' + b"9" * 5000 + b"}", b'{"id": "' + b"k" * 300 + b'"}',
]  # fmt: skip


def test_malformed_bodies_are_4xx_and_change_nothing(compat: httpx.Client, server: HttpServer) -> None:
    before = server.http.get("/api/stats").json()["counts"]
    for route in ROUTES:
        for body in BODIES:
            r = compat.post(route, content=body)
            assert 400 <= r.status_code < 500, (route, body[:40], r.status_code, r.text[:200])
            assert "error" in r.json()
    assert server.http.get("/api/stats").json()["counts"] == before
    assert "Traceback" not in server.log()


def test_huge_bodies_are_413(compat: httpx.Client) -> None:
    big = b'{"type": "t", "payload": "' + b"x" * 100_000 + b'"}'  # the limit is 2 x 4 KiB + 64 KiB
    for route in ("/jobs", "/createJob", "/topics/t-big/enqueue"):
        r = compat.post(route, content=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_LARGE", r.text
    payload = compat.post("/jobs", json={"type": "t", "payload": "x" * 5000})  # over --max-payload 4096
    assert payload.status_code == 413 and payload.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_unknown_routes_and_methods(compat: httpx.Client) -> None:
    assert compat.get("/api/queues").status_code == 404  # the main API is not on this port
    assert compat.get("/nope").json()["error"]["code"] == "ROUTE_NOT_FOUND"
    wrong = compat.delete("/jobs")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_a_client_that_sends_half_a_request_does_not_stop_the_others(
    compat: httpx.Client, server: HttpServer
) -> None:
    port = int(server.compat_url.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b'POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"type"')
        assert compat.post("/jobs", json={"type": "t", "queue": "after-slow"}).status_code == 201


def test_auth_token_is_required_except_for_health(tmp_path: Path) -> None:
    args = ("--compat-http", "127.0.0.1:0", "--auth-token", "s3cret")
    with http_server(tmp_path / "data", *args) as proc:
        compat = httpx.Client(base_url=proc.compat_url, timeout=30)
        for path in ("/health", "/healthz", "/ready"):
            assert compat.get(path).status_code == 200, path
        for method, path in (
            ("POST", "/jobs"), ("GET", "/stats"), ("GET", "/topics/t/status"), ("GET", "/metrics"),
            ("GET", "/openapi.json"), ("POST", "/createJob"),
        ):  # fmt: skip
            r = compat.request(method, path, json={"type": "t"})
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
        wrong = compat.post("/jobs", json={"type": "t"}, headers={"Authorization": "Bearer nope"})
        basic = compat.post("/jobs", json={"type": "t"}, headers={"Authorization": "Basic czNjcmV0"})
        assert (wrong.status_code, basic.status_code) == (401, 401)
        ok = compat.post("/jobs", json={"type": "t"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201
        compat.close()
