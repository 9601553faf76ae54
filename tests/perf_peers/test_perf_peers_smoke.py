"""Smoke test of the peer comparison's framework and Redis-based adapters, small N.

Slow (it starts redis-server twice and each peer's worker): run with ``pytest -m slow``. Skips,
saying why, when the peers venv (``make perf-peers``) or redis-server is missing.
"""

from __future__ import annotations

import os

import pytest

from perf.peers.redis_service import RedisServer, redis_server_binary
from perf.peers.runner import available_adapters, describe_adapters, peers_unavailable, run_peer

REDIS_ADAPTERS = ("arq", "rq", "celery", "dramatiq", "huey_redis")
#: Workloads each Redis peer must run (none of these has a bulk enqueue API except RQ).
BATCH = {"rq"}
#: Peers with no client a thread can call: enqueue-threads is a skip saying why.
NO_THREADS = {"arq"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def peers_ready() -> None:
    reason = peers_unavailable()
    if reason:
        pytest.skip(reason)
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (make perf-peers installs it as root)")


def test_unknown_adapter_and_missing_service_are_skips(peers_ready: None) -> None:
    assert set(REDIS_ADAPTERS) <= set(available_adapters())
    missing = run_peer("no_such_peer", "drain", "redis://127.0.0.1:1/0", {"jobs": 1}, timeout=30)
    assert "no adapter" in missing["skipped"]
    # A peer whose service is not there fails inside the runner: a skip with the reason, not a raise.
    down = run_peer("dramatiq", "enqueue-single", "redis://127.0.0.1:1/0", {"jobs": 10}, timeout=60)
    assert "skipped" in down and down["adapter"] == "dramatiq"


def test_describe_reads_every_redis_adapter(peers_ready: None) -> None:
    described = describe_adapters()
    for adapter in REDIS_ADAPTERS:
        assert described[adapter]["backend"] == "redis", described[adapter]
        assert "drain" in described[adapter]["workloads"]


@pytest.mark.parametrize("appendfsync", ["everysec", "always"])
def test_every_redis_peer_runs_every_workload(peers_ready: None, appendfsync: str) -> None:
    with RedisServer(appendfsync) as redis:
        assert redis.durable == (appendfsync == "always")
        for adapter in REDIS_ADAPTERS:
            single = run_peer(adapter, "enqueue-single", redis.url, {"jobs": 300, "inflight": 8}, timeout=120)
            assert single.get("jobs") == 300 and single["jobs_per_s"] > 0, single
            assert single["peer"] and single["notes"] and single["config"]["inflight"] >= 1
            batch = run_peer(adapter, "enqueue-batch", redis.url, {"jobs": 300, "batch": 100}, timeout=120)
            if adapter in BATCH:
                assert batch.get("jobs") == 300, batch
            else:
                assert "bulk" in batch["skipped"], batch
            drain = run_peer(adapter, "drain", redis.url, {"jobs": 200}, timeout=180)
            assert drain.get("jobs") == 200 and "unfinished" not in drain, drain
            loop = run_peer(adapter, "open-loop", redis.url, {"rate": 200, "seconds": 1}, timeout=120)
            assert loop.get("jobs") == 200 and loop["p99_ms"] > 0, loop
        pid = redis.proc.pid if redis.proc else None
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # redis-server was stopped by PID on exit


@pytest.mark.parametrize("adapter", REDIS_ADAPTERS)
def test_every_redis_peer_runs_the_ways_users_run_it(peers_ready: None, adapter: str) -> None:
    """The ways-of-use workloads: 8 threads, one call at a time, and a drain by two worker processes."""
    with RedisServer("always") as redis:
        threads = run_peer(adapter, "enqueue-threads", redis.url, {"jobs": 200}, timeout=120)
        if adapter in NO_THREADS:
            assert "asyncio only" in threads["skipped"], threads
        else:
            assert threads.get("jobs") == 200 and 0 < threads["p50_ms"] <= threads["p99_ms"], threads
            assert threads["config"]["threads"] == 8 and "thread" in threads["notes"], threads
        one = run_peer(adapter, "enqueue-one", redis.url, {"jobs": 200}, timeout=120)
        assert one.get("jobs") == 200 and 0 < one["p50_ms"] <= one["p99_ms"], one
        assert one["config"]["jobs"] == 200 and one["notes"], one
        drain = run_peer(adapter, "drain", redis.url, {"jobs": 200, "processes": 2}, timeout=180)
        assert drain.get("jobs") == 200 and "unfinished" not in drain, drain
        assert drain["config"]["processes"] == 2 and "2" in drain["notes"], drain
