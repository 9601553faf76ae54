"""End-to-end tests of the dashboard in a real browser.

A real spitfire-server (two: one open, seeded through the API; one with ``--auth-token``) and the
scenarios of ``dashboard/web/e2e/dashboard.test.mjs``, run by node's test runner with
playwright-core driving Debian's chromium at /usr/bin/chromium (``--headless --no-sandbox
--disable-gpu``; never a browser download). One pytest test per scenario, so a failure names it.

Needs node, ``npm ci`` in dashboard/web (``make test`` runs it) and chromium (``.ci/run`` installs
it). Without them the tests skip locally and FAIL in CI (``CI=true``): a CI run that did not drive
the browser must not look green.

``SPITFIRE_SCREENSHOTS=1`` also writes docs/screenshots/ (every page, both themes) while traffic
runs, for the README: ``make screenshots``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "http"))
from httphelpers import HttpServer, http_server
from seed import seed

ROOT = Path(__file__).parents[2]
WEB = ROOT / "dashboard" / "web"
SCRIPT = "e2e/dashboard.test.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "e2e-token-7f3a"
#: The open server's --trace-url-template (the job page links trace ids there).
TRACE_URL = "https://tempo.example/trace/{trace_id}"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "dashboard/web/node_modules is missing: run `npm ci` in dashboard/web (make test does)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    return None


@pytest.fixture(scope="module", autouse=True)
def browser_prerequisites() -> None:
    missing = _missing()
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"browser tests cannot run in CI: {missing}")
    pytest.skip(f"browser tests need node, npm ci and chromium: {missing}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """An open server seeded with jobs in every state."""
    with http_server(tmp_path_factory.mktemp("browser") / "data", "--trace-url-template", TRACE_URL) as proc:
        seed(proc.http)
        yield proc


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    with http_server(tmp_path_factory.mktemp("browser-auth") / "data", "--auth-token", TOKEN) as proc:
        yield proc


def _legacy_listing(client: httpx.Client) -> bool:
    """Whether the server predates GET /api/jobs without q."""
    r = client.get("/api/jobs", params={"state": "dead"})
    return r.status_code == 422 and r.json()["error"].get("field") == "q"


def _has_bulk(client: httpx.Client) -> bool:
    r = client.post("/api/jobs:bulk", json={"action": "retry", "ids": []})
    return not (r.status_code == 404 and r.json()["error"]["code"] == "ROUTE_NOT_FOUND")


def run_scenario(name: str, server: HttpServer, timeout: float = 100, **env: str) -> str:
    """Run the node test whose name starts with ``name``; assert that it ran and passed."""
    full_env = {
        **os.environ,
        "SPITFIRE_URL": server.url,
        "CHROMIUM": CHROMIUM,
        "SPITFIRE_LEGACY_LISTING": "1" if _legacy_listing(server.http) else "0",
        **env,
    }
    cmd = ["node", "--test", "--test-reporter=spec", f"--test-name-pattern=^{re.escape(name)}", SCRIPT]
    result = subprocess.run(cmd, cwd=WEB, env=full_env, capture_output=True, text=True, timeout=timeout)
    out = result.stdout + result.stderr
    passed = re.search(r"\u2139 pass (\d+)", out)  # the spec reporter's summary line
    assert result.returncode == 0, f"{name!r} failed:\n{out[-6000:]}\nserver log:\n{server.log()[-2000:]}"
    assert passed and int(passed.group(1)) == 1, f"{name!r} did not run:\n{out[-3000:]}"
    return out


def test_every_page_renders(server: HttpServer) -> None:
    run_scenario("every page renders with real data and no console errors", server)


def test_live_update_without_reload(server: HttpServer) -> None:
    run_scenario("a job enqueued through the API appears without a reload", server)


def test_retry_dead_job_from_its_page(server: HttpServer) -> None:
    run_scenario("retrying a dead job from its page changes its state", server)


def test_job_page_links_its_trace(server: HttpServer) -> None:
    run_scenario("a job's page shows its trace id, linked by --trace-url-template", server)


def test_bulk_retry_over_a_filter(server: HttpServer) -> None:
    if not _has_bulk(server.http):
        pytest.skip("POST /api/jobs:bulk is not in this server (an older version)")
    if _legacy_listing(server.http):
        pytest.skip("GET /api/jobs across queues is not in this server (an older version)")
    run_scenario("a bulk retry over a filter retries every matching job", server)


def test_pause_and_resume_a_queue(server: HttpServer) -> None:
    run_scenario("pause and resume a queue", server)


def test_recurring_trigger_pause_resume(server: HttpServer) -> None:
    if not _has_schedule_routes(server.http):
        pytest.skip("POST /api/schedules is not in this server")
    run_scenario("trigger, pause and resume a recurring schedule", server)


def _has_schedule_routes(client: httpx.Client) -> bool:
    r = client.post("/api/schedules/none/pause")
    return not (r.status_code == 404 and r.json()["error"]["code"] == "ROUTE_NOT_FOUND")


def test_job_definitions_page(server: HttpServer) -> None:
    run_scenario("the job definitions page shows a registered definition and its schema", server)


def test_job_page_lists_payload_fields_by_schema(server: HttpServer) -> None:
    run_scenario("a job's page lists its payload's fields by its definition's schema", server)


def test_login_flow_with_auth_token(server: HttpServer, auth_server: HttpServer) -> None:
    run_scenario(
        "the login flow with --auth-token", server, SPITFIRE_AUTH_URL=auth_server.url, SPITFIRE_TOKEN=TOKEN
    )


def test_phone_width_has_no_horizontal_scroll(server: HttpServer) -> None:
    run_scenario("the 390 px layout has no horizontal scroll", server)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_reconnects_after_server_restart(server: HttpServer, tmp_path: Path) -> None:
    """The node test starts its own server on a fixed port, SIGKILLs it, starts it again on the same
    data directory, and sees the page reconnect and resync without a reload."""
    spec = {"python": sys.executable, "data_dir": str(tmp_path / "data"), "port": _free_port()}
    run_scenario(
        "reconnects after a server restart (SIGKILL) and resyncs",
        server,
        timeout=110,
        SPITFIRE_RESTART=json.dumps(spec),
    )


def _million(client: httpx.Client) -> None:
    """1,000,000 jobs over 10 queues, 100,000 of them dead (claimed and failed for good)."""
    for q in range(10):
        for _ in range(10):
            body = {"name": "bulk_job", "payloads": [{}] * 10_000}
            r = client.post(f"/api/queues/big-{q}/jobs:batch", json=body)
            assert r.status_code == 201, r.text
    for q in range(10):
        for _ in range(10):
            claim = {"worker": "w", "limit": 1000}
            jobs = client.post(f"/api/queues/big-{q}/claim", json=claim).json()["jobs"]
            fail = {"worker": "w", "error": "x", "retryable": False}
            for job in jobs:
                r = client.post(f"/api/jobs/{job['id']}/fail", json=fail)
                assert r.status_code == 200, r.text


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_first_render_with_a_million_jobs(tmp_path: Path) -> None:
    """With 1,000,000 jobs (100,000 dead) every page's first render is under 1 s."""
    with http_server(tmp_path / "data") as big:
        seed(big.http)
        _million(big.http)
        out = run_scenario("first render of every page", big, timeout=300, SPITFIRE_TIMINGS="1000")
        print(next(line for line in out.splitlines() if "TIMINGS" in line))


