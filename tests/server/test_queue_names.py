"""One queue-name rule on every surface (DESIGN.md section 8: ``:`` and a leading ``_`` allowed),
against real servers: the binary protocol and HTTP accept and refuse the same names, nothing is
created for a refused one, and queues named ``a:b`` and ``_x`` survive a restart."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from protoclient import ProtoClient, ServerError, ServerProcess, run, server_process

from spitfire.wal.constants import QUEUE_NAME_RE

ACCEPTED = ["a:b", "_x", "_", "9", "a.b-c_d:e", "redis:key:1", "x..y", "A" * 128]
REFUSED = [
    ".", "..", ".hidden", "-a", ":a", "a/b", "../x", "a b", "a\nb", "a\n", "é", "x" * 129, "",
    "a\\b", "a*", "%2e",
]  # fmt: skip


def test_the_rule_itself() -> None:
    assert all(QUEUE_NAME_RE.match(n) for n in ACCEPTED)
    assert not any(QUEUE_NAME_RE.match(n) for n in REFUSED)


def test_the_binary_protocol_accepts_and_refuses_by_the_rule(server: ServerProcess) -> None:
    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            for name in ACCEPTED:
                assert (await c.enqueue(name)).created, name
            for name in REFUSED:
                with pytest.raises(ServerError) as info:
                    await c.enqueue(name)
                assert (info.value.code, info.value.field) == ("BAD_REQUEST", "queue"), name
            listed = {q.name for q in (await c.stats()).queues}
        finally:
            c.close()
        assert set(ACCEPTED) <= listed and not listed & set(REFUSED)

    run(body())
    on_disk = {p.name for p in (server.data_dir / "queues").iterdir()}
    assert set(ACCEPTED) <= on_disk and not on_disk & set(REFUSED)


@pytest.fixture
def http(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, timeout=20)


def test_http_accepts_and_refuses_by_the_rule(server: ServerProcess, http: httpx.Client) -> None:
    with http:
        for name in ACCEPTED:
            path = f"/api/queues/{quote(name, safe='')}/jobs"
            r = http.post(path, json={"name": "h"})
            assert r.status_code == 201, (name, r.text)
            assert r.json()["queue"] == name
            got = http.get(f"/api/queues/{quote(name, safe='')}")
            assert got.status_code == 200 and got.json()["name"] == name
        for name in REFUSED:
            if name in ("", "a/b", "../x"):
                continue  # not one path segment: no route takes them (below)
            for suffix, body in (("jobs", {"name": "h"}), ("jobs:batch", {"name": "h", "payloads": [1]})):
                # Percent-encoded so that "." and ".." reach the server as names, not dot-segments.
                path = f"/api/queues/{''.join(f'%{b:02X}' for b in name.encode())}/{suffix}"
                r = http.post(path, json=body)
                assert r.status_code == 422, (name, r.status_code, r.text)
                assert r.json()["error"]["field"] == "queue", name
        for path in ("/api/queues/a%2Fb/jobs", "/api/queues/..%2Fx/jobs", "/api/queues//jobs"):
            assert http.post(path, json={"name": "h"}).status_code in (404, 422), path
    on_disk = {p.name for p in (server.data_dir / "queues").iterdir()}
    assert not on_disk & set(REFUSED)
    assert {p.resolve().parent for p in (server.data_dir / "queues").iterdir()} == {
        (server.data_dir / "queues").resolve()
    }


def test_queues_named_with_a_colon_and_a_leading_underscore_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    names = ["a:b", "_x"]
    with server_process(data) as first:

        async def enqueue() -> dict[str, str]:
            c = await ProtoClient.connect(first.port)
            try:
                return {n: (await c.enqueue(n, "kept", b"\x81\xa1k\xa1v")).job_id for n in names}
            finally:
                c.close()

        ids = run(enqueue())
        assert first.terminate() == 0, first.log()
    assert sorted(p.name for p in (data / "queues").iterdir()) == sorted(names)
    with server_process(data) as second:

        async def read() -> None:
            c = await ProtoClient.connect(second.port)
            try:
                for name, job_id in ids.items():
                    job = await c.get(job_id)
                    assert (job.queue, job.state, job.payload) == (name, "enqueued", b"\x81\xa1k\xa1v")
                assert set(names) <= {q.name for q in (await c.stats()).queues}
            finally:
                c.close()

        run(read())
        with httpx.Client(base_url=second.http_url, timeout=20) as http:
            listed = {q["name"]: q["total"] for q in http.get("/api/queues").json()["queues"]}
            assert listed == {"a:b": 1, "_x": 1}
            for name, job_id in ids.items():
                page = http.get(f"/api/queues/{quote(name, safe='')}/jobs").json()["jobs"]
                assert [j["id"] for j in page] == [job_id] and page[0]["payload"] == {"k": "v"}
