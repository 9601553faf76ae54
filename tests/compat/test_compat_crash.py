"""SIGKILL right after a 201 of the compatibility listener: the job is there after the restart, and a
simplequeue id still names it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
from httphelpers import HttpServer


def test_sigkill_after_201_keeps_the_jobs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = HttpServer(data, "--compat-http", "127.0.0.1:0").start()
    try:
        with httpx.Client(base_url=server.compat_url, timeout=30) as compat:
            vesper = compat.post(
                "/jobs", json={"type": "t", "payload": {"a": 1}}, headers={"Idempotency-Key": "v1"}
            )
            crq = compat.post("/createJob", json={"type": "e", "payload": [1], "idempotency_key": "c1"})
            sq = compat.post("/topics/orders/enqueue", json={"id": "job-1", "payload": {"item": "book"}})
        assert (vesper.status_code, crq.status_code, sq.status_code) == (201, 201, 201)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(30)
    finally:
        server.stop()
    again = HttpServer(data, "--compat-http", "127.0.0.1:0").start()
    try:
        with httpx.Client(base_url=again.compat_url, timeout=30) as compat:
            job = compat.get(f"/jobs/{vesper.json()['job_id']}")
            assert job.status_code == 200 and job.json()["payload"] == {"a": 1}
            repeat = compat.post("/createJob", json={"type": "e", "payload": [1], "idempotency_key": "c1"})
            assert repeat.status_code == 200 and repeat.json()["job_id"] == crq.json()["job_id"]
            claimed = compat.post("/topics/orders/claim", json={"worker_id": "w"})
            assert claimed.json() == {"id": "job-1", "payload": {"item": "book"}, "attempts": 1}
            assert compat.post("/topics/orders/ack", json={"job_id": "job-1"}).status_code == 200
    finally:
        again.stop()
