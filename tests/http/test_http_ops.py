"""Auth, backpressure and shutdown of the HTTP API, each on a server started with its own flags."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import SERVER, http_server

TOKEN = "s3cret-token"


def test_auth_token_is_required_except_for_health(tmp_path: Path) -> None:
    with http_server(tmp_path / "data", "--auth-token", TOKEN) as server:
        r = server.http.get("/api/stats")
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert server.http.get("/api/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
        bad = server.http.post("/api/queues/q/jobs", json={"name": "a"})
        assert bad.status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert server.http.post("/api/queues/q/jobs", json={"name": "a"}, headers=auth).status_code == 201
        assert server.http.get("/api/queues", headers=auth).json()["queues"][0]["total"] == 1
        assert server.http.get("/metrics").status_code == 401
        assert server.http.get("/health").status_code == 200
        assert server.http.get("/ready").status_code == 200
        assert server.http.get("/api/events", params={"access_token": "no"}).status_code == 401
        with httpx.stream(
            "GET", f"{server.url}/api/events", params={"access_token": TOKEN}, timeout=10
        ) as events:
            assert events.status_code == 200


def test_backpressure_answers_429_with_retry_after(tmp_path: Path) -> None:
    with http_server(tmp_path / "data", "--max-queue-jobs", "3") as server:
        url = "/api/queues/bp/jobs"
        for _ in range(3):
            assert server.http.post(url, json={"name": "a"}).status_code == 201
        r = server.http.post(url, json={"name": "a"})
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "BUSY" and int(r.headers["retry-after"]) >= 1
        batch = server.http.post("/api/queues/bp/jobs:batch", json={"name": "a", "payloads": [1, 2]})
        assert batch.status_code == 429
        # Workers keep working: a claim and an ack make room again.
        claimed = server.http.post("/api/queues/bp/claim", json={"worker": "w"}).json()["jobs"]
        job_id = claimed[0]["id"]
        assert server.http.post(f"/api/jobs/{job_id}/ack", json={"worker": "w"}).status_code == 200
        assert server.http.post(url, json={"name": "a"}).status_code == 201
        assert "spitfire_http_backpressure_rejections_total 2.0" in server.http.get("/metrics").text


def test_sigterm_with_open_event_stream_exits_0(tmp_path: Path) -> None:
    with http_server(tmp_path / "data") as server:
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert server.http.post("/api/queues/q/jobs", json={"name": "a"}).status_code == 201
        assert server.stop() == 0
        sock.close()
        assert "Traceback" not in server.log()


def test_http_port_in_use_refuses_to_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cmd = [*SERVER, "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--no-quic"]
        cmd += ["--http", f"127.0.0.1:{port}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1
        assert "cannot serve HTTP" in proc.stderr
