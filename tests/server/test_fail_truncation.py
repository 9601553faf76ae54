"""A failure's error and traceback are cut (64 KiB, 1 MiB) with a marker, on the binary protocol and
on HTTP alike, against a real server: a 20 MiB traceback is accepted, stored cut, and adds about
1 MiB to the log, not 20 (item 8's FAIL limits; HTTP answered 422 over them before)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from protoclient import ProtoClient, ServerProcess, run

from spitfire.server.validation import MAX_ERROR_BYTES, MAX_TRACEBACK_BYTES, truncate_text

MIB = 1 << 20
MARKER = re.compile(r"\n\.\.\. \[truncated: (\d+) bytes\]\Z")
#: 20 MiB of traceback, with multi-byte characters so that the cut has to find a boundary.
HUGE_TRACEBACK = ("Traceback (most recent call last):\n  File 'é€😀.py'\n" * 400_000)[: 20 * MIB]
LONG_ERROR = "ValueError: " + "ü" * 100_000  # ~200 KiB of UTF-8


def logged_bytes(http: httpx.Client) -> float:
    """WAL bytes made durable since the server started (the flush rounds' sum in /metrics)."""
    text = http.get("/metrics").text
    match = re.search(r"^spitfire_fsync_batch_bytes_sum (\S+)$", text, re.M)
    assert match, text[:2000]
    return float(match.group(1))


def assert_cut(text: str, original: str, limit: int) -> None:
    """``text`` is ``original`` cut to ``limit`` bytes at a character boundary, plus the marker."""
    match = MARKER.search(text)
    assert match, text[-200:]
    kept = text[: match.start()]
    assert original.startswith(kept)
    kept_bytes = len(kept.encode())
    assert limit - 4 < kept_bytes <= limit
    assert kept_bytes + int(match.group(1)) == len(original.encode())


@pytest.mark.parametrize(
    ("text", "limit"),
    [("", 10), ("abc", 3), ("abcd", 3), ("é" * 10, 5), ("😀" * 10, 6), ("a" * 100, 0), ("\ud800" * 9, 4)],
)
def test_truncate_text(text: str, limit: int) -> None:
    out = truncate_text(text, limit)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= limit:
        assert out is text
        return
    match = MARKER.search(out)
    assert match
    kept = out[: match.start()]
    assert text.startswith(kept)
    kept_bytes = len(kept.encode("utf-8", "surrogatepass"))
    assert kept_bytes <= limit and kept_bytes + int(match.group(1)) == size
    assert len(out.encode("utf-8", "surrogatepass")) <= limit + 40


def test_binary_protocol_stores_a_20_mib_traceback_cut_to_1_mib(server: ServerProcess, queue: str) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        before = logged_bytes(http)

        async def body() -> None:
            producer = await ProtoClient.connect(server.port)
            worker = await ProtoClient.connect(server.port)
            try:
                job_id = (await producer.enqueue(queue)).job_id
                await worker.subscribe([queue], 1)
                (delivery,) = await worker.deliveries(1)
                assert delivery.job_id == job_id
                done = await worker.fail(job_id, LONG_ERROR, traceback=HUGE_TRACEBACK, retryable=False)
                assert done is not None
                job = await producer.get(job_id)
            finally:
                producer.close()
                worker.close()
            assert job.state == "dead"
            (attempt,) = job.errors
            assert attempt.traceback is not None
            assert_cut(attempt.traceback, HUGE_TRACEBACK, MAX_TRACEBACK_BYTES)
            assert_cut(attempt.error, LONG_ERROR, MAX_ERROR_BYTES)

        run(body())
        grown = logged_bytes(http) - before
    assert MIB < grown < 2 * MIB, grown  # about 1 MiB + 64 KiB, not 20 MiB


def test_http_accepts_a_20_mib_traceback_and_stores_it_cut(server: ServerProcess, queue: str) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        job = http.post(f"/api/queues/{queue}/jobs", json={"name": "j", "max_attempts": 2}).json()
        claimed = http.post(f"/api/queues/{queue}/claim", json={"worker": "w"}).json()["jobs"]
        assert [j["id"] for j in claimed] == [job["id"]]
        before = logged_bytes(http)
        body = {"worker": "w", "error": LONG_ERROR, "traceback": HUGE_TRACEBACK}
        r = http.post(f"/api/jobs/{job['id']}/fail", json=body)
        assert r.status_code == 200, r.text[:500]
        grown = logged_bytes(http) - before
        assert MIB < grown < 2 * MIB, grown
        for shown in (r.json(), http.get(f"/api/jobs/{job['id']}").json()):
            assert shown["state"] == "retrying"
            (attempt,) = shown["errors"]
            assert_cut(attempt["traceback"], HUGE_TRACEBACK, MAX_TRACEBACK_BYTES)
            assert_cut(attempt["error"], LONG_ERROR, MAX_ERROR_BYTES)


def test_http_keeps_a_report_within_the_limits_unchanged(server: ServerProcess, queue: str) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        job = http.post(f"/api/queues/{queue}/jobs", json={"name": "j"}).json()
        http.post(f"/api/queues/{queue}/claim", json={"worker": "w"})
        error, traceback = "E" * MAX_ERROR_BYTES, "t" * MAX_TRACEBACK_BYTES  # exactly at the limits
        r = http.post(
            f"/api/jobs/{job['id']}/fail", json={"worker": "w", "error": error, "traceback": traceback}
        )
        assert r.status_code == 200, r.text[:500]
        (attempt,) = r.json()["errors"]
        assert (attempt["error"], attempt["traceback"]) == (error, traceback)
