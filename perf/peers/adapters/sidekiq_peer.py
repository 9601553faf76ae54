"""Sidekiq (Ruby, Redis; Debian's ``ruby-sidekiq``): perf/peers/ruby/sidekiq_bench.rb does the
enqueuing (``Sidekiq::Client.push`` from ``inflight`` threads sharing Sidekiq's client pool;
``Sidekiq::Client.push_bulk`` for batches; an open loop handing each push to a pool of threads) and
the drain runs Sidekiq's own server, ``sidekiq -r perf/peers/ruby/tasks_sidekiq.rb``; this adapter
drives both as subprocesses and parses the producer's JSON.

Sidekiq's basic fetch pops a job off the ``queue:bench`` list (BRPOP) and holds it in memory while
it runs, so the end of a drain is the servers' own counts adding up to the number of jobs (their
progress files, perf/peers/external.py), and the counts they write at exit are the check that
every job ran once. The drain runs ``processes`` ``sidekiq`` server processes (Sidekiq OSS scales
past one process by running more of them), each at `CONCURRENCY` threads.

enqueue-threads (against Spitfire's sync client shared by 8 threads) is ``threads`` Ruby threads
calling ``Sidekiq::Client.push``, Sidekiq's client connection pool sized to ``threads`` (the
client is thread-safe: it checks a connection out of that pool per push); enqueue-one is one
thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from perf.peers.base import DEADLINE, QUEUE, PeerSpec, drain_processes
from perf.peers.external import (
    RuntimeMissing,
    batch_result,
    command_output,
    debian_version,
    drain_external,
    enqueue_result,
    flush_redis,
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


def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` Sidekiq::Client.push calls from ``inflight`` threads (a pool of as many connections)."""
    flush_redis(url)
    threads = int(cfg["inflight"])
    result = enqueue_result(_ruby("single", url, int(cfg["jobs"]), threads))
    result["config"] = {"threads": threads}
    result["notes"] = f"Sidekiq::Client.push from {threads} Ruby threads sharing a {threads}-connection pool"
    return result


def enqueue_threads(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` Sidekiq::Client.push calls from ``threads`` Ruby threads (a pool of as many
    connections), one push at a time each."""
    flush_redis(url)
    threads = int(cfg["threads"])
    result = enqueue_result(_ruby("single", url, int(cfg["jobs"]), threads))
    result["config"] = {"threads": threads, "pool": threads}
    result["notes"] = (
        f"Sidekiq::Client.push from {threads} Ruby threads, one push at a time each, sharing Sidekiq's client"
        f" connection pool sized {threads}"
    )
    return result


def enqueue_one(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` Sidekiq::Client.push calls from one thread, one at a time."""
    flush_redis(url)
    result = enqueue_result(_ruby("single", url, int(cfg["jobs"]), 1))
    result["config"] = {"threads": 1, "pool": 1}
    result["notes"] = "Sidekiq::Client.push from one Ruby thread, one push at a time"
    return result


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Sidekiq::Client.push_bulk with ``batch`` jobs per call from ``inflight`` threads."""
    flush_redis(url)
    threads = int(cfg["inflight"])
    result = batch_result(_ruby("batch", url, int(cfg["jobs"]), int(cfg["batch"]), threads))
    result["config"] = {"threads": threads}
    result["notes"] = f"Sidekiq::Client.push_bulk ({cfg['batch']} jobs per call) from {threads} threads"
    return result


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs (push_bulk, 1,000 per call), then time ``processes`` ``sidekiq``
    server processes at ``concurrency`` threads each until they have run them all."""
    jobs, concurrency = int(cfg["jobs"]), int(cfg.get("concurrency", CONCURRENCY))
    processes = drain_processes(cfg)
    flush_redis(url)
    _ruby("fill", url, jobs)
    client = redis.Redis.from_url(url)
    cmd = [SIDEKIQ, "-r", str(TASKS), "-q", QUEUE, "-c", str(concurrency)]
    try:
        result = drain_external(
            [cmd] * processes, url, lambda: int(client.llen(QUEUE_KEY)), jobs, {},
            deadline=float(cfg.get("deadline", DEADLINE)),
        )  # fmt: skip
    finally:
        client.close()
    result["config"] = {"concurrency": concurrency, "processes": processes, "fetch": "basic (BRPOP)"}
    result["notes"] = (
        f"{processes} `sidekiq -c {concurrency}` server process(es) (Sidekiq's default concurrency),"
        " default (INFO) job logging to a file"
    )
    return result


def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` pushes per second on a fixed schedule, handed to a pool of ``inflight`` threads."""
    flush_redis(url)
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
        "enqueue-threads": enqueue_threads,
        "enqueue-one": enqueue_one,
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
