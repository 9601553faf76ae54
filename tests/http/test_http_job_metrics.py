"""Per-handler histograms in GET /metrics: a real server, jobs of two handlers run by a real worker;
``spitfire_job_run_seconds`` and ``spitfire_job_wait_seconds`` count every job of each, and the
series past the cap render under name="other"."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, http_server

import spitfire
from spitfire.dashboard.metrics import job_histograms
from spitfire.server.stats import OTHER_JOB, JobTimings

#: Seconds the slow handler takes (its run time must show in the sums).
SLOW = 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    with http_server(tmp_path_factory.mktemp("jobmetrics") / "data") as proc:
        yield proc


def histograms(text: str, name: str) -> dict[tuple[str, str], dict[str, float]]:
    """(queue, name) -> {"count", "sum", and each "le"} of one histogram family."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        assert family.type == "histogram"
        for s in family.samples:
            row = out.setdefault((s.labels["queue"], s.labels["name"]), {})
            if s.name.endswith("_bucket"):
                row[s.labels["le"]] = s.value
            else:
                row[s.name.rsplit("_", 1)[1]] = s.value
    return out


def test_run_and_wait_histograms_count_each_handlers_jobs(server: HttpServer, queue: str) -> None:
    app = spitfire.App(f"tcp://127.0.0.1:{server.tcp_port}")

    @app.job(queue=queue)
    def fast(n: int) -> int:
        return n

    @app.job(queue=queue)
    def slow(n: int) -> int:
        time.sleep(SLOW)  # the work whose time the histogram must show
        return n

    for i in range(3):
        fast.enqueue(i)
    slow.enqueue_many([{"n": 1}, {"n": 2}])
    worker = spitfire.Worker(app, burst=True, handle_signals=False, concurrency=2)
    assert worker.run() == 0

    text = server.http.get("/metrics").text
    run = histograms(text, "spitfire_job_run_seconds")
    wait = histograms(text, "spitfire_job_wait_seconds")
    for job, count in (("fast", 3), ("slow", 2)):
        for family in (run, wait):
            row = family[(queue, job)]
            assert row["count"] == count and row["+Inf"] == count
            bounds = sorted((float(le), v) for le, v in row.items() if le not in ("count", "sum"))
            assert [v for _, v in bounds] == sorted(v for _, v in bounds)  # cumulative
    assert run[(queue, "slow")]["sum"] >= 2 * SLOW
    assert run[(queue, "fast")]["sum"] < run[(queue, "slow")]["sum"]
    assert run[(queue, "slow")]["0.025"] == 0  # both slow runs took longer than 25 ms
    assert "# HELP spitfire_job_run_seconds " in text and "# HELP spitfire_job_wait_seconds " in text


def test_http_workers_are_counted_too(server: HttpServer, queue: str) -> None:
    """The HTTP worker API: a claim STARTs its jobs at once, an ack ends them."""
    http = server.http
    r = http.post(f"/api/queues/{queue}/jobs:batch", json={"name": "via-http", "payloads": [1, 2]})
    assert r.status_code == 201
    claimed = http.post(f"/api/queues/{queue}/claim", json={"worker": "hw", "limit": 2}).json()
    assert len(claimed["jobs"]) == 2
    for job in claimed["jobs"]:
        assert http.post(f"/api/jobs/{job['id']}/ack", json={"worker": claimed["worker"]}).status_code == 200
    text = http.get("/metrics").text
    for name in ("spitfire_job_run_seconds", "spitfire_job_wait_seconds"):
        assert histograms(text, name)[(queue, "via-http")]["count"] == 2


def _run_burst(port: int, queue: str, jobs: int) -> None:
    app = spitfire.App(f"tcp://127.0.0.1:{port}")

    @app.job(queue=queue)
    def work(n: int) -> int:
        return n

    work.enqueue_many([{"n": i} for i in range(jobs)])
    assert spitfire.Worker(app, burst=True, handle_signals=False).run() == 0
    app.close()


def test_a_killed_server_starts_from_zero_and_counts_again(tmp_path: Path) -> None:
    """Memory only: after SIGKILL and recovery (which replays the acks) nothing is counted until
    jobs run again, and then exactly those."""
    server = HttpServer(tmp_path / "data")
    try:
        server.start()
        _run_burst(server.tcp_port, "killed", 3)
        before = histograms(server.http.get("/metrics").text, "spitfire_job_run_seconds")
        assert before[("killed", "work")]["count"] == 3
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(30)
        server.stop()  # closes the client and the pipe of the dead process
        server.start()
        text = server.http.get("/metrics").text
        assert histograms(text, "spitfire_job_run_seconds") == {}
        assert "# TYPE spitfire_job_wait_seconds histogram" in text
        _run_burst(server.tcp_port, "killed", 2)
        text = server.http.get("/metrics").text
        for name in ("spitfire_job_run_seconds", "spitfire_job_wait_seconds"):
            assert histograms(text, name)[("killed", "work")]["count"] == 2
    finally:
        server.stop()


def test_series_past_the_cap_render_as_other() -> None:
    timings = JobTimings(limit=1)
    timings.series("q", "a").run.observe(0.5)
    timings.series("q", "b").run.observe(1.5)
    timings.series("q", "c").wait.observe(2.0)
    timings.series("r", "a").wait.observe(0.001)
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    class Families(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return job_histograms(timings)

    registry = CollectorRegistry()
    registry.register(Families())
    text = generate_latest(registry).decode()
    run = histograms(text, "spitfire_job_run_seconds")
    wait = histograms(text, "spitfire_job_wait_seconds")
    assert set(run) == set(wait) == {("q", "a"), ("q", OTHER_JOB), ("r", OTHER_JOB)}
    assert run[("q", OTHER_JOB)]["count"] == 1 and run[("q", OTHER_JOB)]["sum"] == 1.5
    assert wait[("q", OTHER_JOB)]["count"] == 1 and wait[("r", OTHER_JOB)]["0.001"] == 1
