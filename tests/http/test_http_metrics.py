"""GET /metrics after real work on a live server: the group-commit, snapshot, protocol-enqueue and
refusal series exist and hold figures that fit the work done (not only their names)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, enqueue, http_server

import spitfire

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

#: Records after which the server snapshots a queue (small, so a test run takes one).
SNAPSHOT_EVERY = 20
#: Pending jobs per queue past which enqueues answer BUSY.
QUEUE_LIMIT = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    data = tmp_path_factory.mktemp("metrics") / "data"
    args = (
        "--max-payload",
        "4096",
        "--snapshot-every",
        str(SNAPSHOT_EVERY),
        "--max-queue-jobs",
        str(QUEUE_LIMIT),
    )
    with http_server(data, *args) as proc:
        yield proc


def scrape(server: HttpServer) -> Samples:
    text = server.http.get("/metrics").text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of a histogram series, in bound order."""
    rows = [
        (float(dict(key)["le"]), v)
        for (n, key), v in samples.items()
        if n == f"{name}_bucket" and {k: x for k, x in key if k != "le"} == labels
    ]
    return sorted(rows)


def check_histogram(samples: Samples, name: str, **labels: str) -> tuple[float, float]:
    """Assert a well-formed histogram series; return its (count, sum)."""
    rows = buckets(samples, name, **labels)
    assert rows, f"no {name} series with {labels}"
    counts = [c for _, c in rows]
    assert counts == sorted(counts), f"{name} buckets are not cumulative: {rows}"
    count = value(samples, f"{name}_count", **labels)
    assert rows[-1] == (float("inf"), count)
    return count, value(samples, f"{name}_sum", **labels)


async def _protocol_work(port: int, queue: str) -> None:
    url = f"tcp://127.0.0.1:{port}"
    # The SDK checks sizes itself once it knows the server's limit (from the handshake), so the
    # oversized enqueue goes first on a client that has not connected yet: the server refuses it.
    async with spitfire.AsyncClient(url) as fresh:
        with pytest.raises(spitfire.TooLarge):
            await fresh.enqueue_raw(queue, "job", b"x" * 5000)
    async with spitfire.AsyncClient(url) as client:
        for i in range(SNAPSHOT_EVERY + 5):  # one record each: enough for a snapshot of the queue
            await client.enqueue_raw(queue, "job", b"\x01" * (i + 1))
        ids = await client.enqueue_many(queue, "job", [2] * 10)
        assert len(ids) == 10


async def _protocol_busy(port: int, queue: str) -> None:
    async with spitfire.AsyncClient(f"tcp://127.0.0.1:{port}") as client:
        with pytest.raises(spitfire.Busy):
            await client.enqueue(queue, "job")


def test_commit_fsync_snapshot_and_protocol_series_follow_the_work(server: HttpServer, queue: str) -> None:
    before = scrape(server)
    fsync_before, _ = check_histogram(before, "spitfire_fsync_batch_records")
    r = server.http.post(f"/api/queues/{queue}/jobs:batch", json={"name": "b", "payloads": list(range(30))})
    assert r.status_code == 201
    asyncio.run(_protocol_work(server.tcp_port, queue))
    deadline = time.monotonic() + 10  # maintenance ticks at least once a second
    while value(after := scrape(server), "spitfire_snapshot_seconds_count") < 1:
        assert time.monotonic() < deadline, "no snapshot was taken"
        time.sleep(0.2)

    # 1 batch record over HTTP + 25 single and 1 batch record over the protocol, each its own round
    # at least once (they were sent one after the other, each awaited).
    rounds, records = check_histogram(after, "spitfire_fsync_batch_records")
    assert rounds - fsync_before >= 27 and records >= 27
    nbytes_count, nbytes = check_histogram(after, "spitfire_fsync_batch_bytes")
    assert nbytes_count == rounds and nbytes >= 30 * 8 + sum(range(1, 26))
    fsync_count, fsync_sum = check_histogram(after, "spitfire_fsync_seconds")
    assert fsync_count == rounds and 0 < fsync_sum < fsync_count * 1.0
    groups, commit_sum = check_histogram(after, "spitfire_commit_seconds")
    assert groups >= rounds and 0 < commit_sum < groups * 1.0
    assert commit_sum >= fsync_sum * 0.5  # a group waits for its fdatasync and more
    # The stages of a commit: before its round (per group) and back to the loop (per round).
    waits, wait_sum = check_histogram(after, "spitfire_commit_wait_seconds")
    assert waits == groups and 0 <= wait_sum <= commit_sum
    resolves, resolve_sum = check_histogram(after, "spitfire_commit_resolve_seconds")
    assert resolves == rounds and 0 < resolve_sum < resolves * 1.0

    snaps, snap_sum = check_histogram(after, "spitfire_snapshot_seconds")
    assert snaps >= 1 and 0 < snap_sum < 60 * snaps
    last = value(after, "spitfire_snapshot_last_timestamp_seconds")
    assert time.time() - 60 < last <= time.time()
    assert value(after, "spitfire_snapshot_failures_total") == 0

    singles, single_sum = check_histogram(after, "spitfire_protocol_enqueue_seconds", route="single")
    assert singles == SNAPSHOT_EVERY + 5 and 0 < single_sum / singles < 1.0
    batches, batch_sum = check_histogram(after, "spitfire_protocol_enqueue_seconds", route="batch")
    assert batches == 1 and 0 < batch_sum < 1.0
    refused = value(after, "spitfire_backpressure_rejections_total", protocol="binary", reason="TOO_LARGE")
    assert refused == 1


def test_refusals_are_counted_by_protocol_and_reason(server: HttpServer, queue: str) -> None:
    def refused(samples: Samples, protocol: str, reason: str) -> float:
        return value(samples, "spitfire_backpressure_rejections_total", protocol=protocol, reason=reason)

    before = scrape(server)
    too_large = server.http.post(f"/api/queues/{queue}/jobs", json={"name": "j", "payload": "x" * 5000})
    assert too_large.status_code == 413
    r = server.http.post(f"/api/queues/{queue}/jobs:batch", json={"name": "b", "payloads": [0] * QUEUE_LIMIT})
    assert r.status_code == 201
    busy = server.http.post(f"/api/queues/{queue}/jobs", json={"name": "j"})
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "BUSY"
    asyncio.run(_protocol_busy(server.tcp_port, queue))
    after = scrape(server)
    assert refused(after, "http", "TOO_LARGE") - refused(before, "http", "TOO_LARGE") == 1
    assert refused(after, "http", "BUSY") - refused(before, "http", "BUSY") == 1
    assert refused(after, "binary", "BUSY") - refused(before, "binary", "BUSY") == 1
    assert refused(after, "http", "NO_SPACE") == refused(after, "binary", "NO_SPACE") == 0
    enqueue(server.http, f"{queue}-other")  # other queues are below their limit


def test_nothing_in_the_log_went_wrong(server: HttpServer) -> None:
    assert "Traceback" not in server.log()
