"""Sidekiq (Ruby, Redis; Debian's ``ruby-sidekiq``): perf/peers/ruby/sidekiq_bench.rb does the
enqueuing (``Sidekiq::Client.push`` from ``inflight`` threads sharing Sidekiq's client pool;
``Sidekiq::Client.push_bulk`` for batches; an open loop handing each push to a pool of threads) and
the drain runs Sidekiq's own server, ``sidekiq -r perf/peers/ruby/tasks_sidekiq.rb``; this adapter
drives both as subprocesses and parses the producer's JSON.

Sidekiq's basic fetch pops a job off the ``queue:bench`` list (BRPOP) and holds it in memory while
it runs, so the end of a drain is the server's own count reaching the number of jobs (its done
file), and the count it writes at exit is the check that every job ran once.

The "8 threads" figure (against Spitfire's sync client shared by 8 threads) is this
enqueue-single with ``{"inflight": 8}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from perf.peers.base import DEADLINE, QUEUE, PeerSpec, Skip
from perf.peers.external import (
    RuntimeMissing,
    batch_result,
    command_output,
    debian_version,
    drain_external,
    enqueue_result,
    open_loop_from,
    require_binary,
    run_json,
)

RUBY_DIR = Path(__file__).resolve().parent.parent / "ruby"
PRODUCER = RUBY_DIR / "sidekiq_bench.rb"
TASKS = RUBY_DIR / "tasks_sidekiq.rb"
#: Sidekiq's own default (its docs advise against more than 50 threads per process); measured
#: here, 25 drained no faster than 10 (one process on 2 CPUs shared with redis-server).
CONCURRENCY = 10
#: Redis key of the list of jobs waiting in Sidekiq's queue "bench".
QUEUE_KEY = f"queue:{QUEUE}"

RUBY = require_binary("ruby", "apt-get install ruby ruby-sidekiq, or make perf-peers")
SIDEKIQ = require_binary("sidekiq", "apt-get install ruby-sidekiq, or make perf-peers")
SIDEKIQ_VERSION = command_output([RUBY, "-rsidekiq", "-e", "print Sidekiq::VERSION"])
if not SIDEKIQ_VERSION:
    raise RuntimeMissing("ruby cannot load sidekiq (apt-get install ruby-sidekiq, or make perf-peers)")


def _ruby(*args: Any) -> dict[str, Any]:
    return run_json([RUBY, str(PRODUCER), *map(str, args)])


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` Sidekiq::Client.push calls from ``inflight`` threads (a pool of as many connections)."""
    _flush(url)
    threads = int(cfg["inflight"])
    result = enqueue_result(_ruby("single", url, int(cfg["jobs"]), threads))
    result["config"] = {"threads": threads}
    result["notes"] = f"Sidekiq::Client.push from {threads} Ruby threads sharing a {threads}-connection pool"
    return result


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Sidekiq::Client.push_bulk with ``batch`` jobs per call from ``inflight`` threads."""
    _flush(url)
    threads = int(cfg["inflight"])
    result = batch_result(_ruby("batch", url, int(cfg["jobs"]), int(cfg["batch"]), threads))
    result["config"] = {"threads": threads}
    result["notes"] = f"Sidekiq::Client.push_bulk ({cfg['batch']} jobs per call) from {threads} threads"
    return result


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs (push_bulk, 1,000 per call), then time one ``sidekiq`` server
    process at ``concurrency`` threads until it has run them all."""
    jobs, concurrency = int(cfg["jobs"]), int(cfg.get("concurrency", CONCURRENCY))
    if int(cfg.get("workers", 1)) != 1:  # the done file counts one process's jobs
        raise Skip("a Sidekiq drain runs one worker process here (workers=1); more are not implemented")
    _flush(url)
    _ruby("fill", url, jobs)
    client = redis.Redis.from_url(url)
    cmd = [SIDEKIQ, "-r", str(TASKS), "-q", QUEUE, "-c", str(concurrency)]
    try:
        result = drain_external(
            cmd, url, lambda: int(client.llen(QUEUE_KEY)), jobs, {},
            deadline=float(cfg.get("deadline", DEADLINE)),
        )  # fmt: skip
    finally:
        client.close()
    result["config"] = {"concurrency": concurrency, "processes": 1, "fetch": "basic (BRPOP)"}
    result["notes"] = (
        f"one `sidekiq -c {concurrency}` server process (Sidekiq's default concurrency),"
        " default (INFO) job logging to a file"
    )
    return result


def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` pushes per second on a fixed schedule, handed to a pool of ``inflight`` threads."""
    _flush(url)
    rate, threads = float(cfg["rate"]), int(cfg.get("inflight", 64))
    result = open_loop_from(_ruby("open-loop", url, rate, float(cfg["seconds"]), threads), rate)
    result["config"] = {"threads": threads}
    result["notes"] = f"a scheduler thread hands each push to a pool of {threads} Ruby threads"
    return result


PEER = PeerSpec(
    name="sidekiq",
    backend="redis",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    notes="Ruby producer perf/peers/ruby/sidekiq_bench.rb; Debian's ruby-sidekiq",
    runtime_versions={
        "sidekiq": SIDEKIQ_VERSION,
        "ruby-sidekiq (Debian)": debian_version("ruby-sidekiq"),
        "ruby-redis (Debian)": debian_version("ruby-redis"),
        "ruby": command_output([RUBY, "-e", "print RUBY_VERSION"]),
    },
)
