"""Job definitions over HTTP against a real server: register (HTTP workers), list, get, delete; an
enqueue (single and batch) that sets no option gets the definition's; validate answers 422 naming
the field and enqueues nothing; bad and hostile bodies are refused and change nothing; a flipped
byte in the definitions log costs that one registration after repair."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from httphelpers import HttpServer, http_server

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["to"],
}


def definition(name: str, **changes: Any) -> dict[str, Any]:
    return {"name": name, "queue": "emails", "max_attempts": 5, "timeout_ms": 30_000, **changes}


def register(http: httpx.Client, *definitions: dict[str, Any]) -> httpx.Response:
    return http.post("/api/job-definitions", json={"definitions": list(definitions)})


def test_register_list_get_delete_and_the_enqueue_defaults(server: HttpServer, queue: str) -> None:
    http = server.http
    name = f"job-{queue}"[:150]
    r = register(http, definition(name, priority=4, backoff={"kind": "fixed", "base": 2}, schema=SCHEMA))
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == [name]
    again = register(http, definition(name, priority=4, backoff={"kind": "fixed", "base": 2}, schema=SCHEMA))
    assert again.json()["changed"] == []  # identical: nothing written
    d = http.get(f"/api/job-definitions/{name}").json()
    assert (d["queue"], d["priority"], d["max_attempts"], d["timeout_ms"], d["validate"]) == (
        "emails", 4, 5, 30_000, False,
    )  # fmt: skip
    assert (
        d["schema"] == SCHEMA and d["backoff"]["kind"] == "fixed" and d["registered_by"].startswith("http ")
    )
    assert name in [x["name"] for x in http.get("/api/job-definitions").json()["definitions"]]

    job = http.post(f"/api/queues/{queue}/jobs", json={"name": name, "payload": {"to": "a@b.c"}}).json()
    assert (job["max_attempts"], job["timeout"], job["priority"], job["backoff"]["base"]) == (5, 30.0, 4, 2.0)
    batch = http.post(f"/api/queues/{queue}/jobs:batch", json={"name": name, "payloads": [{}, {}]}).json()
    for job_id in batch["ids"]:
        assert http.get(f"/api/jobs/{job_id}").json()["max_attempts"] == 5
    own = http.post(f"/api/queues/{queue}/jobs", json={"name": name, "max_attempts": 2}).json()
    assert (own["max_attempts"], own["timeout"]) == (2, 30.0)

    gone = http.delete(f"/api/job-definitions/{name}")
    assert gone.status_code == 200 and gone.json()["name"] == name
    assert http.get(f"/api/job-definitions/{name}").status_code == 404
    assert http.delete(f"/api/job-definitions/{name}").json()["error"]["code"] == "DEFINITION_NOT_FOUND"
    plain = http.post(f"/api/queues/{queue}/jobs", json={"name": name}).json()
    assert plain["max_attempts"] == 25


def test_validate_answers_422_naming_the_field_and_enqueues_nothing(server: HttpServer, queue: str) -> None:
    http = server.http
    name = f"checked-{queue}"[:150]
    assert register(http, definition(name, schema=SCHEMA, validate=True)).status_code == 200
    for payload, field in (
        ({"to": 42}, "payload.to"),
        ({"to": "x", "tags": ["a", 1]}, "payload.tags[1]"),
        ({}, "payload.to"),
        (None, "payload.to"),
    ):
        r = http.post(f"/api/queues/{queue}/jobs", json={"name": name, "payload": payload})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field, r.text
    r = http.post(
        f"/api/queues/{queue}/jobs:batch", json={"name": name, "payloads": [{"to": "a"}, {"to": 1}]}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "payloads[1].to"
    assert http.get(f"/api/queues/{queue}").status_code == 404  # nothing was enqueued
    ok = http.post(f"/api/queues/{queue}/jobs", json={"name": name, "payload": {"to": "a@b.c"}})
    assert ok.status_code == 201


def test_bad_and_hostile_registrations_change_nothing(server: HttpServer, queue: str) -> None:
    http = server.http
    before = http.get("/api/job-definitions").json()
    cases: list[tuple[Any, int, str | None]] = [
        ({"definitions": [definition("a", max_attempts=0)]}, 422, "definitions[0].max_attempts"),
        ({"definitions": [definition("ok"), definition("b", queue="no/slash")]}, 422, "definitions[1].queue"),
        ({"definitions": [definition("c", schema={"type": "nope"})]}, 422, "definitions[0].schema"),
        (
            {"definitions": [definition("d", schema={"$ref": "http://127.0.0.1:9/x"})]},
            422,
            "definitions[0].schema",
        ),
        ({"definitions": [definition("e", validate=True)]}, 422, "definitions[0].validate"),
        ({"definitions": [definition("f", schema="not an object")]}, 422, "definitions[0].schema"),
        ({"definitions": [definition("g"), definition("g")]}, 422, "definitions[1].name"),
        ({"definitions": [definition("h", schema={"title": "x" * 70_000})]}, 413, None),
        ({"definitions": [{"name": f"n{i}"} for i in range(10_001)]}, 413, None),
        ({"definitions": "all of them"}, 422, "definitions"),
        ({"definitions": [definition("i", extra=1)]}, 422, None),
    ]
    for body, status, field in cases:
        r = http.post("/api/job-definitions", json=body)
        assert r.status_code == status, (body if len(str(body)) < 300 else str(body)[:300], r.text[:300])
        if field is not None:
            assert r.json()["error"]["field"] == field, r.text
    assert http.post("/api/job-definitions", content=b"{not json").status_code == 400
    assert http.get("/api/job-definitions").json() == before


def test_a_flipped_byte_in_the_definitions_log_costs_one_registration_after_repair(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data) as srv:
        for i in range(5):
            r = register(srv.http, definition(f"d{i}"))
            assert r.status_code == 200, r.text
    (segment,) = sorted((data / "meta" / "definitions" / "wal").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    off = 64
    for _ in range(2):  # to the third record (definition d2)
        off += (12 + int.from_bytes(raw[off + 4 : off + 8], "little") + 7) & -8
    raw[off + 30] ^= 0xFF
    segment.write_bytes(bytes(raw))
    server_cmd = [sys.executable, "-m", "spitfire.server.cli", "--data-dir", str(data)]
    refused = subprocess.run(server_cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert refused.returncode == 1, refused.stderr
    assert "meta/definitions" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    done = subprocess.run(
        [*server_cmd[:3], "repair", "--data-dir", str(data), "--yes"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0 and "1 record(s) dropped" in done.stdout, done.stdout + done.stderr
    with http_server(data) as srv:
        names = [d["name"] for d in srv.http.get("/api/job-definitions").json()["definitions"]]
        assert names == ["d0", "d1", "d3", "d4"]
        job = srv.http.post("/api/queues/q/jobs", json={"name": "d3"}).json()
        assert job["max_attempts"] == 5
