"""Recurring schedules over HTTP against a real server: CRUD, errors, live ticks, and a SIGKILL mid-series."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from httphelpers import HttpServer, http_server

EVERY_SECOND = "* * * * * *"


def body(queue: str, /, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": f"{queue}-s",
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "queue": queue,
        "job": "build_report",
        "payload": {"kind": "daily"},
        "options": {"priority": 5, "max_attempts": 3},
    }
    base.update(changes)
    return base


def test_create_read_replace_pause_resume_trigger_delete(server: HttpServer, queue: str) -> None:
    http = server.http
    b = body(queue)
    name = b["name"]
    r = http.post("/api/schedules", json=b)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["cron"] == "0 3 * * *" and s["timezone"] == "Europe/Berlin" and s["payload"] == {"kind": "daily"}
    assert s["options"]["priority"] == 5 and s["misfire"] == "skip" and not s["paused"]
    assert s["next_run_at"] > time.time() and s["last_run_at"] is None and s["last_job_state"] is None
    assert http.post("/api/schedules", json=b).status_code == 200  # identical: unchanged
    conflict = http.post("/api/schedules", json={**b, "cron": "0 4 * * *"})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "CONFLICT"
    replaced = http.put(f"/api/schedules/{name}", json={**b, "cron": "0 4 * * *"})
    assert replaced.status_code == 200 and replaced.json()["cron"] == "0 4 * * *"
    assert http.get(f"/api/schedules/{name}").json()["cron"] == "0 4 * * *"
    assert name in [x["name"] for x in http.get("/api/schedules").json()["schedules"]]
    paused = http.post(f"/api/schedules/{name}/pause").json()
    assert paused["paused"] and paused["next_run_at"] is None
    job = http.post(f"/api/schedules/{name}/trigger")
    assert job.status_code == 201
    j = job.json()
    assert j["queue"] == queue and j["name"] == "build_report" and j["priority"] == 5
    assert j["headers"]["spitfire-schedule"] == name and j["headers"]["spitfire-tick"].endswith("Z")
    s = http.post(f"/api/schedules/{name}/resume").json()
    assert not s["paused"] and s["last_job_id"] == j["id"] and s["last_job_state"] == "enqueued"
    assert http.delete(f"/api/schedules/{name}").status_code == 200
    for r in (http.get(f"/api/schedules/{name}"), http.post(f"/api/schedules/{name}/trigger")):
        assert r.status_code == 404 and r.json()["error"]["code"] == "SCHEDULE_NOT_FOUND"
    created = http.put(f"/api/schedules/{name}", json={k: v for k, v in b.items() if k != "name"})
    assert created.status_code == 201


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"misfire": "later"}, "misfire"),
        ({"queue": "no/slash"}, "queue"),
        ({"name": "has space"}, "name"),
        ({"options": {"priority": 11}}, "options.priority"),
        ({"options": {"bogus": 1}}, "options"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_definitions_are_422_naming_the_field_and_create_nothing(
    server: HttpServer, queue: str, changes: dict[str, Any], field: str
) -> None:
    before = server.http.get("/api/schedules").json()
    r = server.http.post("/api/schedules", json=body(queue, **changes))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert server.http.get("/api/schedules").json() == before
    assert queue not in [q["name"] for q in server.http.get("/api/queues").json()["queues"]]


def test_name_is_required_and_must_match_the_path(server: HttpServer, queue: str) -> None:
    b = body(queue)
    r = server.http.post("/api/schedules", json={k: v for k, v in b.items() if k != "name"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"
    r = server.http.put("/api/schedules/other", json=b)
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"


def wait_for_job_events(http: httpx.Client, queue: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """Read the live event stream until ``count`` jobs of ``queue`` were created (bounded)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with http.stream("GET", "/api/events", params={"queue": queue}, timeout=timeout) as stream:
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "job":
                event = json.loads(line[6:])
                if event["state"] == "enqueued":
                    events.append(event)
                    if len(events) >= count:
                        return events
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"{len(events)} of {count} jobs within {timeout} s")


def ticks(http: httpx.Client, queue: str) -> list[str]:
    jobs = http.get(f"/api/queues/{queue}/jobs", params={"state": "enqueued", "limit": 1000}).json()["jobs"]
    return [j["headers"]["spitfire-tick"] for j in jobs]


def test_a_once_a_second_schedule_enqueues_a_job_each_second(server: HttpServer, queue: str) -> None:
    b = body(queue, cron=EVERY_SECOND, timezone="UTC")
    assert server.http.post("/api/schedules", json=b).status_code == 201
    try:
        wait_for_job_events(server.http, queue, 3, timeout=20)
    finally:
        server.http.delete(f"/api/schedules/{b['name']}")
    got = ticks(server.http, queue)
    assert len(got) >= 3 and len(got) == len(set(got))


def test_sigkill_in_the_middle_of_a_once_a_second_series_never_runs_a_tick_twice(tmp_path: Path) -> None:
    """misfire=all: after the restart the series is whole — each second once, none twice."""
    data = tmp_path / "data"
    queue = "ticks"
    b = body(queue, cron=EVERY_SECOND, timezone="UTC", misfire="all")
    with http_server(data) as first:
        assert first.http.post("/api/schedules", json=b).status_code == 201
        wait_for_job_events(first.http, queue, 3, timeout=20)
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(15)
    with http_server(data) as second:
        wait_for_job_events(second.http, queue, 3, timeout=20)
        second.http.post(f"/api/schedules/{b['name']}/pause")
        got = sorted(ticks(second.http, queue))
    assert len(got) == len(set(got)), "a tick was enqueued twice"
    seconds = [time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) for t in got]
    assert seconds == [seconds[0] + i for i in range(len(seconds))], f"a tick is missing: {got}"


def test_a_flipped_byte_in_the_schedules_log_costs_one_schedule_after_repair(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data) as srv:
        for i in range(5):
            r = srv.http.post("/api/schedules", json=body(f"q{i}", name=f"s{i}"))
            assert r.status_code == 201, r.text
    (segment,) = sorted((data / "meta" / "schedules" / "wal").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    off = 64
    for _ in range(2):  # to the third record (schedule s2)
        off += (12 + int.from_bytes(raw[off + 4 : off + 8], "little") + 7) & -8
    raw[off + 30] ^= 0xFF
    segment.write_bytes(bytes(raw))
    server_cmd = [sys.executable, "-m", "spitfire.server.cli", "--data-dir", str(data)]
    refused = subprocess.run(server_cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (
        refused.returncode == 1 and "meta/schedules" in refused.stderr and "Traceback" not in refused.stderr
    )
    done = subprocess.run(
        [*server_cmd[:3], "repair", "--data-dir", str(data), "--yes"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0 and "1 record(s) dropped" in done.stdout, done.stdout + done.stderr
    with http_server(data) as srv:
        names = [s["name"] for s in srv.http.get("/api/schedules").json()["schedules"]]
    assert names == ["s0", "s1", "s3", "s4"]
