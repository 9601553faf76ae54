"""A payload nested thousands deep, enqueued over the binary protocol as opaque bytes, against a real
server: every route that shows it answers, with ``{"$msgpack": "<base64>"}`` for values nested past
MAX_JSON_DEPTH, and the rest of its queue stays readable (item 9)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from protoclient import ProtoClient, ServerProcess, run

import spitfire
from spitfire.protocol.jsonvalue import MAX_JSON_DEPTH, msgpack_to_json

#: 2 KB of msgpack: an array in an array ... 2,000 deep, around nil.
DEEP = b"\x91" * 2000 + b"\xc0"
#: A map whose key is an array holding a map whose key ... 1,500 deep.
DEEP_KEYS = b"\x81\x91" * 1500 + b"\xc0" * 1501
CLI = [sys.executable, "-m", "spitfire.cli"]


def nested(depth: int) -> bytes:
    """msgpack of ``depth`` arrays around 1."""
    return b"\x91" * depth + b"\x01"


def opaque(data: bytes) -> dict[str, str]:
    return {"$msgpack": base64.b64encode(data).decode()}


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=20) as client:
        yield client


def enqueue_raw(server: ServerProcess, queue: str, *payloads: bytes) -> list[str]:
    """Enqueue each payload over the binary protocol, bytes untouched; returns the job ids."""

    async def go() -> list[str]:
        client = await ProtoClient.connect(server.port)
        try:
            return [(await client.enqueue(queue, "deep", p)).job_id for p in payloads]
        finally:
            client.close()

    return run(go())


def test_get_job_answers_a_deep_payload_as_msgpack_base64(
    server: ServerProcess, http: httpx.Client, queue: str
) -> None:
    (job_id,) = enqueue_raw(server, queue, DEEP)
    r = http.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    assert r.json()["payload"] == opaque(DEEP)
    assert base64.b64decode(r.json()["payload"]["$msgpack"]) == DEEP  # the stored bytes, unchanged


def test_the_depth_limit_is_exact(server: ServerProcess, http: httpx.Client, queue: str) -> None:
    at_limit, past_limit = enqueue_raw(server, queue, nested(MAX_JSON_DEPTH), nested(MAX_JSON_DEPTH + 1))
    inner = http.get(f"/api/jobs/{at_limit}").json()["payload"]
    for _ in range(MAX_JSON_DEPTH):
        assert isinstance(inner, list) and len(inner) == 1
        inner = inner[0]
    assert inner == 1
    assert http.get(f"/api/jobs/{past_limit}").json()["payload"] == opaque(nested(MAX_JSON_DEPTH + 1))


def test_the_queue_listing_and_search_still_answer(
    server: ServerProcess, http: httpx.Client, queue: str
) -> None:
    plain = msgspec.msgpack.encode({"to": "a@b.c"})
    deep_id, plain_id = enqueue_raw(server, queue, DEEP, plain)
    r = http.get(f"/api/queues/{queue}/jobs", params={"limit": 10})
    assert r.status_code == 200, r.text
    payloads = {j["id"]: j["payload"] for j in r.json()["jobs"]}
    assert payloads == {deep_id: opaque(DEEP), plain_id: {"to": "a@b.c"}}
    for q in (deep_id, "deep"):  # by id and by handler name
        r = http.get("/api/jobs", params={"q": q})
        assert r.status_code == 200, r.text
        assert deep_id in {j["id"] for j in r.json()["jobs"]}
    assert http.get(f"/api/queues/{queue}").status_code == 200


def test_an_http_worker_claims_it_and_a_deep_result_is_shown_too(
    server: ServerProcess, http: httpx.Client, queue: str
) -> None:
    (job_id,) = enqueue_raw(server, queue, DEEP)
    r = http.post(f"/api/queues/{queue}/claim", json={"worker": "w"})
    assert r.status_code == 200, r.text
    (claimed,) = r.json()["jobs"]
    assert claimed["id"] == job_id and claimed["payload"] == opaque(DEEP)

    # The result goes in through the HTTP worker API as JSON nested deeper than the limit.
    result = nested_json(MAX_JSON_DEPTH + 10)
    r = http.post(f"/api/jobs/{job_id}/ack", json={"worker": "w", "result": result})
    assert r.status_code == 200, r.text
    stored = msgspec.msgpack.encode(result)
    assert r.json()["result"] == opaque(stored)
    assert http.get(f"/api/jobs/{job_id}").json()["result"] == opaque(stored)


def nested_json(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_json_body_nested_too_deep_to_decode_is_a_400_not_a_500(http: httpx.Client, queue: str) -> None:
    body = b'{"name": "j", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = http.post(f"/api/queues/{queue}/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BAD_JSON"


def test_the_event_stream_carries_the_job(server: ServerProcess, queue: str) -> None:
    host, port = server.http_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"GET /api/events?queue={queue} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        buffer = b""
        deadline = time.monotonic() + 20
        while b"event: stats" not in buffer and time.monotonic() < deadline:  # the stream is open
            buffer += sock.recv(65536)
        (job_id,) = enqueue_raw(server, queue, DEEP)
        while job_id.encode() not in buffer and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            assert chunk, "the event stream closed"
            buffer += chunk
    assert job_id.encode() in buffer and b"HTTP/1.1 200" in buffer


def test_the_sdk_and_spitfire_get_show_it(server: ServerProcess, queue: str) -> None:
    (job_id,) = enqueue_raw(server, queue, DEEP)
    url = f"tcp://127.0.0.1:{server.port}"
    with spitfire.Client(url) as client:
        job = client.get(job_id)
    assert job.raw_payload == DEEP and job.payload == DEEP  # too deep to decode: the bytes as they are
    out = subprocess.run(
        [*CLI, "get", job_id, "--url", url], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["id"] == job_id and shown["payload"] == opaque(DEEP)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (msgspec.msgpack.encode({"a": [1, 2.5, None, True, "x"]}), {"a": [1, 2.5, None, True, "x"]}),
        (msgspec.msgpack.encode({1: "int key"}), {"1": "int key"}),
        (b"\xc1", opaque(b"\xc1")),  # never used in msgpack: not msgpack at all
        (msgspec.msgpack.encode(msgspec.msgpack.Ext(5, b"x")), opaque(b"\xd4\x05x")),
        (msgspec.msgpack.encode({(1, 2): 3}), opaque(msgspec.msgpack.encode({(1, 2): 3}))),
        (DEEP_KEYS, opaque(DEEP_KEYS)),
        (msgspec.msgpack.encode([[[0]] * 3] * 100), [[[0]] * 3] * 100),  # many containers, shallow
    ],
)
def test_msgpack_to_json(data: bytes, expected: object) -> None:
    assert json.loads(msgpack_to_json(data)) == expected
