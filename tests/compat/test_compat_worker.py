"""A Vesper-style producer's jobs run on a Spitfire Python worker, and the Vesper API shows how they
went: done, retries and the last error, dlq."""

from __future__ import annotations

import socket
import sys
import uuid
from pathlib import Path

import httpx
from httphelpers import HttpServer

sys.path.insert(0, str(Path(__file__).parent.parent / "sdk"))
from sdk_helpers import run_burst, worker_thread

import spitfire


def test_vesper_jobs_run_on_a_python_worker(compat: httpx.Client, server: HttpServer) -> None:
    queue = f"images-{uuid.uuid4().hex[:8]}"
    app = spitfire.App(f"tcp://127.0.0.1:{server.tcp_port}")
    seen: list[tuple[str, int]] = []

    @app.job(queue=queue)
    def resize_image(image_url: str, width: int) -> dict[str, int]:
        seen.append((image_url, width))
        return {"width": width}

    @app.job(queue=queue)
    def flaky(n: int) -> None:
        raise ValueError(f"attempt failed {n}")

    @app.job(queue=queue)
    def always_fails(n: int) -> None:
        raise spitfire.Permanent(f"bad input {n}")

    ok = compat.post(
        "/jobs",
        json={"type": "resize_image", "queue": queue, "payload": {"image_url": "cat.png", "width": 640}},
    ).json()
    bad = compat.post("/jobs", json={"type": "always_fails", "queue": queue, "payload": {"n": 7}}).json()
    # A crash-resilient-queue producer's job with one retry: two failed attempts, then the dead letters.
    body = {"type": "flaky", "queue": queue, "payload": {"n": 1}, "max_retries": 1}
    retried = compat.post("/createJob", json=body).json()
    run_burst(app, queues=[queue])
    assert seen == [("cat.png", 640)]
    done = compat.get(f"/jobs/{ok['job_id']}").json()
    assert (done["status"], done["retries"], done["error"]) == ("done", 0, "")
    dead = compat.get(f"/jobs/{bad['job_id']}").json()
    assert dead["status"] == "dlq" and dead["retries"] == 1
    assert "bad input 7" in dead["error"]
    twice = compat.get(f"/jobs/{retried['job_id']}").json()
    assert (twice["status"], twice["retries"]) == ("dlq", 2) and "attempt failed 1" in twice["error"]


def test_workers_lists_sdk_workers_and_simplequeue_claimers_by_machine(
    compat: httpx.Client, server: HttpServer
) -> None:
    queue = f"w-{uuid.uuid4().hex[:8]}"
    topic = f"t-{uuid.uuid4().hex[:8]}"
    app = spitfire.App(f"tcp://127.0.0.1:{server.tcp_port}")

    @app.job(queue=queue)
    def noop() -> None: ...

    compat.post(f"/topics/{topic}/enqueue", json={"payload": 1})
    assert compat.post(f"/topics/{topic}/claim", json={"worker_id": "claimer-1"}).status_code == 200
    with worker_thread(app, queues=[queue], concurrency=3) as worker:
        body = compat.get("/workers").json()
        by_id = {w["id"]: w for w in body["workers"]}
        sdk = by_id[worker.worker_id]
        assert (sdk["kind"], sdk["queues"], sdk["concurrency"], sdk["host"]) == (
            "protocol", [queue], 3, socket.gethostname(),
        )  # fmt: skip
        claimer = by_id["simplequeue:claimer-1"]
        assert (claimer["kind"], claimer["queues"], claimer["in_flight"]) == ("simplequeue", [topic], 1)
        assert body["total_workers"] == len(body["workers"]) >= 2
        machines = body["machines"]
        assert machines[socket.gethostname()]["concurrency"] >= 3
        assert machines["127.0.0.1"]["in_flight"] >= 1
        assert compat.get("/stats").json()["total_workers"] == body["total_workers"]