def _traffic(client: httpx.Client, stop: threading.Event) -> None:
    """Work for the realtime graph: enqueue, claim, ack most and fail some, for at most 3 minutes."""
    for i in range(900):
        if stop.wait(0.2):
            return
        client.post("/api/queues/emails/jobs:batch", json={"name": "send_email", "payloads": [{"n": i}] * 8})
        jobs = client.post("/api/queues/emails/claim", json={"worker": "mailer-2", "limit": 8}).json()["jobs"]
        for k, job in enumerate(jobs):
            if k == 0 and i % 3 == 0:
                client.post(f"/api/jobs/{job['id']}/fail", json={"worker": "mailer-2", "error": "timeout"})
            else:
                client.post(f"/api/jobs/{job['id']}/ack", json={"worker": "mailer-2"})


@contextmanager
def _sdk_worker(server: HttpServer) -> Iterator[None]:
    """A Python SDK worker (tests/dashboard/screenshot_app.py) with three of its jobs in flight."""
    for image in ("cat.png", "dog.png", "owl.png"):
        r = server.http.post("/api/queues/images/jobs", json={"name": "resize", "payload": {"image": image}})
        assert r.status_code == 201, r.text
    env = {**os.environ, "SPITFIRE_URL": f"tcp://127.0.0.1:{server.tcp_port}"}
    cmd = [sys.executable, "-m", "spitfire.cli", "worker", "screenshot_app:app", "--concurrency", "4"]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).parent, env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):  # until its jobs run: at most 20 s
            counts = server.http.get("/api/queues/images").json()["counts"]
            if counts["running"] == 3:
                break
            time.sleep(0.2)
        yield
    finally:
        proc.kill()  # its jobs would take a minute to drain; they are test data
        proc.wait(15)


@pytest.mark.timeout(300)
def test_screenshots(server: HttpServer) -> None:
    if os.environ.get("SPITFIRE_SCREENSHOTS") != "1":
        pytest.skip("set SPITFIRE_SCREENSHOTS=1 to write docs/screenshots/ (make screenshots)")
    out = ROOT / "docs" / "screenshots"
    stop = threading.Event()
    client = httpx.Client(base_url=server.url, timeout=30)
    thread = threading.Thread(target=_traffic, args=(client, stop), daemon=True)
    thread.start()
    try:
        with _sdk_worker(server):
            run_scenario("screenshots", server, timeout=280, SCREENSHOTS=str(out))
    finally:
        stop.set()
        thread.join(30)
        client.close()
    written = {p.name for p in out.glob("*.png")}
    assert {"overview-light.png", "overview-dark.png", "job-dark.png", "jobs-phone-light.png"} <= written
