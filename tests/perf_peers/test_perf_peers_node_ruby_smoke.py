"""Smoke test of the non-Python peers, BullMQ (Node) and Sidekiq (Ruby), at small N: every
workload, enqueue-threads and enqueue-one, a drain with one and with two worker processes.

Slow (redis-server with ``appendfsync always``, a Node or Ruby process per workload, each peer's
worker): run with ``pytest -m slow``. Skips, saying why, when the peers venv, redis-server, node
with perf/peers/node/node_modules or ruby with ruby-sidekiq is missing (``make perf-peers``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from perf.peers.redis_service import RedisServer, redis_server_binary
from perf.peers.runner import describe_adapters, peers_unavailable, run_peer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: adapter -> the version keys its results must report.
PEERS = {"bullmq": ("bullmq", "ioredis", "node"), "sidekiq": ("sidekiq", "ruby-sidekiq (Debian)", "ruby")}


@pytest.fixture(scope="module")
def described() -> dict[str, dict[str, Any]]:
    reason = peers_unavailable()
    if reason:
        pytest.skip(reason)
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (make perf-peers installs it as root)")
    return describe_adapters()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer("always") as server:
        assert server.durable
        yield server


@pytest.mark.parametrize("adapter", sorted(PEERS))
def test_peer_runs_every_workload_and_every_job_once(
    described: dict[str, dict[str, Any]], redis: RedisServer, adapter: str
) -> None:
    info = described[adapter]
    if "skipped" in info:
        pytest.skip(f"{adapter}: {info['skipped']}")
    assert info["backend"] == "redis" and set(info["workloads"]) == {
        "enqueue-single", "enqueue-threads", "enqueue-one", "enqueue-batch", "drain", "open-loop",
    }  # fmt: skip
    for key in PEERS[adapter]:
        assert info["versions"].get(key), (key, info["versions"])

    single = run_peer(adapter, "enqueue-single", redis.url, {"jobs": 300, "inflight": 64}, timeout=120)
    assert single.get("jobs") == 300 and single["jobs_per_s"] > 0, single
    assert 0 < single["p50_ms"] <= single["p99_ms"], single
    assert single["config"]["inflight"] == 64 and single["notes"] and single["versions"], single

    # 8 threads (BullMQ: 8 concurrent promise chains), and one call at a time.
    threads = run_peer(adapter, "enqueue-threads", redis.url, {"jobs": 200}, timeout=120)
    assert threads.get("jobs") == 200 and 0 < threads["p50_ms"] <= threads["p99_ms"], threads
    assert threads["config"]["threads"] == 8 and "8" in threads["notes"], threads
    one = run_peer(adapter, "enqueue-one", redis.url, {"jobs": 200}, timeout=120)
    assert one.get("jobs") == 200 and 0 < one["p50_ms"] <= one["p99_ms"], one

    batch = run_peer(adapter, "enqueue-batch", redis.url, {"jobs": 300, "batch": 100}, timeout=120)
    assert batch.get("jobs") == 300 and batch["jobs_per_s"] > 0, batch
    assert ("addBulk" if adapter == "bullmq" else "push_bulk") in batch["notes"], batch

    for processes in (1, 2):
        cfg = {"jobs": 300, "processes": processes, "deadline": 120}
        drain = run_peer(adapter, "drain", redis.url, cfg, timeout=240)
        assert drain.get("jobs") == 300 and "unfinished" not in drain, drain
        assert drain["processed"] == 300, drain  # the workers' own counts: every job ran exactly once
        assert drain["config"]["concurrency"] >= 1 and drain["config"]["processes"] == processes, drain

    loop = run_peer(adapter, "open-loop", redis.url, {"rate": 200, "seconds": 1}, timeout=120)
    assert loop.get("jobs") == 200 and "unanswered" not in loop, loop
    assert 0 < loop["p50_ms"] <= loop["p99_ms"] <= loop["max_ms"], loop


def test_missing_runtime_is_a_skip_saying_how_to_install(
    described: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no ruby, no sidekiq on it
    blind = describe_adapters()
    for adapter in PEERS:
        assert "is not installed" in blind[adapter]["skipped"], blind[adapter]
        assert "make perf-peers" in blind[adapter]["skipped"], blind[adapter]
    assert blind["arq"]["backend"] == "redis"  # the Python peers are not affected
    result = run_peer("bullmq", "drain", "redis://127.0.0.1:1/0", {"jobs": 1}, timeout=60)
    assert "node is not installed" in result["skipped"], result
