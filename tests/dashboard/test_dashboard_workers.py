"""GET /api/workers and GET /api/stats on a live server: what an SDK worker says of itself when it
subscribes (host, pid, concurrency, queues), and the jobs of workers that stopped (SIGKILLed HTTP
worker, SIGSTOPped SDK worker) listed as possibly aborted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashhelpers import batch, wait_until
from httphelpers import HttpServer

CLI = [sys.executable, "-m", "spitfire.cli"]
JOBS = """
    import os, time
    from pathlib import Path
    import spitfire

    app = spitfire.App()
    MARKS = Path(os.environ["MARKS"])

    @app.job(queue=os.environ["QUEUE"])
    def hold(n: int) -> None:
        (MARKS / f"started-{spitfire.context().id}").touch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (MARKS / "release").exists():
            time.sleep(0.02)
"""

HTTP_WORKER = """
import sys, time, httpx
url, queue = sys.argv[1], sys.argv[2]
r = httpx.post(f"{url}/api/queues/{queue}/claim", json={"worker": "doomed", "lease_ms": 60000})
print(r.json()["jobs"][0]["id"], flush=True)
time.sleep(60)
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[Any]]]:
    """Child processes of a test, SIGKILLed by PID at its end."""
    procs: list[subprocess.Popen[Any]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(15)


def _workers(server: HttpServer) -> dict[str, Any]:
    r = server.http.get("/api/workers")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _sdk_worker(server: HttpServer, tmp_path: Path, queue: str, concurrency: int) -> subprocess.Popen[Any]:
    (tmp_path / "jobs_module.py").write_text(textwrap.dedent(JOBS))
    (tmp_path / "marks").mkdir(exist_ok=True)
    env = {
        **os.environ, "SPITFIRE_URL": f"tcp://127.0.0.1:{server.tcp_port}", "QUEUE": queue,
        "MARKS": str(tmp_path / "marks"),
    }  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "spitfire.cli",
        "worker",
        "jobs_module:app",
        "--concurrency",
        str(concurrency),
    ]
    with (tmp_path / "worker.log").open("a") as log:
        return subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)


def test_an_sdk_worker_reports_host_pid_and_concurrency(
    server: HttpServer, queue: str, tmp_path: Path, children: list[subprocess.Popen[Any]]
) -> None:
    proc = _sdk_worker(server, tmp_path, queue, 3)
    children.append(proc)
    mine = wait_until(
        lambda: [w for w in _workers(server)["workers"] if w["pid"] == proc.pid],
        what="the worker to subscribe",
    )
    (w,) = mine
    assert w["kind"] == "protocol" and w["host"] == socket.gethostname() and w["concurrency"] == 3
    assert w["queues"] == [queue] and w["active"] is True and w["in_flight"] == 0
    assert w["connected_at"] <= w["last_seen"]
    (job_id,) = batch(server.http, queue, [{"n": 1}], name="hold")
    wait_until(lambda: (tmp_path / "marks" / f"started-{job_id}").exists(), what="the job to start")
    w = next(x for x in _workers(server)["workers"] if x["pid"] == proc.pid)
    assert w["in_flight"] == 1 == w["jobs"]
    # Heartbeating for longer than the quiet threshold (3 x 0.2 s): its job is not aborted.
    wait_until(
        lambda: (
            next(x for x in _workers(server)["workers"] if x["pid"] == proc.pid)["last_seen"]
            > w["last_seen"] + 1.0
        ),
        what="the worker's heartbeats",
    )
    assert not [j for j in _workers(server)["possibly_aborted"] if j["id"] == job_id]
    # SIGSTOP: connected but silent, so its job is possibly aborted once it missed 3 heartbeats.
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        aborted = wait_until(
            lambda: [j for j in _workers(server)["possibly_aborted"] if j["id"] == job_id],
            what="the job to be listed as possibly aborted",
        )
        assert aborted[0]["state"] == "running" and aborted[0]["worker"] == w["id"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(15)
    # The connection is gone: the server took the job back, nothing is left aborted.
    wait_until(lambda: server.http.get(f"/api/jobs/{job_id}").json()["state"] == "enqueued", what="requeue")
    body = _workers(server)
    assert not [j for j in body["possibly_aborted"] if j["id"] == job_id]
    assert not [x for x in body["workers"] if x["pid"] == proc.pid]


def test_a_sigkilled_http_worker_leaves_possibly_aborted_jobs(
    server: HttpServer, queue: str, children: list[subprocess.Popen[Any]]
) -> None:
    (job_id,) = batch(server.http, queue, [1])
    proc = subprocess.Popen(
        [sys.executable, "-c", HTTP_WORKER, server.url, queue], stdout=subprocess.PIPE, text=True
    )
    children.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == job_id
    proc.kill()  # SIGKILL: it never heartbeats, acks or fails again
    proc.wait(15)
    proc.stdout.close()
    listed = wait_until(
        lambda: [j for j in _workers(server)["possibly_aborted"] if j["id"] == job_id],
        what="the job to be listed as possibly aborted",
    )
    assert listed[0]["worker"] == "http:doomed" and listed[0]["state"] == "running"
    (w,) = [x for x in _workers(server)["workers"] if x["id"] == "http:doomed"]
    assert w["kind"] == "http" and w["in_flight"] == 1 and w["host"] is None
    assert w["connected_at"] <= w["last_seen"]
    # A worker that comes back under that name and heartbeats is no longer quiet.
    hb = server.http.post(f"/api/jobs/{job_id}/heartbeat", json={"worker": "doomed"})
    assert hb.status_code == 200, hb.text
    assert not [j for j in _workers(server)["possibly_aborted"] if j["id"] == job_id]


def test_stats_name_the_server(server: HttpServer) -> None:
    body = server.http.get("/api/stats").json()
    s = body["server"]
    assert body["servers"] == [s]
    assert s["host"] == socket.gethostname() and s["pid"] == server.proc.pid  # type: ignore[union-attr]
    assert s["durability"] == "group" and s["http"] == server.url
    assert s["listen"] == [f"tcp://127.0.0.1:{server.tcp_port}"] and s["id"].endswith(f":{server.tcp_port}")
    assert s["started_at"] > 0 and s["version"]
